//! The steps of a reconcile after the objects are applied: moving replicas off brokers
//! that go, rolling brokers onto a new revision, stream settings, resharding toward the
//! declared count, and growing volumes. Each answers the phase it leaves the Stream in.

use super::*;

/// Moves every replica off the brokers above `plan.brokers` (highest ordinals) and takes
/// them out of the cluster. Some(phase) while replicas are still moving.
pub(super) async fn drain_brokers(
    ctx: &Context,
    plan: &Plan,
    current: u32,
    admin: &Admin,
) -> Result<Option<Phase>, Error> {
    let endpoint = (ctx.locate)(plan);
    let broker_err = |status| Error::Broker { endpoint: endpoint.clone(), status };
    let leaving: Vec<u64> = (plan.brokers..current).map(|ordinal| u64::from(ordinal) + 1).collect();
    let mut remaining = 0;
    for node in &leaving {
        remaining += admin.drain(*node).await.map_err(broker_err)?;
    }
    if remaining > 0 {
        return Ok(Some(Phase::Progressing {
            reason: "ScaleDownPending",
            message: format!(
                "{} brokers would do, {current} run: moving {remaining} shard replicas off broker nodes {leaving:?}",
                plan.brokers
            ),
        }));
    }
    for node in &leaving {
        admin.remove_node(*node).await.map_err(broker_err)?;
    }
    Ok(None)
}

/// Replicas a follower may trail its leader by and still count as caught up for a restart.
pub(super) const ROLL_MAX_LAG: u64 = 64;

/// One step of an operator-driven roll: replaces at most one broker pod whose revision is
/// not the StatefulSet's current one, when the brokers can spare it. None: nothing to roll.
pub(super) async fn roll_brokers(
    stream: &Stream,
    ctx: &Context,
    plan: &Plan,
    sts: &StatefulSet,
    admin: &Admin,
) -> Result<Option<Phase>, Error> {
    let Some(revision) = sts.status.as_ref().and_then(|s| s.update_revision.clone()) else {
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &plan.namespace);
    let listed = pods.list(&ListParams::default().labels(&plan.selector_string())).await?;
    let prefix = format!("{}-", plan.statefulset_name());
    let views: Vec<PodView> = listed
        .items
        .iter()
        .filter_map(|p| {
            let name = p.name_any();
            let ordinal = name.strip_prefix(&prefix)?.parse().ok()?;
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(PodView {
                revision: p.labels().get("controller-revision-hash").cloned().unwrap_or_default(),
                deleting: p.meta().deletion_timestamp.is_some(),
                name,
                ordinal,
                ready,
            })
        })
        .collect();
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) as u32;
    let rolling = |message: String| Some(Phase::Progressing { reason: "RollingUpdate", message });
    match next_step(&views, want, &revision) {
        RollStep::Done => Ok(None),
        RollStep::Wait(why) => Ok(rolling(why)),
        RollStep::Replace { pod, node } => {
            let endpoint = (ctx.locate)(plan);
            let status = admin.cluster_status().await.map_err(|status| Error::Broker { endpoint, status })?;
            if let Err(why) = can_restart(&status, node, ROLL_MAX_LAG) {
                return Ok(rolling(format!("waiting to restart {pod}: {why}")));
            }
            let led = crate::roll::led_by(&status, node);
            if !led.is_empty() {
                let endpoint = (ctx.locate)(plan);
                admin.hand_off_leadership(node).await.map_err(|status| Error::Broker { endpoint, status })?;
                let note =
                    format!("moving leadership of {} groups off {pod} before restarting it", led.len());
                return Ok(rolling(note));
            }
            pods.delete(&pod, &DeleteParams::default()).await?;
            let updated = views.iter().filter(|p| p.revision == revision).count();
            let note = format!("restarting {pod} on the new revision ({updated} of {want} updated)");
            ctx.event(stream, EventType::Normal, "BrokerRestarted", note.clone()).await;
            Ok(rolling(note))
        }
    }
}

/// Retention and write limits follow the spec: the brokers keep them per stream, and
/// change them only while the stream is ACTIVE.
pub(super) async fn settings_step(
    stream: &Stream,
    ctx: &Context,
    plan: &Plan,
    observed: &Observed,
    admin: &Admin,
) -> Result<Option<Phase>, Error> {
    if observed.status != "ACTIVE" {
        return Ok(None);
    }
    let Some(change) = crate::broker::settings_change(stream, observed) else { return Ok(None) };
    let broker = |status| Error::Broker { endpoint: (ctx.locate)(plan), status };
    admin.update_settings(&plan.name, &change).await.map_err(broker)?;
    let note = format!("stream settings: {change}");
    ctx.event(stream, EventType::Normal, "StreamSettingsChanged", note.clone()).await;
    Ok(Some(Phase::Progressing { reason: "StreamSettingsChanging", message: note }))
}

/// One step toward the declared shard count, once the stream is ACTIVE (the brokers were
/// scaled up first): an UpdateShardCount up to the declared count (at most doubling), or,
/// once fewer shards have been declared for the stabilization window, down to the fewest
/// the measured writes allow (at most halving).
pub(super) async fn reshard_step(
    stream: &Stream,
    ctx: &Context,
    plan: &Plan,
    observed: &Observed,
    admin: &Admin,
) -> Result<Option<Phase>, Error> {
    let key = format!("{}/{}", plan.namespace, plan.name);
    if observed.open_shards <= plan.shards {
        ctx.fewer_since.lock().expect("lock").remove(&key);
    }
    if observed.status != "ACTIVE" {
        return Ok(None);
    }
    let broker = |status| Error::Broker { endpoint: (ctx.locate)(plan), status };
    let mode = crate::broker::kinesis_mode(stream);
    if observed.mode != mode {
        admin.update_stream_mode(&plan.name, mode).await.map_err(broker)?;
        let note = format!("stream mode {} -> {mode}", observed.mode);
        ctx.event(stream, EventType::Normal, "StreamModeChanged", note.clone()).await;
        return Ok(Some(Phase::Progressing { reason: "StreamModeChanging", message: note }));
    }
    let open = observed.open.len();
    let target = match crate::reshard::scale_up_target(open, plan.shards) {
        Some(target) => target,
        None => {
            // An ON_DEMAND stream's brokers split its hot shards; merging them back would
            // undo that, so only a PROVISIONED stream is scaled down.
            if open as u32 <= plan.shards || mode == "ON_DEMAND" {
                return Ok(None);
            }
            let since =
                *ctx.fewer_since.lock().expect("lock").entry(key).or_insert_with(std::time::Instant::now);
            let window = ctx.settings.merge_stabilization;
            if since.elapsed() < window {
                let left = (window - since.elapsed()).as_secs() + 1;
                let message = format!(
                    "{} shards declared, {open} open: merging in {left} s if the lower count holds",
                    plan.shards
                );
                return Ok(Some(Phase::Progressing { reason: "MergeStabilizing", message }));
            }
            match crate::reshard::scale_down_target(&observed.open, plan.shards) {
                Ok(Some(target)) => target,
                Ok(None) => return Ok(None),
                Err(()) => {
                    let message = format!(
                        "{} shards declared, {open} open: the writes measured now would not fit fewer shards (at most {} B/s and {} records/s each), so none merges",
                        plan.shards,
                        crate::reshard::MERGE_MAX_BYTES_PER_SECOND,
                        crate::reshard::MERGE_MAX_RECORDS_PER_SECOND
                    );
                    return Ok(Some(Phase::Progressing { reason: "MergeHeldByLoad", message }));
                }
            }
        }
    };
    admin.update_shard_count(&plan.name, target).await.map_err(broker)?;
    let note = format!("UpdateShardCount {open} -> {target} open shards ({} declared)", plan.shards);
    ctx.event(stream, EventType::Normal, "ShardCountUpdating", note.clone()).await;
    Ok(Some(Phase::Progressing { reason: "Resharding", message: note }))
}

/// Volumes only grow: when the declared size rises, each broker's claim is resized (the
/// StatefulSet's own template cannot change).
pub(super) async fn grow_volumes(
    stream: &Stream,
    ctx: &Context,
    plan: &Plan,
    brokers: u32,
) -> Result<(), Error> {
    let want = &stream.spec.storage.size;
    let Some(want_bytes) = crate::quantity::bytes(&want.0) else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &plan.namespace);
    for ordinal in 0..brokers {
        let name = format!("data-{}-{ordinal}", plan.statefulset_name());
        let Some(pvc) = api.get_opt(&name).await? else { continue };
        let current = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| crate::quantity::bytes(&q.0));
        if current.is_some_and(|c| c < want_bytes) {
            let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": want.0}}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            ctx.event(stream, EventType::Normal, "VolumeGrown", format!("resized {name} to {}", want.0))
                .await;
        }
    }
    Ok(())
}
