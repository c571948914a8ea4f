//! Node-wide group commit: appends are written unsynced and queue a completion here; one
//! thread runs a single WAL fsync and then completes every completion queued before it.
//! One fsync serves every shard that appended meanwhile.

use rocksdb::DB;
use std::sync::mpsc;
use std::sync::{Arc, Weak};

type Completion = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Completion>,
}

impl Flusher {
    pub fn start(db: &Arc<DB>) -> Flusher {
        // Weak: the sync thread must not keep the database open after the node let go.
        let db: Weak<DB> = Arc::downgrade(db);
        let (tx, rx) = mpsc::channel::<Completion>();
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Everything queued so far was written before this sync starts.
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = match db.upgrade() {
                        Some(db) => db.flush_wal(true).map_err(|e| std::io::Error::other(e.to_string())),
                        None => Err(std::io::Error::other("database closed")),
                    };
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
