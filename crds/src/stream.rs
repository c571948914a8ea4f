//! The `Stream` custom resource: what a user declares (throughput or shards, retention,
//! replication, storage, broker placement) and what the operator reports back.

use crate::capacity::{self, CapacityError, Mode, Throughput};
use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Kinesis-style stream served by its own replicated broker StatefulSet.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "freshet.dev",
    version = "v1alpha1",
    kind = "Stream",
    namespaced,
    shortname = "fst",
    category = "freshet",
    status = "StreamStatus",
    printcolumn(name = "Shards", type_ = "integer", json_path = ".status.shards"),
    printcolumn(name = "Brokers", type_ = "string", json_path = ".status.brokers.summary"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Retention", type_ = "integer", json_path = ".spec.retentionHours"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    scale(
        spec_replicas_path = ".spec.shards",
        status_replicas_path = ".status.shards",
        label_selector_path = ".status.selector"
    )
)]
#[x_kube(validation = Rule::new("has(self.throughput) != has(self.shards)")
    .message("declare exactly one of spec.throughput or spec.shards (kubectl scale sets spec.shards, so remove spec.throughput first)")
    .reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// Throughput to provision for; the operator derives the shard count from it
    /// (1 MiB/s written, 2 MiB/s read or 1,000 records/s per shard, whichever needs most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<ThroughputSpec>,
    /// An explicit shard count instead of `throughput` (the scale subresource drives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub shards: Option<u32>,
    /// `Provisioned` keeps the declared capacity; `OnDemand` starts at 4 shards and splits
    /// hot shards by itself, never dropping below the declared capacity.
    #[serde(default)]
    pub mode: StreamMode,
    /// How long records stay readable, in hours (Kinesis: 24 to 8,760).
    #[serde(default = "default_retention_hours")]
    #[schemars(range(min = 24, max = 8760))]
    pub retention_hours: u32,
    /// Replicas of every shard, each on a different broker pod. Fixed at creation.
    #[serde(default = "default_replication")]
    #[schemars(extend("enum" = [1, 3, 5]))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replication cannot change after creation: create a new Stream and move producers to it"))]
    pub replication: u32,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub brokers: BrokerSpec,
    /// `Enforce` answers writes beyond a shard's capacity as throttled, as Kinesis does;
    /// `Off` accepts whatever the brokers can take.
    #[serde(default)]
    pub shard_limits: ShardLimitsMode,
    /// What happens to the brokers' volumes when the Stream is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Who may call the Kinesis HTTP API, and over what.
    #[serde(default, skip_serializing_if = "KinesisSpec::is_default")]
    pub kinesis: KinesisSpec,
}

/// The Kinesis HTTP API's credentials and TLS, from Secrets in the Stream's namespace.
/// Brokers read them at start: after rotating a Secret, roll the brokers (see
/// docs/operations.md).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KinesisSpec {
    /// A Secret whose `credentials` key holds one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair
    /// per line. When set, every request must carry a valid SigV4 signature by one of
    /// them; when absent, any signature is accepted (as local emulators do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret_name: Option<String>,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, PEM). When set, the Kinesis API
    /// speaks only TLS, HTTP/2 and HTTP/1.1 by ALPN (the KPL requires TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
}

impl KinesisSpec {
    fn is_default(&self) -> bool {
        *self == KinesisSpec::default()
    }
}

fn default_retention_hours() -> u32 {
    24
}

fn default_replication() -> u32 {
    3
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputSpec {
    /// MiB per second producers write.
    #[serde(default, rename = "writeMiBPerSecond")]
    #[schemars(range(min = 0.0))]
    pub write_mib_per_second: f64,
    /// MiB per second consumers read, all consumers together.
    #[serde(default, rename = "readMiBPerSecond")]
    #[schemars(range(min = 0.0))]
    pub read_mib_per_second: f64,
    /// Records per second producers write.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub records_per_second: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum StreamMode {
    #[default]
    Provisioned,
    OnDemand,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum ShardLimitsMode {
    #[default]
    Enforce,
    Off,
}

/// Default `Retain`: deleting a Stream by mistake must not destroy its data; the volumes
/// stay until someone deletes them (or the Stream says `Delete`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    Delete,
    #[default]
    Retain,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each broker's volume. Volumes are only ever grown, never shrunk.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// Storage class of the volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".into())
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec { size: default_storage_size(), storage_class_name: None }
    }
}

/// Where and how the broker pods run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Broker image; the operator's default (set in the chart) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Spread constraints; when absent, brokers spread over nodes and zones as far as
    /// the cluster allows (a shard's replicas live on different brokers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// Open shards (the scale subresource's replica count).
    #[serde(default)]
    pub shards: u32,
    /// Shards closed by a split or merge, still readable until retention drops them.
    #[serde(default)]
    pub closed_shards: u32,
    #[serde(default)]
    pub brokers: BrokerCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Label selector of the broker pods, for the scale subresource (HPA, KEDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerCounts {
    pub ready: u32,
    pub desired: u32,
    /// "ready/desired", for `kubectl get`.
    #[serde(default)]
    pub summary: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Freshet's native gRPC API, host:port.
    pub grpc: String,
    /// The Kinesis Data Streams HTTP API, as an endpoint URL for the AWS CLI and SDKs.
    pub kinesis: String,
}

impl StreamSpec {
    /// Shards this spec asks for: the explicit count, or what the throughput needs.
    pub fn desired_shards(&self) -> Result<u32, CapacityError> {
        let mode = match self.mode {
            StreamMode::Provisioned => Mode::Provisioned,
            StreamMode::OnDemand => Mode::OnDemand,
        };
        match (&self.shards, &self.throughput) {
            (Some(n), _) => {
                let floor = if mode == Mode::OnDemand { capacity::ON_DEMAND_INITIAL_SHARDS } else { 1 };
                if *n > capacity::MAX_SHARDS {
                    return Err(CapacityError::TooManyShards { needed: u64::from(*n) });
                }
                Ok((*n).max(floor))
            }
            (None, t) => {
                let t = t.clone().unwrap_or_default();
                capacity::shards_for_throughput(
                    Throughput {
                        write_mib_per_second: t.write_mib_per_second,
                        read_mib_per_second: t.read_mib_per_second,
                        records_per_second: t.records_per_second,
                    },
                    mode,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> StreamSpec {
        serde_json::from_value(json).expect("spec")
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = spec(serde_json::json!({"shards": 2}));
        assert_eq!(s.retention_hours, 24);
        assert_eq!(s.replication, 3);
        assert_eq!(s.mode, StreamMode::Provisioned);
        assert_eq!(s.shard_limits, ShardLimitsMode::Enforce);
        assert_eq!(s.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(s.storage.size, Quantity("10Gi".into()));
    }

    #[test]
    fn shards_come_from_the_count_or_the_throughput() {
        assert_eq!(spec(serde_json::json!({"shards": 7})).desired_shards(), Ok(7));
        let t = spec(serde_json::json!({"throughput": {"writeMiBPerSecond": 2.5, "recordsPerSecond": 4000}}));
        assert_eq!(t.desired_shards(), Ok(4));
        let on_demand = spec(serde_json::json!({"shards": 2, "mode": "OnDemand"}));
        assert_eq!(on_demand.desired_shards(), Ok(4), "on demand never starts below 4 shards");
        assert!(spec(serde_json::json!({"shards": 501})).desired_shards().is_err());
    }
}
