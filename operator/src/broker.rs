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
