//! What a `Stream` should look like in Kubernetes: pure functions from the resource and the
//! operator's settings to the objects the reconciler applies. No I/O, so every field that
//! matters is unit-tested.

pub mod configmap;
pub mod pdb;
pub mod services;
pub mod statefulset;

use freshet_crds::capacity::{self, CapacityError};
use freshet_crds::Stream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use std::collections::BTreeMap;

/// gRPC (clients and peers) and Kinesis HTTP ports, the same on every broker pod.
pub const GRPC_PORT: i32 = 50051;
pub const KINESIS_PORT: i32 = 4567;
/// Where the broker keeps its RocksDB inside the pod.
pub const DATA_DIR: &str = "/var/lib/freshet";
pub const FIELD_MANAGER: &str = "freshet-operator";

/// Operator-wide settings (the chart sets them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub broker_image: String,
    /// Shard replicas one broker pod hosts before another pod is added.
    pub replicas_per_broker: u32,
    pub cluster_domain: String,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// How long a lower declared shard count must hold before shards merge.
    pub merge_stabilization: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            broker_image: "ghcr.io/freshet/broker:0.1.0".into(),
            replicas_per_broker: capacity::DEFAULT_REPLICAS_PER_BROKER,
            cluster_domain: "cluster.local".into(),
            heartbeat_ms: 250,
            election_timeout_ms: 750,
            merge_stabilization: std::time::Duration::from_secs(300),
        }
    }
}

/// The decisions every object derives from: names, sizes and identities.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub namespace: String,
    pub shards: u32,
    pub replication: u32,
    pub brokers: u32,
}

impl Plan {
    pub fn for_stream(stream: &Stream, settings: &Settings) -> Result<Plan, CapacityError> {
        let shards = stream.spec.desired_shards()?;
        let replication = stream.spec.replication;
        Ok(Plan {
            name: stream.metadata.name.clone().unwrap_or_default(),
            namespace: stream.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            shards,
            replication,
            brokers: capacity::broker_pods(shards, replication, settings.replicas_per_broker),
        })
    }

    /// Brokers never fewer than the shards that are open now need (a stream is not
    /// shrunk under its live shards while merges are pending).
    pub fn with_live_shards(mut self, live_shards: u32, settings: &Settings) -> Plan {
        let needed = capacity::broker_pods(live_shards, self.replication, settings.replicas_per_broker);
        self.brokers = self.brokers.max(needed);
        self
    }

    pub fn statefulset_name(&self) -> String {
        format!("{}-broker", self.name)
    }

    /// Headless Service that gives each pod a stable DNS name for Raft traffic.
    pub fn peer_service_name(&self) -> String {
        format!("{}-broker-peers", self.name)
    }

    /// The Service clients use: the Stream's own name.
    pub fn client_service_name(&self) -> String {
        self.name.clone()
    }

    pub fn configmap_name(&self) -> String {
        format!("{}-broker-config", self.name)
    }

    /// Stable DNS name of broker `ordinal` (Raft node id `ordinal + 1`).
    pub fn pod_address(&self, ordinal: u32, settings: &Settings) -> String {
        format!(
            "{}-{ordinal}.{}.{}.svc.{}:{GRPC_PORT}",
            self.statefulset_name(),
            self.peer_service_name(),
            self.namespace,
            settings.cluster_domain
        )
    }

    /// Every broker as `id=host:port`, the broker's `--peers`.
    pub fn peers(&self, settings: &Settings) -> String {
        (0..self.brokers)
            .map(|o| format!("{}={}", o + 1, self.pod_address(o, settings)))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn grpc_endpoint(&self, settings: &Settings) -> String {
        format!(
            "{}.{}.svc.{}:{GRPC_PORT}",
            self.client_service_name(),
            self.namespace,
            settings.cluster_domain
        )
    }

    /// The Kinesis endpoint URL for the AWS CLI and SDKs: `https` when the Stream has a
    /// TLS Secret.
    pub fn kinesis_endpoint(&self, settings: &Settings, tls: bool) -> String {
        format!(
            "{}://{}.{}.svc.{}:{KINESIS_PORT}",
            if tls { "https" } else { "http" },
            self.client_service_name(),
            self.namespace,
            settings.cluster_domain
        )
    }

    /// Labels that select this stream's broker pods (stable: a StatefulSet selector is immutable).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "freshet-broker".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
        ])
    }

    pub fn selector_string(&self) -> String {
        self.selector_labels().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/component".into(), "broker".into());
        labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        labels.insert("app.kubernetes.io/part-of".into(), "freshet".into());
        labels
    }
}

/// Metadata for an object owned by `stream`: deleting the Stream garbage-collects it.
pub fn owned_meta(stream: &Stream, plan: &Plan, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(plan.labels()),
        owner_references: Some(vec![owner_reference(stream)]),
        ..ObjectMeta::default()
    }
}

pub fn owner_reference(stream: &Stream) -> OwnerReference {
    OwnerReference {
        api_version: Stream::api_version(&()).into(),
        kind: Stream::kind(&()).into(),
        name: stream.metadata.name.clone().unwrap_or_default(),
        uid: stream.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Every object a Stream owns, in the order the reconciler applies them (settings and
/// names first, so the pods find both when they start), as JSON.
pub fn all_objects(stream: &Stream, settings: &Settings) -> Result<Vec<serde_json::Value>, CapacityError> {
    let plan = Plan::for_stream(stream, settings)?;
    let cm = configmap::configmap(stream, &plan, settings);
    let digest = configmap::digest(cm.data.as_ref().expect("data"));
    let to_json = |v: serde_json::Result<serde_json::Value>| v.expect("k8s objects serialize");
    Ok(vec![
        to_json(serde_json::to_value(cm)),
        to_json(serde_json::to_value(services::peer_service(stream, &plan))),
        to_json(serde_json::to_value(services::client_service(stream, &plan))),
        to_json(serde_json::to_value(pdb::pdb(stream, &plan))),
        to_json(serde_json::to_value(statefulset::statefulset(stream, &plan, settings, &digest))),
    ])
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A Stream as the API server would hand it over: named, namespaced, with a uid.
    pub fn stream(spec: serde_json::Value) -> Stream {
        let mut s = Stream::new("clicks", serde_json::from_value(spec).expect("spec"));
        s.metadata.namespace = Some("analytics".into());
        s.metadata.uid = Some("0b5e4f7a-1111-2222-3333-444455556666".into());
        s.metadata.generation = Some(3);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::stream;
    use super::*;

    #[test]
    fn plan_sizes_brokers_from_shards_and_replication() {
        let s = Settings::default();
        let plan = Plan::for_stream(&stream(serde_json::json!({"shards": 4})), &s).unwrap();
        assert_eq!((plan.shards, plan.replication, plan.brokers), (4, 3, 3));
        let big =
            Plan::for_stream(&stream(serde_json::json!({"shards": 250, "replication": 5})), &s).unwrap();
        assert_eq!(big.brokers, 13, "1,250 replicas at 100 per broker");
        let small = Settings { replicas_per_broker: 6, ..Settings::default() };
        let plan =
            Plan::for_stream(&stream(serde_json::json!({"throughput": {"writeMiBPerSecond": 10}})), &small);
        assert_eq!(plan.unwrap().brokers, 5, "10 shards x 3 replicas at 6 per broker");
    }

    #[test]
    fn peers_name_every_pod_by_its_stable_dns_name() {
        let s = Settings::default();
        let plan = Plan::for_stream(&stream(serde_json::json!({"shards": 1})), &s).unwrap();
        assert_eq!(
            plan.peers(&s),
            "1=clicks-broker-0.clicks-broker-peers.analytics.svc.cluster.local:50051,\
             2=clicks-broker-1.clicks-broker-peers.analytics.svc.cluster.local:50051,\
             3=clicks-broker-2.clicks-broker-peers.analytics.svc.cluster.local:50051"
        );
        assert_eq!(plan.kinesis_endpoint(&s, false), "http://clicks.analytics.svc.cluster.local:4567");
        assert_eq!(plan.kinesis_endpoint(&s, true), "https://clicks.analytics.svc.cluster.local:4567");
    }

    #[test]
    fn owned_objects_point_at_their_stream_as_controller() {
        let st = stream(serde_json::json!({"shards": 1}));
        let plan = Plan::for_stream(&st, &Settings::default()).unwrap();
        let meta = owned_meta(&st, &plan, "x".into());
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.api_version.as_str(), owner.uid.as_str()),
            ("Stream", "freshet.dev/v1alpha1", "0b5e4f7a-1111-2222-3333-444455556666")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(meta.labels.unwrap()["app.kubernetes.io/instance"], "clicks");
    }
}
