//! Reading records straight from a replica's committed log entries.

use super::state_machine::ShardShared;
use crate::error::{Error, Result};
use crate::raft::{decode, Command, Entry};
use crate::sequence::{SequenceBase, SequenceNumber};
use crate::storage::{keys, CF_LOG, CF_TS_INDEX};
use openraft::entry::RaftEntry;
use openraft::EntryPayload;
use std::sync::Arc;

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub sequence_number: SequenceNumber,
    pub partition_key: String,
    pub data: bytes::Bytes,
    pub arrival_ms: i64,
}

/// Where to read from: `(log index, position inside the entry)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub log_index: u64,
    pub position: u16,
}

pub struct Page {
    pub records: Vec<StoredRecord>,
    /// Where the next read continues.
    pub next: Position,
    pub millis_behind_latest: u64,
    /// The shard was closed by a reshard and everything in it has been read.
    pub ended: bool,
}

pub struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Records that arrived before this are expired and never returned.
    pub expired_before_ms: i64,
}

impl ShardShared {
    /// The position right after the last applied entry (LATEST); the end of a closed shard.
    pub fn latest(&self) -> Position {
        let state = self.state();
        let after = state.applied_index() + 1;
        Position { log_index: state.closed_at.map_or(after, |c| c.min(after)), position: 0 }
    }

    /// The first retained position (TRIM_HORIZON).
    pub fn trim_horizon(&self) -> Position {
        Position { log_index: self.state().first_index, position: 0 }
    }

    /// The first entry that arrived at or after `ts_ms` (AT_TIMESTAMP), else LATEST.
    pub fn at_timestamp(&self, ts_ms: i64) -> Result<Position> {
        let (_, to) = keys::group_bounds(self.group);
        let from = keys::ts(self.group, ts_ms, 0);
        match self.store.scan(CF_TS_INDEX, from, to).next() {
            Some(item) => {
                let (_, v) = item?;
                let index = u64::from_be_bytes(
                    v.as_slice().try_into().map_err(|_| Error::internal("bad arrival-time index value"))?,
                );
                Ok(Position { log_index: index.max(self.state().first_index), position: 0 })
            }
            None => Ok(self.latest()),
        }
    }

    /// Arrival time of the oldest record still held (None: no records).
    pub fn oldest_arrival_ms(&self) -> Result<Option<i64>> {
        let (from, to) = keys::group_bounds(self.group);
        match self.store.scan(CF_TS_INDEX, from, to).next() {
            Some(item) => {
                let (k, _) = item?;
                let ts = k
                    .get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| Error::internal("bad arrival-time index key"))?;
                Ok(Some(ts as i64))
            }
            None => Ok(None),
        }
    }

    /// Reads committed records from `from`, in sequence order, within `limits`.
    pub fn read(&self, base: SequenceBase, from: Position, limits: &ReadLimits) -> Result<Page> {
        self.read_from(base, from, limits, true)?
            .ok_or_else(|| Error::internal("a read that may use the disk gave no page"))
    }

    /// The page at `from`: served at once from memory when the log's tail holds it, else
    /// read on a blocking thread. A tailing reader thus costs no thread hand-off per page
    /// (two context switches, which cost more than the read itself).
    pub async fn read_page(
        self: &Arc<Self>,
        base: SequenceBase,
        from: Position,
        limits: ReadLimits,
    ) -> Result<Page> {
        if let Some(page) = self.read_from(base, from, &limits, false)? {
            return Ok(page);
        }
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.read(base, from, &limits))
            .await
            .map_err(|e| Error::internal(format!("read task failed: {e}")))?
    }

    /// The page at `from`; `None` when it needs the disk and `disk` is false.
    fn read_from(
        &self,
        base: SequenceBase,
        from: Position,
        limits: &ReadLimits,
        disk: bool,
    ) -> Result<Option<Page>> {
        let state = self.state();
        // The last entry that may hold records: nothing at or after a `Close` is served.
        let applied = match state.closed_at {
            Some(close) => state.applied_index().min(close.saturating_sub(1)),
            None => state.applied_index(),
        };
        let mut next = from.max(Position { log_index: state.first_index, position: 0 });
        let mut records = Vec::new();
        let mut bytes = 0usize;
        // A limit stopped the read at `next`, which is where the next page starts.
        let mut full = false;
        if next.log_index <= applied {
            let from = next;
            // Takes the records of one entry from `next` on; false once a limit is reached.
            let mut take = |index: u64, entry: &Entry| -> bool {
                let start = if index == from.log_index { from.position as usize } else { 0 };
                if let EntryPayload::Normal(Command::Append(batch)) = &entry.payload {
                    for (pos, r) in batch.records.iter().enumerate().skip(start) {
                        if records.len() >= limits.max_records
                            || (bytes + r.data.len() > limits.max_bytes && !records.is_empty())
                        {
                            next = Position { log_index: index, position: pos as u16 };
                            full = true;
                            return false;
                        }
                        if batch.arrival_ms >= limits.expired_before_ms {
                            bytes += r.data.len();
                            records.push(StoredRecord {
                                sequence_number: base.at(index, pos as u16),
                                partition_key: r.partition_key.clone(),
                                data: r.data.clone(),
                                arrival_ms: batch.arrival_ms,
                            });
                        }
                    }
                }
                next = Position { log_index: index + 1, position: 0 };
                true
            };
            // A reader near the head of the log is served from memory.
            let cached = self.cache.visit(from.log_index, applied + 1, |entry| take(entry.index(), entry));
            if !cached && !disk {
                return Ok(None);
            }
            if !cached {
                let (lo, hi) = keys::log_range(self.group, from.log_index, applied + 1);
                for item in self.store.scan(CF_LOG, lo, hi) {
                    let (key, value) = item.map_err(|e| {
                        tracing::error!(group = self.group, "refusing to serve a corrupt entry: {e}");
                        Error::internal(format!("shard replica is corrupt and stopped serving: {e}"))
                    })?;
                    let index = keys::index_of(&key);
                    let entry: Entry = decode(&value)
                        .map_err(|e| Error::internal(format!("undecodable entry {index}: {e}")))?;
                    if !take(index, &entry) {
                        break;
                    }
                }
            }
            // Read to the end without reaching a limit, yet short of `applied`: the
            // entries in between are gone (compacted), so the reader moves past them.
            if !full && next.log_index <= applied {
                next = Position { log_index: applied + 1, position: 0 };
            }
        }
        let behind = match records.last() {
            Some(r) if next.log_index <= applied => (state.last_arrival_ms - r.arrival_ms).max(0) as u64,
            _ => 0,
        };
        let ended = state.closed_at.is_some_and(|close| next.log_index >= close);
        Ok(Some(Page { records, next, millis_behind_latest: behind, ended }))
    }
}
