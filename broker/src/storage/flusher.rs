//! Node-wide group commit: appends are written unsynced and queue a completion here; one
//! thread runs a single WAL fsync and then completes every completion queued before it.
//! One fsync serves every shard that appended meanwhile.
//!
//! Appends that arrive while a sync runs share the next one, so a busy node needs no
//! timer to batch its syncs. An optional `linger` (`--sync-linger-us`) makes a busy node
//! (an append within three `linger`s of the previous sync) wait before syncing; it is off
//! by default, since every Raft entry waits for it on the leader and again on a follower.

use rocksdb::DB;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

type Completion = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// Off. Measured on 2 cores (docs/benchmarks.md): 1 ms once gave +55% batched
/// throughput, before shard writers lingered for company themselves; now it costs single
/// puts 20-40% (an fsync here takes 0.2 ms) and gains batched writes nothing measurable.
pub const DEFAULT_LINGER: Duration = Duration::ZERO;

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Completion>,
}

/// Whether the sync thread should wait for company before syncing: only when the node is
/// busy, that is the previous sync ended less than three `linger`s ago.
pub fn should_linger(linger: Duration, since_last_sync: Option<Duration>) -> bool {
    !linger.is_zero() && since_last_sync.is_some_and(|gap| gap < linger * 3)
}

impl Flusher {
    pub fn start(db: &Arc<DB>, linger: Duration) -> Flusher {
        // Weak: the sync thread must not keep the database open after the node let go.
        let db: Weak<DB> = Arc::downgrade(db);
        let (tx, rx) = mpsc::channel::<Completion>();
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                let mut last_sync: Option<Instant> = None;
                while let Ok(first) = rx.recv() {
                    if should_linger(linger, last_sync.map(|t| t.elapsed())) {
                        std::thread::sleep(linger);
                    }
                    // Everything queued so far was written before this sync starts.
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = match db.upgrade() {
                        Some(db) => db.flush_wal(true).map_err(|e| std::io::Error::other(e.to_string())),
                        None => Err(std::io::Error::other("database closed")),
                    };
                    last_sync = Some(Instant::now());
                    if let Err(e) = &result {
                        tracing::error!("WAL fsync failed: {e}");
                    }
                    for done in waiting {
                        done(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
                    }
                }
            })
            .expect("spawn wal-sync thread");
        Flusher { tx }
    }

    /// Calls `done` once everything written before this call is on disk.
    pub fn after_sync(&self, done: impl FnOnce(Result<(), std::io::Error>) + Send + 'static) {
        if let Err(mpsc::SendError(done)) = self.tx.send(Box::new(done)) {
            done(Err(std::io::Error::other("WAL sync thread stopped")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lingers_only_when_busy() {
        let ms = Duration::from_millis(1);
        assert!(!should_linger(ms, None), "first sync of a node: at once");
        assert!(!should_linger(ms, Some(5 * ms)), "quiet node: at once");
        assert!(should_linger(ms, Some(ms / 4)), "busy node: wait for company");
        assert!(should_linger(ms, Some(2 * ms)), "busy node: wait for company");
        assert!(!should_linger(Duration::ZERO, Some(Duration::ZERO)), "linger off");
    }
}
