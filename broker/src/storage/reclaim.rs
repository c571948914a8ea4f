//! Gives back the disk space of log entries a group deleted (retention trims, Raft purges).
//!
//! A range delete only writes a tombstone: the entries stay in their table and blob files
//! until a compaction drops their keys, and a blob file goes only once all of its values
//! are garbage. On a node that stops writing, no compaction would ever come, and a blob
//! file shared with a stream of longer retention would never empty. So each deleted range
//! is compacted here, in the background, on one thread. Dropping the keys counts their
//! values as garbage in their blob files; a file all garbage is deleted at once, and
//! RocksDB's blob GC (`Store::open_with`) moves the live values out of the oldest quarter
//! of the files once that is half garbage. (A newer file that a short-retained stream
//! mostly emptied keeps its garbage until it is among the oldest quarter.)

use super::CF_LOG;
use rocksdb::{BottommostLevelCompaction, CompactOptions, DB};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Weak;
use std::time::{Duration, Instant};

type Range = (u64, Vec<u8>, Vec<u8>);

/// Batches of compactions start at least this far apart. A compaction first flushes the
/// memtable when it holds the range's delete, so a node trimming many shards at once
/// flushes once per batch rather than once per shard.
const BATCH_GAP: Duration = Duration::from_secs(10);

/// Queues deleted log ranges for compaction. Dropping it (the node's last `Store` going)
/// waits for the compaction under way: the process must not exit in the middle of one.
pub struct Reclaimer {
    tx: Option<mpsc::Sender<Range>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Ranges queued meanwhile, merged per group: one compaction from the lowest start to the
/// highest end covers every trim of that group since the last one.
pub fn merge(ranges: impl IntoIterator<Item = Range>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut by_group: BTreeMap<u64, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for (group, from, to) in ranges {
        by_group
            .entry(group)
            .and_modify(|(f, t)| {
                if from < *f {
                    f.clone_from(&from);
                }
                if to > *t {
                    t.clone_from(&to);
                }
            })
            .or_insert((from, to));
    }
    by_group.into_values().collect()
}

impl Reclaimer {
    pub fn start(db: Weak<DB>) -> Reclaimer {
        let (tx, rx) = mpsc::channel::<Range>();
        let thread = std::thread::Builder::new()
            .name("reclaim".into())
            .spawn(move || {
                let mut opts = CompactOptions::default();
                // Beside the automatic compactions, not instead of them; and down to the
                // last level, where most of a long log's keys are.
                opts.set_exclusive_manual_compaction(false);
                opts.set_bottommost_level_compaction(BottommostLevelCompaction::ForceOptimized);
                let mut next_batch = Instant::now();
                while let Ok(first) = rx.recv() {
                    let mut queued = vec![first];
                    while let Some(wait) = next_batch.checked_duration_since(Instant::now()) {
                        match rx.recv_timeout(wait) {
                            Ok(range) => queued.push(range),
                            Err(mpsc::RecvTimeoutError::Timeout) => break,
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    queued.extend(rx.try_iter());
                    next_batch = Instant::now() + BATCH_GAP;
                    let ranges = merge(queued);
                    let Some(db) = db.upgrade() else { return };
                    let Some(cf) = db.cf_handle(CF_LOG) else { return };
                    for (from, to) in ranges {
                        db.compact_range_cf_opt(cf, Some(&from), Some(&to), &opts);
                    }
                }
            })
            .expect("spawn reclaim thread");
        Reclaimer { tx: Some(tx), thread: Some(thread) }
    }

    /// Compacts `[from, to)` of the log family of `group` soon, once written deletes of it
    /// are in the database.
    pub fn reclaim(&self, group: u64, from: Vec<u8>, to: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((group, from, to));
        }
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the compaction under way, if any.
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_per_group() {
        let r = |g: u64, a: u8, b: u8| (g, vec![a], vec![b]);
        let merged = merge([r(2, 0, 5), r(1, 0, 3), r(2, 0, 9), r(1, 2, 4)]);
        assert_eq!(merged, vec![(vec![0], vec![4]), (vec![0], vec![9])]);
    }
}
