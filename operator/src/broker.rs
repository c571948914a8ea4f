//! The operator's view of a stream's brokers: their admin API over gRPC.

use crate::desired::Plan;
use freshet_broker::client::{pb, Client};
use freshet_crds::stream::{ShardLimitsMode, StreamMode};
use freshet_crds::Stream;
use std::sync::Arc;

/// Where a stream's brokers answer. In a cluster that is the stream's client Service;
/// tests point it at broker processes on loopback.
pub type Locator = Arc<dyn Fn(&Plan) -> String + Send + Sync>;

pub fn in_cluster_locator(cluster_domain: String) -> Locator {
    Arc::new(move |plan: &Plan| {
        let settings =
            crate::desired::Settings { cluster_domain: cluster_domain.clone(), ..Default::default() };
        format!("http://{}", plan.grpc_endpoint(&settings))
    })
}

/// What the brokers report about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: String,
    pub open_shards: u32,
    pub closed_shards: u32,
    pub shards_without_leader: u32,
    pub retention_hours: u32,
    /// Whether the shards' write limits are enforced.
    pub limits_enforced: bool,
    /// `PROVISIONED` or `ON_DEMAND`, as Kinesis names the modes.
    pub mode: String,
    pub open: Vec<crate::reshard::OpenShard>,
}

/// The brokers' name for a Stream's mode.
pub fn kinesis_mode(stream: &Stream) -> &'static str {
    match stream.spec.mode {
        StreamMode::Provisioned => "PROVISIONED",
        StreamMode::OnDemand => "ON_DEMAND",
    }
}

/// Settings a Stream declares that its brokers do not have yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub retention_hours: Option<u32>,
    /// Enforce Kinesis' limits (1 MiB/s and 1,000 records/s per shard), or none.
    pub limits_enforced: Option<bool>,
}

impl std::fmt::Display for SettingsChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = self.retention_hours {
            parts.push(format!("retention {h} h"));
        }
        if let Some(on) = self.limits_enforced {
            parts.push(format!("shard write limits {}", if on { "enforced" } else { "off" }));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// What must change for the brokers to hold the settings `stream` declares; None when
/// they already do.
pub fn settings_change(stream: &Stream, observed: &Observed) -> Option<SettingsChange> {
    let enforce = stream.spec.shard_limits == ShardLimitsMode::Enforce;
    let change = SettingsChange {
        retention_hours: Some(stream.spec.retention_hours).filter(|h| *h != observed.retention_hours),
        limits_enforced: Some(enforce).filter(|e| *e != observed.limits_enforced),
    };
    (change != SettingsChange::default()).then_some(change)
}

pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn connect(endpoint: &str) -> Result<Admin, tonic::Status> {
        let client = Client::new(endpoint).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(Admin { client })
    }

    /// The stream as the brokers see it, or None when they do not know it.
    pub async fn describe(&self, name: &str) -> Result<Option<Observed>, tonic::Status> {
        match self.client.describe(name).await {
            Ok(d) => {
                // Leaders as every node reports them: one node knows only the shards it hosts.
                let status = self.cluster_status().await?;
                let led: std::collections::HashSet<&str> = status
                    .groups
                    .iter()
                    .filter(|g| g.stream_name == name && g.leader.is_some())
                    .map(|g| g.shard_id.as_str())
                    .collect();
                let open: Vec<&pb::Shard> =
                    d.shards.iter().filter(|s| s.ending_sequence_number.is_none()).collect();
                Ok(Some(Observed {
                    status: d.status.clone(),
                    open_shards: open.len() as u32,
                    closed_shards: (d.shards.len() - open.len()) as u32,
                    shards_without_leader: open.iter().filter(|s| !led.contains(s.shard_id.as_str())).count()
                        as u32,
                    retention_hours: d.retention_hours,
                    limits_enforced: d.limits.as_ref().is_none_or(|l| l.enforce),
                    mode: if d.stream_mode.is_empty() { "PROVISIONED".into() } else { d.stream_mode.clone() },
                    open: open
                        .iter()
                        .filter_map(|s| {
                            // Only a leader measures its shard's writes; followers report 0.
                            let (bytes, records) = status
                                .groups
                                .iter()
                                .filter(|g| g.stream_name == name && g.shard_id == s.shard_id)
                                .flat_map(|g| &g.replicas)
                                .fold((0, 0), |(b, r), x| {
                                    (b.max(x.write_bytes_per_second), r.max(x.write_records_per_second))
                                });
                            Some(crate::reshard::OpenShard {
                                shard_id: s.shard_id.clone(),
                                start: s.starting_hash_key.parse().ok()?,
                                end: s.ending_hash_key.parse().ok()?,
                                bytes_per_second: bytes,
                                records_per_second: records,
                            })
                        })
                        .collect(),
                }))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    pub async fn create(&self, stream: &Stream, plan: &Plan) -> Result<(), tonic::Status> {
        let enforce = stream.spec.shard_limits == ShardLimitsMode::Enforce;
        let req = pb::CreateStreamRequest {
            stream_name: plan.name.clone(),
            shard_count: plan.shards,
            retention_hours: Some(stream.spec.retention_hours),
            replication_factor: Some(plan.replication),
            stream_mode: kinesis_mode(stream).into(),
            // Enforced limits are Kinesis' defaults (the broker's); off means none at all.
            limits: (!enforce).then_some(pb::ShardLimits {
                enforce: false,
                write_bytes_per_second: 0,
                write_records_per_second: 0,
            }),
            ..Default::default()
        };
        match self.client.api.clone().create_stream(req).await {
            Ok(_) => Ok(()),
            // Created by an earlier attempt whose answer was lost: the same outcome.
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
            Err(s) => Err(s),
        }
    }

    /// Reshards `name` into `target` open shards with even ranges (the brokers'
    /// UpdateShardCount, UNIFORM_SCALING).
    pub async fn update_shard_count(&self, name: &str, target: u32) -> Result<(), tonic::Status> {
        let req = pb::UpdateShardCountRequest {
            stream_name: name.into(),
            target_shard_count: target,
            scaling_type: "UNIFORM_SCALING".into(),
        };
        self.client.api.clone().update_shard_count(req).await.map(|_| ())
    }

    /// Switches `name` between PROVISIONED and ON_DEMAND.
    pub async fn update_stream_mode(&self, name: &str, mode: &str) -> Result<(), tonic::Status> {
        let req = pb::UpdateStreamModeRequest { stream_name: name.into(), stream_mode: mode.into() };
        self.client.api.clone().update_stream_mode(req).await.map(|_| ())
    }

    pub async fn update_settings(&self, name: &str, change: &SettingsChange) -> Result<(), tonic::Status> {
        let limits = change.limits_enforced.map(|enforce| pb::ShardLimits {
            enforce,
            write_bytes_per_second: freshet_broker::limits::DEFAULT_SHARD_WRITE_BYTES,
            write_records_per_second: freshet_broker::limits::DEFAULT_SHARD_WRITE_RECORDS,
        });
        let req = pb::UpdateStreamSettingsRequest {
            stream_name: name.into(),
            retention_hours: change.retention_hours,
            limits,
        };
        self.client.api.clone().update_stream_settings(req).await.map(|_| ())
    }

    /// Asks `node` to hand every group it leads to a caught-up follower; how many it still
    /// leads after up to 5 s.
    pub async fn hand_off_leadership(&self, node: u64) -> Result<u64, tonic::Status> {
        let req = pb::HandOffLeadershipRequest { node_id: node };
        Ok(self.client.api.clone().hand_off_leadership(req).await?.into_inner().groups_still_led)
    }

    pub async fn cluster_status(&self) -> Result<pb::ClusterStatusResponse, tonic::Status> {
        Ok(self.client.api.clone().cluster_status(pb::ClusterStatusRequest {}).await?.into_inner())
    }

    /// Starts (or continues) moving every replica off `node`; returns how many remain.
    /// A node that is no longer a member has none.
    pub async fn drain(&self, node: u64) -> Result<u64, tonic::Status> {
        match self.client.api.clone().drain_node(pb::DrainNodeRequest { node_id: node }).await {
            Ok(r) => Ok(r.into_inner().replicas_remaining),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(0),
            Err(s) => Err(s),
        }
    }

    pub async fn remove_node(&self, node: u64) -> Result<(), tonic::Status> {
        self.client.api.clone().remove_node(pb::RemoveNodeRequest { node_id: node }).await.map(|_| ())
    }

    pub async fn delete(&self, name: &str) -> Result<(), tonic::Status> {
        let req = pb::DeleteStreamRequest { stream_name: name.into() };
        match self.client.api.clone().delete_stream(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::stream;
    use serde_json::json;

    fn observed(retention_hours: u32, limits_enforced: bool) -> Observed {
        Observed {
            status: "ACTIVE".into(),
            open_shards: 2,
            closed_shards: 0,
            shards_without_leader: 0,
            retention_hours,
            limits_enforced,
            mode: "PROVISIONED".into(),
            open: Vec::new(),
        }
    }

    #[test]
    fn settings_follow_the_spec_and_only_what_differs_changes() {
        let s = stream(json!({"shards": 2, "retentionHours": 48}));
        assert_eq!(settings_change(&s, &observed(48, true)), None, "defaults: limits enforced");
        let change = settings_change(&s, &observed(24, true)).unwrap();
        assert_eq!(change, SettingsChange { retention_hours: Some(48), limits_enforced: None });
        assert_eq!(change.to_string(), "retention 48 h");
        let off = stream(json!({"shards": 2, "retentionHours": 48, "shardLimits": "Off"}));
        let change = settings_change(&off, &observed(72, true)).unwrap();
        assert_eq!(change, SettingsChange { retention_hours: Some(48), limits_enforced: Some(false) });
        assert_eq!(change.to_string(), "retention 48 h, shard write limits off");
        assert_eq!(settings_change(&off, &observed(48, false)), None);
    }
}
