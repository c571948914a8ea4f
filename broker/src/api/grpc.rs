//! The public gRPC API: decode, validate, route to the shard leader, encode.

use crate::error::{Error, ErrorKind, Result};
use crate::iterator::ShardIterator;
use crate::limits::{self, ShardLimits};
use crate::meta::settings::{self, StreamMode};
use crate::meta::{parse_shard_id, shard_id, MetaCommand, ShardMeta, StreamMeta};
use crate::node::{Node, Target, MAX_HOPS};
use crate::pb::{self, IteratorType};
use crate::raft::NodeId;
use crate::sequence::{SequenceBase, SequenceNumber};
use crate::shard::reader::{Page, Position, ReadLimits};
use crate::shard::ShardReplica;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

mod reshard;
mod write;

use reshard::child_shards;

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

fn to_pb(r: crate::shard::reader::StoredRecord) -> pb::Record {
    pb::Record {
        sequence_number: r.sequence_number.to_string(),
        partition_key: r.partition_key,
        data: r.data,
        approximate_arrival_timestamp_ms: r.arrival_ms,
    }
}

/// Where an iterator request starts, resolved on a replica of the shard.
fn start_position(
    replica: &ShardReplica,
    base: SequenceBase,
    kind: IteratorType,
    seq: Option<SequenceNumber>,
    ts: Option<i64>,
) -> Result<Position> {
    let shared = &replica.shared;
    Ok(match kind {
        IteratorType::TrimHorizon => shared.trim_horizon(),
        IteratorType::Latest => shared.latest(),
        IteratorType::AtTimestamp => shared.at_timestamp(ts.unwrap_or(0))?,
        IteratorType::AtSequenceNumber | IteratorType::AfterSequenceNumber => {
            let mut s = seq.expect("validated");
            if s.base() != base {
                // Kinesis' words for another shard's number.
                return Err(Error::invalid(format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                    crate::meta::shard_id(s.shard),
                    crate::meta::shard_id(replica.shard_index)
                )));
            }
            if kind == IteratorType::AfterSequenceNumber {
                s = s.successor();
            }
            Position { log_index: s.log_index, position: s.position }
        }
    })
}

/// Checks the iterator arguments Kinesis checks before touching the shard.
fn validate_iterator_args(
    kind: i32,
    seq: &Option<String>,
    ts: Option<i64>,
) -> Result<(IteratorType, Option<SequenceNumber>)> {
    let kind = IteratorType::try_from(kind).map_err(|_| {
        Error::validation(format!(
            "1 validation error detected: Value '{kind}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
        ))
    })?;
    let seq = match kind {
        IteratorType::AtSequenceNumber | IteratorType::AfterSequenceNumber => match seq {
            Some(s) => Some(SequenceNumber::parse(s)?),
            None => {
                return Err(Error::invalid(format!(
                    "StartingSequenceNumber must be specified for shardIteratorType {}",
                    kind.as_str_name()
                )))
            }
        },
        _ => None,
    };
    if kind == IteratorType::AtTimestamp {
        match ts {
            None => return Err(Error::invalid("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")),
            Some(t) if t > crate::now_ms() + 300_000 => {
                return Err(Error::invalid(format!("The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {t}")))
            }
            _ => {}
        }
    }
    Ok((kind, seq))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeEvent, Status>> + Send>>;

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
        let entry = pb::PutRecordsEntry {
            partition_key: r.partition_key,
            data: r.data,
            explicit_hash_key: r.explicit_hash_key,
        };
        let out = self
            .put_records(Request::new(pb::PutRecordsRequest {
                stream_name: r.stream_name.clone(),
                records: vec![entry],
            }))
            .await?
            .into_inner();
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
        let hops = hops(&req);
        let r = req.into_inner();
        let stream = self.stream(&r.stream_name).await?;
        let shard = shard_of(&stream, &r.shard_id)?;
        let (kind, seq) =
            validate_iterator_args(r.iterator_type, &r.starting_sequence_number, r.timestamp_ms)?;
        let secret = self.secret().await?;
        let replica = match self.node.leader_target(shard.group_id, &shard.replicas).await? {
            Target::Local(replica) => replica,
            Target::Remote(addr) => {
                let fwd = forwarded(r, hops)?;
                return self.node.pool.api(&addr).get_shard_iterator(fwd).await;
            }
        };
        let pos = start_position(&replica, shard.sequence_base(), kind, seq, r.timestamp_ms)?;
        let it = ShardIterator {
            stream: stream.name.clone(),
            shard_index: shard.index,
            group_id: shard.group_id,
            log_index: pos.log_index,
            position: pos.position,
            issued_ms: crate::now_ms(),
        };
        Ok(Response::new(pb::GetShardIteratorResponse { shard_iterator: it.encode(&secret) }))
    }

    async fn get_records(
        &self,
        req: Request<pb::GetRecordsRequest>,
    ) -> Result<Response<pb::GetRecordsResponse>, Status> {
        let hops = hops(&req);
        let r = req.into_inner();
        let limit = r.limit.unwrap_or(limits::MAX_GET_RECORDS_LIMIT);
        limits::validate_get_records_limit(limit)?;
        let secret = self.secret().await?;
        let it = ShardIterator::decode(&r.shard_iterator, &secret, crate::now_ms())?;
        let stream = self.stream(&it.stream).await?;
        let shard = stream
            .shard(it.shard_index)
            .filter(|s| s.group_id == it.group_id)
            .ok_or_else(|| Error::invalid("Invalid ShardIterator."))?;
        let replica = match self.node.leader_target(shard.group_id, &shard.replicas).await? {
            Target::Local(replica) => replica,
            Target::Remote(addr) => {
                let fwd = forwarded(r, hops)?;
                return self.node.pool.api(&addr).get_records(fwd).await;
            }
        };
        let limits = ReadLimits {
            max_records: limit as usize,
            max_bytes: limits::MAX_GET_RECORDS_BYTES,
            expired_before_ms: self.expired_before(&stream),
        };
        let from = Position { log_index: it.log_index, position: it.position };
        let shared = replica.shared.clone();
        let base = shard.sequence_base();
        let page: Page = tokio::task::spawn_blocking(move || shared.read(base, from, &limits))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let next = ShardIterator {
            log_index: page.next.log_index,
            position: page.next.position,
            issued_ms: crate::now_ms(),
            ..it
        };
        Ok(Response::new(pb::GetRecordsResponse {
            records: page.records.into_iter().map(to_pb).collect(),
            next_shard_iterator: (!page.ended).then(|| next.encode(&secret)),
            millis_behind_latest: page.millis_behind_latest,
            child_shards: if page.ended { child_shards(&stream, shard.index) } else { Vec::new() },
        }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let hops = hops(&req);
        let r = req.into_inner();
        let stream = self.stream(&r.stream_name).await?;
        let shard = shard_of(&stream, &r.shard_id)?.clone();
        let (kind, seq) =
            validate_iterator_args(r.iterator_type, &r.starting_sequence_number, r.timestamp_ms)?;
        // Any local replica serves a subscription: committed records are immutable, and
        // a follower serves up to what it has applied.
        let replica = match self.node.shard(shard.group_id) {
            Some(replica) => replica,
            None => match self.node.leader_target(shard.group_id, &shard.replicas).await? {
                // A replica may have started here meanwhile.
                Target::Local(replica) => replica,
                Target::Remote(addr) => {
                    let fwd = forwarded(r, hops)?;
                    let upstream = self.node.pool.api(&addr).subscribe(fwd).await?.into_inner();
                    return Ok(Response::new(Box::pin(upstream)));
                }
            },
        };
        let mut pos = start_position(&replica, shard.sequence_base(), kind, seq, r.timestamp_ms)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::SubscribeEvent, Status>>(4);
        let retention_hour_ms = self.node.config.retention_hour_ms;
        let retention_hours = stream.retention_hours;
        let (node, stream_name) = (self.node.clone(), stream.name.clone());
        // Kinesis' SubscribeToShard sends an empty event every few seconds while idle; a
        // gRPC subscriber asks for that with keep_alive_ms.
        let keep_alive =
            r.keep_alive_ms.filter(|ms| *ms > 0).map(|ms| std::time::Duration::from_millis(ms.into()));
        tokio::spawn(async move {
            let mut applied = replica.shared.applied_changes();
            // The last record delivered; before any, resuming AFTER the number just
            // before the start position starts where this subscription did.
            let mut last_seq: Option<SequenceNumber> = None;
            let resume_after = |last: Option<SequenceNumber>, pos: Position| {
                last.unwrap_or_else(|| shard.sequence_base().at(pos.log_index, pos.position).predecessor())
                    .to_string()
            };
            loop {
                let limits = ReadLimits {
                    max_records: 10_000,
                    max_bytes: limits::MAX_GET_RECORDS_BYTES,
                    expired_before_ms: crate::now_ms() - i64::from(retention_hours) * retention_hour_ms,
                };
                let shared = replica.shared.clone();
                let base = shard.sequence_base();
                let page = match tokio::task::spawn_blocking(move || shared.read(base, pos, &limits)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                let caught_up = page.millis_behind_latest == 0 && page.records.is_empty();
                let ended = page.ended;
                if !page.records.is_empty() || ended {
                    if let Some(r) = page.records.last() {
                        last_seq = Some(r.sequence_number);
                    }
                    let continuation = resume_after(last_seq, pos);
                    // A closed shard read to its end: name its children, then end.
                    let child_shards = if ended {
                        node.meta_view
                            .read(|m| m.streams.get(&stream_name).map(|s| child_shards(s, shard.index)))
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let event = pb::SubscribeEvent {
                        records: page.records.into_iter().map(to_pb).collect(),
                        continuation_sequence_number: (!ended).then_some(continuation),
                        millis_behind_latest: page.millis_behind_latest,
                        child_shards,
                    };
                    if tx.send(Ok(event)).await.is_err() || ended {
                        return; // subscriber went away, or the shard ended
                    }
                }
                pos = page.next;
                if caught_up || pos.log_index > replica.shared.state().applied_index() {
                    let idle = async {
                        match keep_alive {
                            Some(d) => tokio::time::sleep(d).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        changed = applied.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                        _ = idle => {
                            let event = pb::SubscribeEvent {
                                records: Vec::new(),
                                continuation_sequence_number: Some(resume_after(last_seq, pos)),
                                millis_behind_latest: 0,
                                child_shards: Vec::new(),
                            };
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
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
