//! The leader-side write path of one shard: admits records against the shard's limits
//! and turns concurrent requests into one Raft entry (group commit).
//!
//! Each Raft entry costs the same CPU on three replicas whatever it holds, so a busy shard
//! should propose few, full entries. A piece of a request spread over many shards (a
//! `PutRecords` of random keys) may therefore wait up to the write linger for company
//! before it is proposed: its request completes only with its slowest piece anyway. A
//! single-shard request (a `PutRecord`) never waits, nor does anything on a quiet shard.

use super::hibernation::Hibernation;
use super::load::Load;
use super::ShardRaft;
use crate::error::{Error, ErrorKind};
use crate::limits::{ShardLimits, WriteMeter};
use crate::raft::{Command, NodeId, RecordBatch, RecordInput, Reply, TypeConfig};
use crate::sequence::MAX_RECORDS_PER_ENTRY;
use openraft::errors::ClientWriteError;
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResult;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Entries are capped near 1 MiB of payload so one entry never stalls replication.
const MAX_ENTRY_BYTES: usize = 1 << 20;
/// Entries in flight per shard. One: requests that arrive meanwhile share the next entry,
/// and every entry costs the same CPU on three replicas whatever it holds. Paired runs of
/// 2026-12-02 with 4: 15% fewer records/s batched and no gain for single puts, even on a
/// 1-shard stream (docs/benchmarks.md). Entries are proposed in order by the writer task
/// either way, so the log keeps the order requests arrived in.
const IN_FLIGHT: usize = 1;

/// The outcome for one record of a write request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordOutcome {
    /// Written at `(log_index, position)`.
    Written {
        log_index: u64,
        position: u16,
    },
    Throttled,
    /// The shard was closed by a reshard before this record was written: nothing was
    /// written; the record belongs to one of the children now.
    Closed,
    Failed(Error),
}

/// Why a whole request could not be served here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteRejection {
    /// This replica is not the leader; `leader` is the one it knows of.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The shard is closed (a reshard): nothing of the request was written.
    Closed,
    Failed(Error),
}

pub type WriteResult = Result<Vec<RecordOutcome>, WriteRejection>;

pub struct WriteRequest {
    pub records: Vec<RecordInput>,
    /// How many shards the producer's request was split over (1 for a `PutRecord`).
    pub spread: u32,
    pub reply: oneshot::Sender<WriteResult>,
}

/// Default write linger (`--write-linger-us`). Measured on 2 cores with 64 shards and
/// 8 producers of 100-record batches (docs/benchmarks.md): 2 / 4 / 8 / 12 ms gave
/// +10% / +35% / +60% / +55% records/s over none, at half the server CPU per record.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(8);

/// How long an entry whose first request is `spread` over shards may wait for more
/// requests: the whole `max` while recent entries had company (`company`, the mean count
/// of requests that joined the first, at least a quarter), since then more are likely to
/// come; nothing on a shard whose one producer waits for each answer before it sends
/// again, where no one else would come. (At one half, 8 producers with 64 shards often
/// hovered at the threshold without lingering: 21k against 25k records/s.)
pub fn linger(spread: u32, company: f64, max: Duration) -> Duration {
    if spread > 1 && company >= 0.25 {
        max
    } else {
        Duration::ZERO
    }
}

/// The moving mean of how many requests joined the first in recent entries.
#[derive(Default)]
pub struct Company(f64);

impl Company {
    pub fn observe(&mut self, joined: usize) {
        self.0 = (self.0 * 7.0 + joined as f64) / 8.0;
    }

    pub fn mean(&self) -> f64 {
        self.0
    }
}

/// Starts the shard's writer task; dropping the sender stops it.
pub fn spawn(
    raft: ShardRaft,
    hibernation: Arc<Hibernation>,
    limits: ShardLimits,
    limits_rx: tokio::sync::watch::Receiver<ShardLimits>,
    load: Arc<Load>,
    max_linger: Duration,
) -> mpsc::Sender<WriteRequest> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(run(raft, hibernation, limits, limits_rx, rx, load, max_linger));
    tx
}

async fn run(
    raft: ShardRaft,
    hibernation: Arc<Hibernation>,
    limits: ShardLimits,
    mut limits_rx: tokio::sync::watch::Receiver<ShardLimits>,
    mut rx: mpsc::Receiver<WriteRequest>,
    load: Arc<Load>,
    max_linger: Duration,
) {
    let mut meter = WriteMeter::new(limits);
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut company = Company::default();
    let mut carry: Option<WriteRequest> = None;
    loop {
        let first = match carry.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        if limits_rx.has_changed().unwrap_or(false) {
            meter.set_limits(*limits_rx.borrow_and_update());
        }
        // Not the leader: answer at once, without spending write capacity.
        if !raft.is_leader() {
            let leader = raft.current_leader().await;
            let _ = first.reply.send(Err(WriteRejection::NotLeader { leader }));
            continue;
        }
        super::wake_to_write(&raft, &hibernation).await;
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore never closed");
        // Everything already waiting joins this entry, up to the caps, and so does what
        // arrives within the linger.
        let deadline = tokio::time::Instant::now() + linger(first.spread, company.mean(), max_linger);
        let mut requests = vec![first];
        let mut count = requests[0].records.len();
        let mut bytes: usize = requests[0].records.iter().map(|r| r.data.len()).sum();
        loop {
            let next = match rx.try_recv() {
                Ok(next) => next,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(next)) => next,
                        _ => break,
                    }
                }
                Err(_) => break,
            };
            let (n, b) = (next.records.len(), next.records.iter().map(|r| r.data.len()).sum::<usize>());
            if count + n > MAX_RECORDS_PER_ENTRY || bytes + b > MAX_ENTRY_BYTES {
                carry = Some(next);
                break;
            }
            count += n;
            bytes += b;
            requests.push(next);
        }
        company.observe(requests.len() - 1);
        let now = Instant::now();
        let mut batch = Vec::with_capacity(count);
        // Per request: the outcome of each record, with `Written` positions filled later.
        let mut pending: Vec<(oneshot::Sender<WriteResult>, Vec<Option<usize>>)> = Vec::new();
        for req in requests {
            let slots = req
                .records
                .into_iter()
                .map(|r| {
                    if meter.admit(r.metered_size(), now) {
                        batch.push(r);
                        Some(batch.len() - 1)
                    } else {
                        None
                    }
                })
                .collect();
            pending.push((req.reply, slots));
        }
        let load = load.clone();
        let (batch_bytes, batch_records) =
            (batch.iter().map(|r| r.metered_size() as u64).sum::<u64>(), batch.len() as u64);
        // Proposed here, in order; its outcome is awaited on its own task.
        let proposed = if batch.is_empty() {
            None
        } else {
            let cmd = Command::Append(RecordBatch { arrival_ms: crate::now_ms(), records: batch });
            Some(propose(&raft, cmd).await)
        };
        tokio::spawn(async move {
            let _permit = permit;
            let result = match proposed {
                None => Ok(None),
                Some(Err(rejection)) => Err(rejection),
                Some(Ok(outcome)) => outcome.await.map(Some),
            };
            if matches!(result, Ok(Some(_))) {
                load.record(batch_bytes, batch_records, Instant::now());
            }
            for (reply, slots) in pending {
                let answer = match &result {
                    Err(WriteRejection::Closed) => Ok(slots.iter().map(|_| RecordOutcome::Closed).collect()),
                    Err(rejection) => Err(rejection.clone()),
                    Ok(log_index) => Ok(slots
                        .iter()
                        .map(|slot| match (slot, log_index) {
                            (Some(pos), Some(index)) => {
                                RecordOutcome::Written { log_index: *index, position: *pos as u16 }
                            }
                            _ => RecordOutcome::Throttled,
                        })
                        .collect()),
                };
                let _ = reply.send(answer);
            }
        });
    }
}

/// Closes the shard for a reshard (idempotent): returns the index of its `Close` entry,
/// above every record it holds.
pub async fn close(raft: &ShardRaft, hibernation: &Hibernation) -> Result<u64, WriteRejection> {
    super::wake_to_write(raft, hibernation).await;
    match submit(raft, Command::Close).await? {
        Reply::Closed { at } => Ok(at),
        other => Err(WriteRejection::Failed(Error::internal(format!("unexpected reply {other:?}")))),
    }
}

/// Hands an append to the shard's Raft group; the returned future is its log index once
/// applied. Returning as soon as the entry is queued lets the writer propose the next one
/// behind it, in order.
async fn propose(
    raft: &ShardRaft,
    cmd: Command,
) -> Result<impl std::future::Future<Output = Result<u64, WriteRejection>>, WriteRejection> {
    let (responder, applied) = ProgressResponder::complete_only();
    raft.client_write_ff(cmd, Some(responder)).await.map_err(|e| failed(&e))?;
    Ok(async move {
        let result = applied.await.map_err(|_| failed(&"the write was dropped"))?;
        match reply(result)? {
            Reply::Appended { log_index, .. } => Ok(log_index),
            Reply::Closed { .. } => Err(WriteRejection::Closed),
            other => Err(WriteRejection::Failed(Error::internal(format!("unexpected reply {other:?}")))),
        }
    })
}

/// One command through the shard's Raft group, its reply once applied.
async fn submit(raft: &ShardRaft, cmd: Command) -> Result<Reply, WriteRejection> {
    match raft.client_write(cmd).await {
        Ok(resp) => Ok(resp.data),
        Err(openraft::errors::RaftError::APIError(e)) => reply(Err(e)),
        Err(e) => Err(failed(&e)),
    }
}

/// The reply of an applied command, or why it was not applied.
fn reply(result: ClientWriteResult<TypeConfig>) -> Result<Reply, WriteRejection> {
    match result {
        Ok(resp) => Ok(resp.data),
        // LogEntryDiscarded also lands here: its outcome is unknown, so the client must
        // retry (and may see a duplicate), exactly as with Kinesis.
        Err(ClientWriteError::ForwardToLeader(fwd)) => {
            Err(WriteRejection::NotLeader { leader: fwd.leader_id })
        }
        Err(e) => Err(failed(&e)),
    }
}

fn failed(e: &dyn std::fmt::Display) -> WriteRejection {
    WriteRejection::Failed(Error::new(ErrorKind::Unavailable, format!("shard replica failed: {e}; retry")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(8);

    #[test]
    fn only_pieces_of_spread_requests_on_shards_with_company_linger() {
        assert_eq!(linger(64, 3.0, MAX), MAX, "a PutRecords piece among many producers waits for company");
        assert_eq!(linger(1, 3.0, MAX), Duration::ZERO, "a single-shard request never waits");
        assert_eq!(linger(64, 0.0, MAX), Duration::ZERO, "one producer at a time: no one else would come");
        assert_eq!(linger(64, 0.3, MAX), MAX, "some company now and then is worth waiting for");
        assert_eq!(linger(64, 3.0, Duration::ZERO), Duration::ZERO, "linger off");
    }

    #[test]
    fn company_follows_the_recent_entries() {
        let mut c = Company::default();
        for _ in 0..40 {
            c.observe(3);
        }
        assert!((c.mean() - 3.0).abs() < 0.1, "{}", c.mean());
        // Lingers that gather no one stop it within 20 entries.
        for _ in 0..20 {
            c.observe(0);
        }
        assert!(linger(64, c.mean(), MAX).is_zero(), "{}", c.mean());
    }
}
