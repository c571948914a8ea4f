//! The newest entries of one Raft group, kept decoded in memory.
//!
//! Every entry is read back soon after it is written: by replication (leader), by the
//! state machine when it applies, and by readers tailing the shard. Opening a RocksDB
//! iterator and decoding the entry again for each of those cost more than the write
//! itself, so the log store keeps the tail here and everything that reads near the head of
//! the log is served from memory. The cache always mirrors the log: it holds a contiguous
//! run of the last entries, appended and truncated with it, and is emptied whenever the
//! log is rewritten another way (snapshot installation).

use super::Entry;
use crate::raft::Command;
use openraft::entry::RaftEntry;
use openraft::EntryPayload;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Per group: enough for replication and tailing readers to stay in memory under load,
/// small enough that hundreds of shards on a node cost little.
const MAX_ENTRIES: usize = 64;
const MAX_BYTES: usize = 512 << 10;

#[derive(Default)]
pub struct LogCache {
    tail: Mutex<Tail>,
}

#[derive(Default)]
struct Tail {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Tail {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.index())
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.index())
    }

    fn evict(&mut self) {
        // The newest entry always stays: it is the one about to be read.
        while self.entries.len() > 1 && (self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES) {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes -= size;
            }
        }
    }
}

/// Approximate memory an entry holds.
fn size_of(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(Command::Append(batch)) => {
            batch.records.iter().map(|r| r.data.len() + r.partition_key.len() + 48).sum::<usize>() + 64
        }
        _ => 256,
    }
}

impl LogCache {
    /// Entries just written to the log, in index order.
    pub fn append(&self, entries: Vec<Entry>) {
        let mut tail = self.tail.lock().expect("log cache lock");
        for entry in entries {
            // Anything but the next index means the log was rewritten under us: restart.
            if tail.last_index().is_some_and(|last| last + 1 != entry.index()) {
                *tail = Tail::default();
            }
            let size = size_of(&entry);
            tail.bytes += size;
            tail.entries.push_back((entry, size));
        }
        tail.evict();
    }

    /// The log dropped every entry after `last` (all of them for `None`).
    pub fn truncate_after(&self, last: Option<u64>) {
        let mut tail = self.tail.lock().expect("log cache lock");
        while let Some(index) = tail.last_index() {
            if last.is_some_and(|l| index <= l) {
                break;
            }
            if let Some((_, size)) = tail.entries.pop_back() {
                tail.bytes -= size;
            }
        }
    }

    /// Entries up to and including `index` are no longer needed.
    pub fn forget_through(&self, index: u64) {
        let mut tail = self.tail.lock().expect("log cache lock");
        while tail.first_index().is_some_and(|first| first <= index) {
            if let Some((_, size)) = tail.entries.pop_front() {
                tail.bytes -= size;
            }
        }
    }

    pub fn clear(&self) {
        *self.tail.lock().expect("log cache lock") = Tail::default();
    }

    /// Copies of the entries in `[start, end)`, when the cache holds the start of that
    /// range (it then holds everything the log has from there on); `None` means "read
    /// the log".
    pub fn range(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let mut out = Vec::new();
        self.visit(start, end, |e| {
            out.push(e.clone());
            true
        })
        .then_some(out)
    }

    /// Calls `f` on each entry in `[start, end)` until it returns false; returns false
    /// (having called nothing) when the cache does not hold `start`.
    pub fn visit(&self, start: u64, end: u64, mut f: impl FnMut(&Entry) -> bool) -> bool {
        let tail = self.tail.lock().expect("log cache lock");
        let Some(first) = tail.first_index() else { return false };
        if start < first {
            return false;
        }
        let skip = (start - first) as usize;
        for (entry, _) in tail.entries.iter().skip(skip) {
            if entry.index() >= end || !f(entry) {
                break;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{RecordBatch, RecordInput};

    fn entry(index: u64, term: u64, bytes: usize) -> Entry {
        let batch = RecordBatch {
            arrival_ms: 1,
            records: vec![RecordInput { partition_key: "k".into(), data: vec![7; bytes].into() }],
        };
        Entry {
            log_id: openraft::testing::log_id::<crate::raft::TypeConfig>(term, 1, index),
            payload: EntryPayload::Normal(Command::Append(batch)),
        }
    }

    /// `(index, term)` of each entry.
    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        entries.map(|v| {
            v.iter()
                .map(|e| {
                    let term = (1..=3)
                        .find(|t| {
                            e.log_id == openraft::testing::log_id::<crate::raft::TypeConfig>(*t, 1, e.index())
                        })
                        .expect("term 1-3");
                    (e.index(), term)
                })
                .collect()
        })
    }

    #[test]
    fn serves_only_ranges_it_holds_from_their_start() {
        let cache = LogCache::default();
        assert_eq!(indexes(cache.range(1, 10)), None, "empty cache reads the log");
        cache.append((5..=8).map(|i| entry(i, 1, 10)).collect());
        assert_eq!(indexes(cache.range(4, 10)), None, "index 4 is not held");
        assert_eq!(indexes(cache.range(6, 8)), Some(vec![(6, 1), (7, 1)]));
        assert_eq!(indexes(cache.range(7, u64::MAX)), Some(vec![(7, 1), (8, 1)]));
        assert_eq!(indexes(cache.range(9, 12)), Some(vec![]), "past the end of the log: nothing");
    }

    #[test]
    fn follows_truncation_and_restarts_on_a_gap() {
        let cache = LogCache::default();
        cache.append((1..=5).map(|i| entry(i, 1, 10)).collect());
        cache.truncate_after(Some(3));
        cache.append(vec![entry(4, 2, 10)]);
        assert_eq!(indexes(cache.range(2, 10)), Some(vec![(2, 1), (3, 1), (4, 2)]));
        // A write that does not follow the last entry (the log was rewritten): start over.
        cache.append(vec![entry(10, 3, 10)]);
        assert_eq!(indexes(cache.range(4, 20)), None);
        assert_eq!(indexes(cache.range(10, 20)), Some(vec![(10, 3)]));
        cache.truncate_after(None);
        assert_eq!(indexes(cache.range(10, 20)), None);
    }

    #[test]
    fn keeps_within_its_budget_but_always_the_newest() {
        let cache = LogCache::default();
        cache.append((1..=200).map(|i| entry(i, 1, 10)).collect());
        assert_eq!(indexes(cache.range(200 - MAX_ENTRIES as u64, 201)), None);
        assert_eq!(cache.range(201 - MAX_ENTRIES as u64, 201).map(|v| v.len()), Some(MAX_ENTRIES));
        cache.append(vec![entry(201, 1, 4 * MAX_BYTES)]);
        assert_eq!(indexes(cache.range(200, 202)), None, "older entries make room");
        assert_eq!(indexes(cache.range(201, 202)), Some(vec![(201, 1)]));
        cache.forget_through(201);
        assert_eq!(indexes(cache.range(201, 202)), None);
    }
}
