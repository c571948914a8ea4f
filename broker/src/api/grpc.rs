//! The public gRPC API: decode, validate, route to the shard leader, encode.

use crate::error::{Error, ErrorKind, Result};
use crate::limits::{self, ShardLimits};
use crate::meta::settings::{self, StreamMode};
use crate::meta::{parse_shard_id, shard_id, MetaCommand, ShardMeta, StreamMeta};
use crate::node::{Node, MAX_HOPS};
use crate::pb;
use crate::raft::NodeId;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

mod read;
mod reshard;
mod write;

use read::EventStream;

const HOPS: &str = "x-freshet-hops";

pub struct Api {
    node: Arc<Node>,
}

impl Api {
    pub fn new(node: Arc<Node>) -> Self {
        Api { node }
    }

    /// The stream's metadata. A stream missing from this node's copy is looked up again
    /// after catching up with the metadata leader: it may have just been created elsewhere.
    async fn stream(&self, name: &str) -> Result<StreamMeta> {
        limits::validate_stream_name(name)?;
        if let Some(s) = self.node.meta_view.read(|m| m.streams.get(name).cloned()) {
            return Ok(s);
        }
        self.node.meta_barrier().await?;
        self.node
            .meta_view
            .read(|m| m.streams.get(name).cloned())
            .ok_or_else(|| Error::stream_not_found(name))
    }

    /// The stream's metadata as the metadata leader has it: what a describe shows must not
    /// be older than a change already acknowledged (a split, say), even on a follower that
    /// has just restarted.
    pub(crate) async fn stream_as_committed(&self, name: &str) -> Result<StreamMeta> {
        limits::validate_stream_name(name)?;
        self.node.meta_barrier().await?;
        self.node
            .meta_view
            .read(|m| m.streams.get(name).cloned())
            .ok_or_else(|| Error::stream_not_found(name))
    }

    /// Applies a metadata change through the metadata group's leader.
    pub(crate) async fn change(&self, cmd: MetaCommand) -> Result<()> {
        self.node.meta_write(cmd).await.map(|_| ())
    }

    /// Open shards over all streams, and how many streams are ON_DEMAND (DescribeLimits),
    /// as the metadata leader has them.
    pub(crate) async fn shard_counts(&self) -> Result<(u32, u32)> {
        self.node.meta_barrier().await?;
        Ok(self.node.meta_view.read(|m| {
            let open =
                m.streams.values().flat_map(|s| &s.shards).filter(|sh| sh.is_open() && !sh.pending).count();
            let on_demand = m.streams.values().filter(|s| s.mode == StreamMode::OnDemand).count();
            (open as u32, on_demand as u32)
        }))
    }

    /// Which node leads each shard, as `nodes` report it (at most a second each; a node
    /// that does not answer contributes nothing).
    async fn leaders_known_by(&self, mut nodes: Vec<NodeId>) -> HashMap<(String, String), NodeId> {
        nodes.sort_unstable();
        nodes.dedup();
        let members = self.node.members();
        let asks = nodes.iter().filter(|n| **n != self.node.id).filter_map(|n| members.get(n)).map(|addr| {
            let mut peer = self.node.pool.peer(addr);
            async move {
                let call = peer.local_status(pb::ClusterStatusRequest {});
                match tokio::time::timeout(std::time::Duration::from_secs(1), call).await {
                    Ok(Ok(r)) => r.into_inner().groups,
                    _ => Vec::new(),
                }
            }
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .filter_map(|g| Some(((g.stream_name, g.shard_id), g.leader?)))
            .collect()
    }

    /// The iterator-signing key. A node whose metadata has not caught up yet (or a cluster
    /// formed a moment ago) first catches up with the metadata leader.
    pub(crate) async fn secret(&self) -> Result<Vec<u8>> {
        let known = self.node.meta_view.read(|m| m.secret.clone());
        if !known.is_empty() {
            return Ok(known);
        }
        self.node.meta_barrier().await?;
        let s = self.node.meta_view.read(|m| m.secret.clone());
        if s.is_empty() {
            return Err(Error::unavailable("cluster metadata is not initialised yet; retry shortly"));
        }
        Ok(s)
    }

    fn expired_before(&self, stream: &StreamMeta) -> i64 {
        crate::now_ms() - i64::from(stream.retention_hours) * self.node.config.retention_hour_ms
    }
}

fn shard_of<'a>(stream: &'a StreamMeta, shard_id: &str) -> Result<&'a ShardMeta> {
    let index = parse_shard_id(shard_id)?;
    stream.shard(index).ok_or_else(|| {
        Error::not_found(format!(
            "Shard {shard_id} in stream {} under account {} does not exist",
            stream.name,
            crate::ACCOUNT_ID
        ))
    })
}

fn hops<T>(req: &Request<T>) -> u32 {
    req.metadata().get(HOPS).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Forwards a request to another node's public API, counting hops against loops.
fn forwarded<T>(msg: T, hops: u32) -> Result<Request<T>> {
    if hops >= MAX_HOPS {
        return Err(Error::unavailable("shard leadership is moving; retry"));
    }
    let mut req = Request::new(msg);
    req.metadata_mut().insert(HOPS, (hops + 1).to_string().parse().expect("digits"));
    Ok(req)
}

fn shard_limits(l: pb::ShardLimits) -> ShardLimits {
    ShardLimits {
        enforce: l.enforce,
        write_bytes_per_second: l.write_bytes_per_second,
        write_records_per_second: l.write_records_per_second,
    }
}

fn parse_mode(m: &str) -> Result<StreamMode> {
    StreamMode::parse(m).ok_or_else(|| {
        Error::validation(format!(
            "1 validation error detected: Value '{m}' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"
        ))
    })
}

#[tonic::async_trait]
impl pb::freshet_server::Freshet for Api {
    async fn create_stream(
        &self,
        req: Request<pb::CreateStreamRequest>,
    ) -> Result<Response<pb::CreateStreamResponse>, Status> {
        let r = req.into_inner();
        limits::validate_stream_name(&r.stream_name)?;
        let mode = match r.stream_mode.as_str() {
            "" => StreamMode::Provisioned,
            m => parse_mode(m)?,
        };
        // An ON_DEMAND stream starts with 4 shards, or more when its owner (the operator,
        // from a declared throughput) asks; it never has fewer.
        let shard_count = match (mode, r.shard_count) {
            (StreamMode::OnDemand, 0) => settings::ON_DEMAND_SHARDS,
            (StreamMode::OnDemand, n) if n < settings::ON_DEMAND_SHARDS => {
                return Err(Error::invalid(format!(
                    "An ON_DEMAND stream starts with at least {} shards and scales by itself: leave ShardCount out.",
                    settings::ON_DEMAND_SHARDS
                ))
                .into())
            }
            (_, n) => n,
        };
        limits::validate_shard_count(shard_count)?;
        limits::validate_tags(r.tags.iter())?;
        let retention_hours = r.retention_hours.unwrap_or(limits::DEFAULT_RETENTION_HOURS);
        limits::validate_retention_hours(retention_hours)?;
        let replication = r.replication_factor.unwrap_or(limits::DEFAULT_REPLICATION);
        let voters = self.node.voters();
        limits::validate_replication(replication, voters.len())?;
        let limits = r.limits.map(shard_limits).unwrap_or_default();
        limits::validate_shard_limits(&limits)?;
        self.node
            .meta_write(MetaCommand::CreateStream {
                name: r.stream_name,
                shard_count,
                retention_hours,
                replication,
                limits,
                now_ms: crate::now_ms(),
                nodes: voters,
                mode,
                tags: r.tags.into_iter().collect(),
            })
            .await?;
        Ok(Response::new(pb::CreateStreamResponse {}))
    }

    async fn describe_stream(
        &self,
        req: Request<pb::DescribeStreamRequest>,
    ) -> Result<Response<pb::StreamDescription>, Status> {
        let s = self.stream_as_committed(&req.into_inner().stream_name).await?;
        // A reshard's children are listed once their parents have closed, as Kinesis does.
        let mut shards: Vec<pb::Shard> = s
            .shards
            .iter()
            .filter(|sh| !sh.pending)
            .map(|sh| pb::Shard {
                shard_id: sh.shard_id(),
                starting_hash_key: sh.range.start.to_string(),
                ending_hash_key: sh.range.end.to_string(),
                starting_sequence_number: sh.starting_sequence_number().to_string(),
                ending_sequence_number: sh.ending_sequence_number.clone(),
                leader: self.node.shard(sh.group_id).and_then(|r| {
                    use openraft::async_runtime::WatchReceiver;
                    r.raft.metrics().borrow_watched().current_leader
                }),
                replicas: sh.replicas.clone(),
                parent_shard_id: sh.parents.first().map(|p| shard_id(*p)),
                adjacent_parent_shard_id: sh.parents.get(1).map(|p| shard_id(*p)),
                opened_at_ms: sh.opened_ms,
                closed_at_ms: sh.closed_ms,
            })
            .collect();
        // Shards without a replica here: their leaders as their replicas' nodes know them.
        // (A shard with a replica here but no leader is electing one: nobody knows better.)
        let elsewhere: std::collections::HashSet<String> = s
            .shards
            .iter()
            .filter(|sh| self.node.shard(sh.group_id).is_none())
            .map(|sh| sh.shard_id())
            .collect();
        let unknown: Vec<NodeId> = shards
            .iter()
            .filter(|sh| elsewhere.contains(&sh.shard_id))
            .flat_map(|sh| sh.replicas.clone())
            .collect();
        if !unknown.is_empty() {
            let leaders = self.leaders_known_by(unknown).await;
            for sh in shards.iter_mut().filter(|sh| elsewhere.contains(&sh.shard_id)) {
                sh.leader = leaders.get(&(s.name.clone(), sh.shard_id.clone())).copied();
            }
        }
        Ok(Response::new(pb::StreamDescription {
            stream_name: s.name.clone(),
            status: s.status.as_str().to_string(),
            retention_hours: s.retention_hours,
            replication_factor: s.replication,
            shards,
            limits: Some(pb::ShardLimits {
                enforce: s.limits.enforce,
                write_bytes_per_second: s.limits.write_bytes_per_second,
                write_records_per_second: s.limits.write_records_per_second,
            }),
            created_at_ms: s.created_ms,
            stream_mode: s.mode.as_str().to_string(),
            consumer_count: s.consumers.len() as u32,
        }))
    }

    async fn list_streams(
        &self,
        _req: Request<pb::ListStreamsRequest>,
    ) -> Result<Response<pb::ListStreamsResponse>, Status> {
        self.node.meta_barrier().await?;
        let stream_names = self.node.meta_view.read(|m| m.streams.keys().cloned().collect());
        Ok(Response::new(pb::ListStreamsResponse { stream_names }))
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let node = req.into_inner().node_id;
        self.node.meta_barrier().await?;
        let voters = self.node.voters();
        if !voters.contains(&node) {
            return Err(Error::not_found(format!("Node {node} is not a member of the cluster.")).into());
        }
        if !self.node.meta_view.read(|m| m.draining.contains(&node)) {
            self.node.meta_write(MetaCommand::DrainNode { node, nodes: voters }).await?;
        }
        let remaining = self.node.meta_view.read(|m| m.replicas_on(node)) as u64;
        Ok(Response::new(pb::DrainNodeResponse { replicas_remaining: remaining }))
    }

    async fn split_shard(
        &self,
        req: Request<pb::SplitShardRequest>,
    ) -> Result<Response<pb::SplitShardResponse>, Status> {
        self.split(req.into_inner()).await?;
        Ok(Response::new(pb::SplitShardResponse {}))
    }

    async fn merge_shards(
        &self,
        req: Request<pb::MergeShardsRequest>,
    ) -> Result<Response<pb::MergeShardsResponse>, Status> {
        self.merge(req.into_inner()).await?;
        Ok(Response::new(pb::MergeShardsResponse {}))
    }

    async fn update_shard_count(
        &self,
        req: Request<pb::UpdateShardCountRequest>,
    ) -> Result<Response<pb::UpdateShardCountResponse>, Status> {
        Ok(Response::new(self.update_shard_count(req.into_inner()).await?))
    }

    async fn update_stream_mode(
        &self,
        req: Request<pb::UpdateStreamModeRequest>,
    ) -> Result<Response<pb::UpdateStreamModeResponse>, Status> {
        let r = req.into_inner();
        let mode = parse_mode(&r.stream_mode)?;
        self.change(MetaCommand::SetMode { stream: r.stream_name, mode }).await?;
        Ok(Response::new(pb::UpdateStreamModeResponse {}))
    }

    /// Retention (either way, unlike Kinesis' Increase/Decrease pair) and write limits;
    /// each given field is one metadata change.
    async fn update_stream_settings(
        &self,
        req: Request<pb::UpdateStreamSettingsRequest>,
    ) -> Result<Response<pb::UpdateStreamSettingsResponse>, Status> {
        let r = req.into_inner();
        let stream = self.stream_as_committed(&r.stream_name).await?;
        if let Some(hours) = r.retention_hours {
            limits::validate_retention_hours(hours)?;
        }
        let limits = r.limits.map(shard_limits);
        if let Some(l) = &limits {
            limits::validate_shard_limits(l)?;
        }
        if let Some(l) = limits.filter(|l| *l != stream.limits) {
            self.change(MetaCommand::SetLimits { stream: stream.name.clone(), limits: l }).await?;
        }
        if let Some(hours) = r.retention_hours.filter(|h| *h != stream.retention_hours) {
            let increase = hours > stream.retention_hours;
            self.change(MetaCommand::SetRetention { stream: stream.name.clone(), hours, increase }).await?;
        }
        Ok(Response::new(pb::UpdateStreamSettingsResponse {}))
    }

    async fn hand_off_leadership(
        &self,
        req: Request<pb::HandOffLeadershipRequest>,
    ) -> Result<Response<pb::HandOffLeadershipResponse>, Status> {
        let node = req.get_ref().node_id;
        if node != self.node.id {
            // Only the node itself can let go of its leaderships: ask it.
            let addr =
                self.node.members().get(&node).cloned().ok_or_else(|| {
                    Error::not_found(format!("Node {node} is not a member of the cluster."))
                })?;
            return self.node.pool.api(&addr).hand_off_leadership(req.into_inner()).await;
        }
        self.node.hand_off_leadership(std::time::Duration::from_secs(5)).await;
        Ok(Response::new(pb::HandOffLeadershipResponse { groups_still_led: self.node.groups_led() as u64 }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let node = req.into_inner().node_id;
        self.node.meta_barrier().await?;
        let remaining = self.node.meta_view.read(|m| m.replicas_on(node));
        if remaining > 0 {
            return Err(Error::new(
                ErrorKind::ResourceInUse,
                format!("Node {node} still holds {remaining} shard replicas: drain it first (DrainNode)."),
            )
            .into());
        }
        self.node.remove_node(node).await?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn delete_stream(
        &self,
        req: Request<pb::DeleteStreamRequest>,
    ) -> Result<Response<pb::DeleteStreamResponse>, Status> {
        let name = req.into_inner().stream_name;
        self.stream(&name).await?;
        self.node.meta_write(MetaCommand::DeleteStream { name }).await?;
        Ok(Response::new(pb::DeleteStreamResponse {}))
    }

    async fn put_record(
        &self,
        req: Request<pb::PutRecordRequest>,
    ) -> Result<Response<pb::PutRecordResponse>, Status> {
        let r = req.into_inner();
        limits::validate_partition_key(&r.partition_key, None)?;
        limits::validate_data(&r.data, None)?;
        if let Some(k) = &r.explicit_hash_key {
            crate::hashkey::parse_explicit_hash_key(k)?;
        }
        let stream = self.stream(&r.stream_name).await?;
        let entry = pb::PutRecordsEntry {
            partition_key: r.partition_key,
            data: r.data.into(),
            explicit_hash_key: r.explicit_hash_key,
        };
        // A batch of one on the same write path; checked above with PutRecord's names.
        let out = self.write(stream, vec![entry]).await?;
        let result = out.records.into_iter().next().ok_or_else(|| Status::internal("no result"))?;
        if result.error_code.is_empty() {
            return Ok(Response::new(pb::PutRecordResponse {
                shard_id: result.shard_id,
                sequence_number: result.sequence_number,
            }));
        }
        let kind = if result.error_code == ErrorKind::ProvisionedThroughputExceeded.kinesis_type() {
            ErrorKind::ProvisionedThroughputExceeded
        } else {
            ErrorKind::Unavailable
        };
        Err(Error::new(kind, result.error_message).into())
    }

    async fn put_records(
        &self,
        req: Request<pb::PutRecordsRequest>,
    ) -> Result<Response<pb::PutRecordsResponse>, Status> {
        let r = req.into_inner();
        let stream = self.stream(&r.stream_name).await?;
        let total: usize = r.records.iter().map(|e| e.data.len() + e.partition_key.len()).sum();
        limits::validate_put_records_batch(r.records.len(), total)?;
        // Validate everything first: a batch with one bad record is rejected whole.
        for (i, e) in r.records.iter().enumerate() {
            limits::validate_partition_key(&e.partition_key, Some(i))?;
            limits::validate_data(&e.data, Some(i))?;
            if let Some(k) = &e.explicit_hash_key {
                crate::hashkey::parse_explicit_hash_key(k)?;
            }
        }
        Ok(Response::new(self.write(stream, r.records).await?))
    }

    async fn get_shard_iterator(
        &self,
        req: Request<pb::GetShardIteratorRequest>,
    ) -> Result<Response<pb::GetShardIteratorResponse>, Status> {
        self.shard_iterator(req).await
    }

    async fn get_records(
        &self,
        req: Request<pb::GetRecordsRequest>,
    ) -> Result<Response<pb::GetRecordsResponse>, Status> {
        self.records_page(req).await
    }

    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        self.subscription(req).await
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let mut nodes = Vec::new();
        let mut groups: std::collections::BTreeMap<u64, pb::GroupStatus> = Default::default();
        let mut merge = |list: Vec<pb::GroupStatus>| {
            for g in list {
                let entry = groups
                    .entry(g.group_id)
                    .or_insert_with(|| pb::GroupStatus { replicas: vec![], ..g.clone() });
                // The leader's own view wins; otherwise any replica's.
                let claims_lead = g.replicas.first().is_some_and(|r| r.state == "Leader");
                if claims_lead || entry.leader.is_none() {
                    entry.leader = g.leader;
                }
                entry.replicas.extend(g.replicas);
            }
        };
        for (id, addr) in &self.node.members() {
            let status = if *id == self.node.id {
                Some(self.node.local_status())
            } else {
                let mut peer = self.node.pool.peer(addr);
                let call = peer.local_status(pb::ClusterStatusRequest {});
                match tokio::time::timeout(std::time::Duration::from_secs(1), call).await {
                    Ok(Ok(r)) => Some(r.into_inner().groups),
                    _ => None,
                }
            };
            nodes.push(pb::NodeStatus { id: *id, address: addr.clone(), reachable: status.is_some() });
            if let Some(s) = status {
                merge(s);
            }
        }
        for g in groups.values_mut() {
            g.replicas.sort_by_key(|r| r.node);
        }
        Ok(Response::new(pb::ClusterStatusResponse { nodes, groups: groups.into_values().collect() }))
    }
}
