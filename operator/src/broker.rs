//! The operator's view of a stream's brokers: their admin API over gRPC.

use crate::desired::Plan;
use freshet_broker::client::{pb, Client};
use freshet_crds::stream::ShardLimitsMode;
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
                let closed = d.shards.iter().filter(|s| s.ending_sequence_number.is_some()).count() as u32;
                Ok(Some(Observed {
                    status: d.status,
                    open_shards: d.shards.len() as u32 - closed,
                    closed_shards: closed,
                    shards_without_leader: d
                        .shards
                        .iter()
                        .filter(|s| s.ending_sequence_number.is_none() && s.leader.is_none())
                        .count() as u32,
                    retention_hours: d.retention_hours,
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
            // Enforced limits are Kinesis' defaults (the broker's); off means none at all.
            limits: (!enforce).then_some(pb::ShardLimits {
                enforce: false,
                write_bytes_per_second: 0,
                write_records_per_second: 0,
            }),
        };
        match self.client.api.clone().create_stream(req).await {
            Ok(_) => Ok(()),
            // Created by an earlier attempt whose answer was lost: the same outcome.
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
            Err(s) => Err(s),
        }
    }

    pub async fn cluster_status(&self) -> Result<pb::ClusterStatusResponse, tonic::Status> {
        Ok(self.client.api.clone().cluster_status(pb::ClusterStatusRequest {}).await?.into_inner())
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
