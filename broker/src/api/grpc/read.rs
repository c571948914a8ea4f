//! The read path of the API: shard iterators, GetRecords pages, and Subscribe, which
//! pushes records as they are applied (no polling inside).

use super::reshard::child_shards;
use super::{forwarded, hops, shard_of, Api};
use crate::error::{Error, Result};
use crate::iterator::ShardIterator;
use crate::limits;
use crate::node::Target;
use crate::pb::{self, IteratorType};
use crate::sequence::{SequenceBase, SequenceNumber};
use crate::shard::reader::{Page, Position, ReadLimits};
use crate::shard::ShardReplica;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

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

pub(super) type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeEvent, Status>> + Send>>;

impl Api {
    pub(super) async fn shard_iterator(
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

    pub(super) async fn records_page(
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
        let page: Page = replica.shared.read_page(shard.sequence_base(), from, limits).await?;
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

    pub(super) async fn subscription(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
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
                let page = match replica.shared.read_page(shard.sequence_base(), pos, limits).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
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
}
