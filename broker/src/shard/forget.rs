//! Lets every replica of a shard forget the log entries a retention trim made unreadable,
//! so that their disk space comes back (`storage/reclaim.rs`).
//!
//! Raft keeps each entry after its last purge for followers that are behind, and purges
//! only behind a snapshot. Left to the snapshot policy (`SNAPSHOT_EVERY` entries, keeping
//! the last thousand), a shard of few, large entries would hold records long past their
//! retention. So after a trim each replica takes a snapshot (cheap: the records stay in
//! the log) and purges up to the trim horizon; openraft itself holds back entries it is
//! still sending to a follower.

use super::ShardRaft;
use openraft::async_runtime::WatchReceiver;
use std::time::Duration;
use tokio::sync::watch;

/// How long a replica waits for the snapshot that lets it purge; a later trim tries again.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// Follows the trim horizon of one replica until its group stops.
pub fn spawn(raft: ShardRaft, mut trimmed: watch::Receiver<u64>) {
    tokio::spawn(async move {
        loop {
            let below = *trimmed.borrow_and_update();
            if !forget_below(&raft, below).await {
                return;
            }
            if trimmed.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Purges the log below `below` if it is not yet; false once the group has stopped.
async fn forget_below(raft: &ShardRaft, below: u64) -> bool {
    let next = |l: Option<openraft::LogId<_>>| l.map(|l| l.index + 1).unwrap_or(0);
    let (purged, snapshot) = {
        let m = raft.metrics();
        let m = m.borrow_watched();
        (next(m.purged), next(m.snapshot))
    };
    if below == 0 || purged >= below {
        return true;
    }
    if snapshot < below {
        if raft.trigger().snapshot().await.is_err() {
            return false;
        }
        let covered = raft
            .wait(Some(SNAPSHOT_WAIT))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index + 1 >= below), "a snapshot up to the trim")
            .await;
        if covered.is_err() {
            return raft.metrics().borrow_watched().running_state.is_ok();
        }
    }
    raft.trigger().purge_log(below - 1).await.is_ok()
}
