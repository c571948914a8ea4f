//! The write path of the API: validated records routed to their shards' leaders, and
//! routed again when a reshard closed a shard under them.

use super::Api;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::{ShardMeta, StreamMeta};
use crate::node::ShardPiece;
use crate::pb;
use crate::raft::RecordInput;
use crate::shard::writer::RecordOutcome;
use std::time::Duration;

/// How long a write waits for a reshard's parent to close before answering "retry".
const RESHARD_WAIT: Duration = Duration::from_secs(10);

/// Every hash key has an open shard: no reshard child waits on a parent that has already
/// closed.
fn routable(stream: &StreamMeta) -> bool {
    let closed = |i: &u32| stream.shard(*i).is_some_and(|p| p.ending_sequence_number.is_some());
    !stream.shards.iter().any(|s| s.pending && s.parents.iter().any(closed))
}

fn throttled(shard: &ShardMeta, stream: &str) -> Error {
    Error::new(
        ErrorKind::ProvisionedThroughputExceeded,
        format!(
            "Rate exceeded for shard {} in stream {stream} under account {}.",
            shard.shard_id(),
            crate::ACCOUNT_ID
        ),
    )
}

impl Api {
    /// Writes a validated batch; each record gets its outcome in the request's order.
    pub(super) async fn write(
        &self,
        stream: StreamMeta,
        records: Vec<pb::PutRecordsEntry>,
    ) -> Result<pb::PutRecordsResponse> {
        let n = records.len();
        let mut results = vec![pb::PutRecordsResult::default(); n];
        let mut failed = 0u32;
        // Records still to write, by position in the request. A shard closed by a reshard
        // refuses its records whole; they are routed again, to its children, once the
        // metadata shows it closed.
        let mut todo: Vec<(usize, RecordInput, Option<String>)> = records
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                (i, RecordInput { partition_key: e.partition_key, data: e.data }, e.explicit_hash_key)
            })
            .collect();
        let deadline = tokio::time::Instant::now() + RESHARD_WAIT;
        let mut stream = if routable(&stream) {
            stream
        } else {
            self.stream_after_close(&stream.name, &[], deadline).await?
        };
        while !todo.is_empty() {
            let inputs = todo.iter().map(|(_, rec, key)| (rec.clone(), key.clone())).collect();
            let batches = crate::router::plan(&stream, inputs)?;
            let (targets, pieces): (Vec<_>, Vec<_>) = batches
                .into_iter()
                .map(|b| {
                    let piece = ShardPiece {
                        group: b.shard.group_id,
                        replicas: b.shard.replicas.clone(),
                        records: b.records,
                    };
                    ((b.shard, b.positions), piece)
                })
                .unzip();
            let spread = pieces.len() as u32;
            let outcomes = self.node.write_pieces(pieces, 0, spread).await;
            let mut again = Vec::new();
            let mut closed_groups = Vec::new();
            for ((shard, positions), outcome) in targets.into_iter().zip(outcomes) {
                for (i, pos) in positions.into_iter().enumerate() {
                    let slot = &mut results[todo[pos].0];
                    match outcome.as_ref().map(|o| &o[i]) {
                        Ok(RecordOutcome::Written { log_index, position }) => {
                            slot.shard_id = shard.shard_id();
                            slot.sequence_number =
                                shard.sequence_base().at(*log_index, *position).to_string();
                        }
                        Ok(RecordOutcome::Throttled) => {
                            failed += 1;
                            slot.error_code = ErrorKind::ProvisionedThroughputExceeded.kinesis_type().into();
                            slot.error_message = throttled(shard, &stream.name).message;
                        }
                        Ok(RecordOutcome::Closed) if tokio::time::Instant::now() < deadline => {
                            again.push(pos);
                            closed_groups.push(shard.group_id);
                        }
                        Ok(RecordOutcome::Closed) => {
                            failed += 1;
                            slot.error_code = ErrorKind::Unavailable.kinesis_type().into();
                            slot.error_message = format!("{} is being resharded; retry", shard.shard_id());
                        }
                        Ok(RecordOutcome::Failed(e)) | Err(e) => {
                            failed += 1;
                            slot.error_code = "InternalFailure".into();
                            slot.error_message = e.message.clone();
                        }
                    }
                }
            }
            // Only the records a closed shard refused are left to route again.
            let mut pos = 0;
            todo.retain(|_| {
                pos += 1;
                again.contains(&(pos - 1))
            });
            if !todo.is_empty() {
                stream = self.stream_after_close(&stream.name, &closed_groups, deadline).await?;
            }
        }
        Ok(pb::PutRecordsResponse { failed_record_count: failed, records: results })
    }

    /// The stream's metadata once every shard of `groups` shows as closed and every key is
    /// routable again (a merge's child opens only when both parents have closed), or as it
    /// is at `deadline`.
    async fn stream_after_close(
        &self,
        name: &str,
        groups: &[u64],
        deadline: tokio::time::Instant,
    ) -> Result<StreamMeta> {
        loop {
            let stream = self.stream(name).await?;
            let closed = |g: &u64| stream.shards.iter().any(|s| s.group_id == *g && !s.is_open());
            if (groups.iter().all(closed) && routable(&stream)) || tokio::time::Instant::now() >= deadline {
                return Ok(stream);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
