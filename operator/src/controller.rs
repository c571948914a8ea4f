//! The reconciler: brings each `Stream`'s objects and brokers to what its spec declares,
//! reports every step in status and Events, and tears down in order on deletion.

use crate::broker::{Admin, Locator, Observed};
use crate::desired::statefulset::{keep_immutable_fields, statefulset};
use crate::desired::{configmap, pdb, services, Plan, Settings, FIELD_MANAGER};
use crate::metrics::Metrics;
use crate::roll::{can_restart, next_step, PodView, RollStep};
use crate::status::{conditions, same_conditions, Phase};
use freshet_crds::stream::{BrokerCounts, DeletionPolicy, Endpoints, StreamStatus};
use freshet_crds::Stream;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod steps;
mod teardown;

use steps::{drain_brokers, grow_volumes, reshard_step, roll_brokers, settings_step};
use teardown::teardown;

/// Keeps a Stream until its brokers, data and volumes are gone (as its deletionPolicy says).
pub const FINALIZER: &str = "freshet.dev/teardown";
/// Escape hatch: with this annotation set to "true", deleting a Stream skips the teardown
/// (use it when the brokers are gone and the finalizer cannot finish).
pub const SKIP_TEARDOWN_ANNOTATION: &str = "freshet.dev/skip-teardown";
/// How often a healthy Stream is looked at even without a change.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a Stream with work under way is looked at again.
const PROGRESS_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("broker admin API at {endpoint}: {status}")]
    Broker { endpoint: String, status: tonic::Status },
    #[error("{0}")]
    TeardownPending(String),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short reason for status conditions, Events and metrics.
    pub fn reason(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) if !s.reason.is_empty() => s.reason.clone(),
            Error::Kube(_) => "KubernetesApiError".into(),
            Error::Broker { .. } => "BrokerUnavailable".into(),
            Error::TeardownPending(_) => "TeardownPending".into(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "FinalizerFailed".into(),
            },
        }
    }
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub locate: Locator,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per Stream, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Since when each Stream has declared fewer shards than it has open (the merge
    /// stabilization window). Kept in memory: a new operator leader starts the window again,
    /// which only delays a merge.
    fewer_since: Mutex<HashMap<String, std::time::Instant>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, locate: Locator) -> Context {
        let recorder = Recorder::new(client.clone(), FIELD_MANAGER.into());
        Context {
            client,
            settings,
            locate,
            recorder,
            metrics: Arc::new(Metrics::default()),
            failures: Mutex::new(HashMap::new()),
            fewer_since: Mutex::new(HashMap::new()),
        }
    }

    async fn event(&self, stream: &Stream, type_: EventType, reason: &str, note: String) {
        let ev = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &stream.object_ref(&())).await {
            tracing::debug!("could not publish event {reason}: {e}");
        }
    }
}

fn key(stream: &Stream) -> String {
    format!("{}/{}", stream.namespace().unwrap_or_default(), stream.name_any())
}

pub async fn reconcile(stream: Arc<Stream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let ns = stream.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Stream> = Api::namespaced(ctx.client.clone(), &ns);
    let c = ctx.clone();
    let result = finalizer(&api, FINALIZER, stream.clone(), |event| async move {
        match event {
            Event::Apply(s) => apply(&s, &c).await,
            Event::Cleanup(s) => teardown(&s, &c).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(start.elapsed());
    match &result {
        Ok(_) => {
            ctx.failures.lock().expect("lock").remove(&key(&stream));
        }
        Err(e) => {
            let reason = e.reason();
            ctx.metrics.failed(&reason);
            tracing::warn!(stream = %key(&stream), %reason, "reconcile failed: {e}");
            if stream.meta().deletion_timestamp.is_none() {
                // Best effort: the error itself is what gets retried.
                let phase = Phase::Degraded { reason, message: e.to_string() };
                let _ = write_status(&stream, &ctx, &phase, None, None, None).await;
            }
        }
    }
    result
}

/// Retries with exponential backoff per Stream: 1 s, 2 s, 4 s ... up to 5 minutes.
pub fn error_policy(stream: Arc<Stream>, _error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().expect("lock");
    let n = failures.entry(key(&stream)).or_default();
    *n = (*n + 1).min(20);
    Action::requeue(Duration::from_secs(1u64 << (*n - 1).min(8)).min(RESYNC))
}

async fn apply_object<K>(ctx: &Context, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj)).await?)
}

async fn apply(stream: &Stream, ctx: &Context) -> Result<Action, Error> {
    let plan = match Plan::for_stream(stream, &ctx.settings) {
        Ok(plan) => plan,
        Err(e) => {
            let message = format!("{e}");
            ctx.event(stream, EventType::Warning, "InvalidSpec", message.clone()).await;
            write_status(
                stream,
                ctx,
                &Phase::Degraded { reason: "InvalidSpec".into(), message },
                None,
                None,
                None,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let ns = plan.namespace.clone();
    let settings = &ctx.settings;
    let live_shards = stream.status.as_ref().map(|s| s.shards).unwrap_or(0);
    let plan = plan.with_live_shards(live_shards, settings);

    // Brokers leave only after every replica they host has moved (`drain_brokers`): until
    // then everything is sized for the brokers that run now.
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = sts_api.get_opt(&plan.statefulset_name()).await?;
    let current =
        existing.as_ref().and_then(|e| e.spec.as_ref()).and_then(|s| s.replicas).unwrap_or(0) as u32;
    let mut effective = plan.clone();
    effective.brokers = plan.brokers.max(current);
    let held_scale_down = (effective.brokers > plan.brokers).then_some(current);

    // Settings and names first: the pods read both as they start.
    let digest = apply_settings(stream, ctx, &effective).await?;
    let mut desired = statefulset(stream, &effective, settings, &digest);
    if let Some(existing) = &existing {
        keep_immutable_fields(&mut desired, existing);
        grow_volumes(stream, ctx, &plan, current).await?;
    }
    let sts = apply_object(ctx, &ns, &desired).await?;
    if existing.is_none() {
        let note = format!("created StatefulSet {} with {} brokers", plan.statefulset_name(), plan.brokers);
        ctx.event(stream, EventType::Normal, "BrokersCreated", note).await;
    }
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) as u32;
    let ready = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) as u32;
    let brokers = BrokerCounts { ready, desired: want, summary: format!("{ready}/{want}") };
    if ready < want {
        let phase = Phase::Progressing {
            reason: "BrokersStarting",
            message: format!("{ready} of {want} brokers ready"),
        };
        write_status(stream, ctx, &phase, Some(&plan), Some(brokers), None).await?;
        return Ok(Action::requeue(PROGRESS_POLL));
    }

    let endpoint = (ctx.locate)(&plan);
    let broker_err = |status| Error::Broker { endpoint: endpoint.clone(), status };
    let admin = Admin::connect(&endpoint).map_err(broker_err)?;
    let observed = match admin.describe(&plan.name).await.map_err(broker_err)? {
        Some(o) => o,
        None => {
            admin.create(stream, &plan).await.map_err(broker_err)?;
            let note = format!(
                "created stream {} with {} shards, replication {}, retention {} h",
                plan.name, plan.shards, plan.replication, stream.spec.retention_hours
            );
            ctx.event(stream, EventType::Normal, "StreamCreated", note).await;
            admin.describe(&plan.name).await.map_err(broker_err)?.ok_or_else(|| {
                broker_err(tonic::Status::not_found("the stream vanished right after it was created"))
            })?
        }
    };
    if held_scale_down.is_some() {
        if let Some(waiting) = drain_brokers(ctx, &plan, effective.brokers, &admin).await? {
            write_status(stream, ctx, &waiting, Some(&plan), Some(brokers), Some(&observed)).await?;
            return Ok(Action::requeue(PROGRESS_POLL));
        }
        // Every replica moved and those brokers left the cluster: shrink the set, then
        // the remaining brokers roll onto the shorter peer list.
        let digest = apply_settings(stream, ctx, &plan).await?;
        let mut smaller = statefulset(stream, &plan, settings, &digest);
        keep_immutable_fields(&mut smaller, &sts);
        apply_object(ctx, &ns, &smaller).await?;
        let note = format!(
            "removed brokers {} to {}: their replicas moved first",
            plan.brokers,
            effective.brokers - 1
        );
        ctx.event(stream, EventType::Normal, "BrokersRemoved", note.clone()).await;
        let phase = Phase::Progressing { reason: "ScaleDown", message: note };
        write_status(stream, ctx, &phase, Some(&plan), Some(brokers), Some(&observed)).await?;
        return Ok(Action::requeue(PROGRESS_POLL));
    }
    let phase = match roll_brokers(stream, ctx, &plan, &sts, &admin).await {
        Ok(Some(rolling)) => rolling,
        Ok(None) => match settings_step(stream, ctx, &plan, &observed, &admin).await? {
            Some(changing) => changing,
            None => match reshard_step(stream, ctx, &plan, &observed, &admin).await? {
                Some(resharding) => resharding,
                None => decide_phase(&plan, &observed, held_scale_down),
            },
        },
        Err(e) => return Err(e),
    };
    write_status(stream, ctx, &phase, Some(&plan), Some(brokers), Some(&observed)).await?;
    Ok(match phase {
        Phase::Ready => Action::requeue(RESYNC),
        _ => Action::requeue(PROGRESS_POLL),
    })
}

/// Applies the ConfigMap, Services and PDB for `plan`; returns the settings' digest.
async fn apply_settings(stream: &Stream, ctx: &Context, plan: &Plan) -> Result<String, Error> {
    let cm = configmap::configmap(stream, plan, &ctx.settings);
    let digest = configmap::digest(cm.data.as_ref().expect("configmap data"));
    apply_object(ctx, &plan.namespace, &cm).await?;
    apply_object(ctx, &plan.namespace, &services::peer_service(stream, plan)).await?;
    apply_object(ctx, &plan.namespace, &services::client_service(stream, plan)).await?;
    apply_object(ctx, &plan.namespace, &pdb::pdb(stream, plan)).await?;
    Ok(digest)
}

/// What the Stream's status should say, given what the brokers report. Pure.
pub fn decide_phase(plan: &Plan, observed: &Observed, held_scale_down: Option<u32>) -> Phase {
    if observed.status == "UPDATING" {
        return Phase::Progressing {
            reason: "Resharding",
            message: format!(
                "{} of {} shards open; a reshard is under way",
                observed.open_shards, plan.shards
            ),
        };
    }
    if observed.status != "ACTIVE" {
        return Phase::Progressing {
            reason: "StreamCreating",
            message: format!("the stream is {}", observed.status),
        };
    }
    if observed.open_shards < plan.shards {
        return Phase::Progressing {
            reason: "Resharding",
            message: format!("{} of {} shards open; splitting", observed.open_shards, plan.shards),
        };
    }
    // An ON_DEMAND stream's brokers split hot shards beyond the declared count, and
    // those shards stay: more is the stream working as declared, not a merge pending.
    if observed.open_shards > plan.shards && observed.mode != "ON_DEMAND" {
        return Phase::Progressing {
            reason: "Resharding",
            message: format!("{} of {} shards open; merging", observed.open_shards, plan.shards),
        };
    }
    if let Some(current) = held_scale_down {
        return Phase::Progressing {
            reason: "ScaleDownPending",
            message: format!(
                "{} brokers would do, {current} run: brokers are removed only after their replicas move",
                plan.brokers
            ),
        };
    }
    if observed.shards_without_leader > 0 {
        return Phase::Progressing {
            reason: "ElectingLeaders",
            message: format!("{} shards are electing a leader", observed.shards_without_leader),
        };
    }
    Phase::Ready
}

async fn write_status(
    stream: &Stream,
    ctx: &Context,
    phase: &Phase,
    plan: Option<&Plan>,
    brokers: Option<BrokerCounts>,
    observed: Option<&Observed>,
) -> Result<(), Error> {
    let old = stream.status.clone().unwrap_or_default();
    let generation = stream.meta().generation;
    let mut new = StreamStatus {
        conditions: conditions(&old.conditions, phase, generation),
        observed_generation: generation,
        ..old.clone()
    };
    if let Some(b) = brokers {
        new.brokers = b;
    }
    if let Some(o) = observed {
        new.shards = o.open_shards;
        new.closed_shards = o.closed_shards;
    }
    if let Some(plan) = plan {
        let settings = &ctx.settings;
        let tls = stream.spec.kinesis.tls_secret_name.is_some();
        new.endpoints = Some(Endpoints {
            grpc: plan.grpc_endpoint(settings),
            kinesis: plan.kinesis_endpoint(settings, tls),
        });
        new.selector = Some(plan.selector_string());
    }
    let unchanged = same_conditions(&old.conditions, &new.conditions)
        && StreamStatus { conditions: vec![], ..old } == StreamStatus { conditions: vec![], ..new.clone() };
    if unchanged {
        return Ok(());
    }
    let api: Api<Stream> = Api::namespaced(ctx.client.clone(), &stream.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": new });
    api.patch_status(&stream.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(shards: u32, brokers: u32) -> Plan {
        Plan { name: "s".into(), namespace: "n".into(), shards, replication: 3, brokers }
    }

    fn observed(status: &str, open: u32, leaderless: u32) -> Observed {
        Observed {
            status: status.into(),
            open_shards: open,
            closed_shards: 0,
            shards_without_leader: leaderless,
            retention_hours: 24,
            limits_enforced: true,
            mode: "PROVISIONED".into(),
            open: Vec::new(),
        }
    }

    #[test]
    fn ready_only_when_the_stream_matches_its_declaration() {
        assert_eq!(decide_phase(&plan(4, 3), &observed("ACTIVE", 4, 0), None), Phase::Ready);
        let reason = |p: Phase| match p {
            Phase::Progressing { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(decide_phase(&plan(4, 3), &observed("CREATING", 4, 0), None)), "StreamCreating");
        assert_eq!(reason(decide_phase(&plan(8, 3), &observed("ACTIVE", 4, 0), None)), "Resharding");
        assert_eq!(reason(decide_phase(&plan(8, 3), &observed("UPDATING", 4, 0), None)), "Resharding");
        assert_eq!(reason(decide_phase(&plan(4, 3), &observed("ACTIVE", 8, 0), None)), "Resharding");
        assert_eq!(reason(decide_phase(&plan(4, 3), &observed("ACTIVE", 4, 0), Some(5))), "ScaleDownPending");
        assert_eq!(reason(decide_phase(&plan(4, 3), &observed("ACTIVE", 4, 2), None)), "ElectingLeaders");
        let on_demand = |open| Observed { mode: "ON_DEMAND".into(), ..observed("ACTIVE", open, 0) };
        assert_eq!(decide_phase(&plan(4, 3), &on_demand(6), None), Phase::Ready, "hot shards were split");
        assert_eq!(reason(decide_phase(&plan(4, 3), &on_demand(2), None)), "Resharding");
    }

    #[test]
    fn api_errors_name_their_reason() {
        let status = kube::core::Status {
            reason: "Conflict".into(),
            code: 409,
            message: "the object has been modified".into(),
            ..Default::default()
        };
        assert_eq!(Error::Kube(kube::Error::Api(Box::new(status))).reason(), "Conflict");
        let broker = Error::Broker { endpoint: "x".into(), status: tonic::Status::unavailable("down") };
        assert_eq!(broker.reason(), "BrokerUnavailable");
    }
}
