//! The Raft log of one group, in the node's shared RocksDB.
//!
//! For shard groups the log is also the record store: purging (after a snapshot) only
//! moves the point below which Raft may no longer read; the bytes stay until retention
//! trims them too. Whichever of the two comes last deletes them.

use super::log_cache::LogCache;
use super::{decode, encode, io_err, Entry, GroupId, LogId, TypeConfig, Vote};
use crate::storage::{keys, Store, CF_LOG, CF_RAFT_META};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use rocksdb::WriteBatch;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

/// Key in `raft_meta` where a shard's state machine records its trim point (the first
/// log index still within retention).
pub const TRIM: &[u8] = b"trim";

#[derive(Clone)]
pub struct LogStore {
    store: Store,
    group: GroupId,
    /// Shard groups keep purged entries until retention trims them.
    keeps_records: bool,
    /// Raft's read floor, cached: every replication read consults it.
    purged: std::sync::Arc<std::sync::RwLock<Option<Option<LogId>>>>,
    /// The latest committed id openraft reported, written with the next append rather than
    /// on its own (one RocksDB write fewer per entry; a slightly older committed id after
    /// a crash is still a committed id). Not saved less often: whatever it lags behind
    /// stays unreadable after a restart until a new leader commits an entry of its own.
    committed: std::sync::Arc<std::sync::Mutex<Committed>>,
    /// The newest entries, decoded: replication and apply read them from here.
    cache: std::sync::Arc<LogCache>,
    /// A shard group's sleep state: every append wakes it.
    hibernation: Option<std::sync::Arc<crate::shard::hibernation::Hibernation>>,
}

#[derive(Default)]
struct Committed {
    latest: Option<LogId>,
    saved_index: u64,
}

impl LogStore {
    /// `cache` is shared with whoever else reads this group's tail (a shard's readers).
    pub fn new(store: Store, group: GroupId, keeps_records: bool, cache: std::sync::Arc<LogCache>) -> Self {
        LogStore {
            store,
            group,
            keeps_records,
            purged: Default::default(),
            committed: Default::default(),
            cache,
            hibernation: None,
        }
    }

    /// Appends will wake the group from hibernation.
    pub fn with_hibernation(mut self, h: std::sync::Arc<crate::shard::hibernation::Hibernation>) -> Self {
        self.hibernation = Some(h);
        self
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, name: &[u8]) -> io::Result<Option<T>> {
        match self.store.get(CF_RAFT_META, &keys::meta(self.group, name))? {
            None => Ok(None),
            Some(b) => decode(&b).map(Some),
        }
    }

    fn purged(&self) -> io::Result<Option<LogId>> {
        if let Some(p) = *self.purged.read().expect("purged lock") {
            return Ok(p);
        }
        let p: Option<LogId> = self.read_meta(keys::PURGED)?;
        *self.purged.write().expect("purged lock") = Some(p);
        Ok(p)
    }

    /// Deletes entry bytes below `index` (exclusive).
    fn delete_below(&self, index: u64) -> io::Result<()> {
        let (from, to) = keys::log_range(self.group, 0, index);
        let mut b = WriteBatch::default();
        self.store.delete_range(&mut b, CF_LOG, &from, &to);
        self.store.write(b)?;
        self.store.reclaim_log(self.group, from, to);
        Ok(())
    }
}

/// Reads entries for Raft, hiding those at or below the purge point.
impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let floor = self.purged()?.map(|l| l.index + 1).unwrap_or(0);
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => *x + 1,
            Bound::Unbounded => 0,
        }
        .max(floor);
        let end = match range.end_bound() {
            Bound::Included(x) => x.saturating_add(1),
            Bound::Excluded(x) => *x,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.cache.range(start, end) {
            return Ok(entries);
        }
        let (from, to) = keys::log_range(self.group, start, end);
        self.store
            .scan(CF_LOG, from, to)
            .map(|item| {
                let (_, value) = item?;
                decode::<Entry>(&value)
            })
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(keys::VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged = self.purged()?;
        let (from, to) = keys::log_range(self.group, 0, u64::MAX);
        let last = match self.store.last_key(CF_LOG, from, to)? {
            Some(key) => {
                let value = self.store.get(CF_LOG, &key)?.ok_or_else(|| io_err("log entry vanished"))?;
                Some(decode::<Entry>(&value)?.log_id())
            }
            None => None,
        };
        let last = match (last, purged) {
            (Some(l), Some(p)) if l.index <= p.index => Some(p),
            (None, p) => p,
            (l, _) => l,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut b = WriteBatch::default();
        self.store.put(&mut b, CF_RAFT_META, &keys::meta(self.group, keys::VOTE), &encode(vote)?);
        // A vote must survive a crash before it is acted on.
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write_sync(b)).await.map_err(io_err)??;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut c = self.committed.lock().expect("committed lock");
        c.latest = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        if let Some(c) = self.committed.lock().expect("committed lock").latest {
            return Ok(Some(c));
        }
        Ok(self.read_meta::<Option<LogId>>(keys::COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut b = WriteBatch::default();
        let entries: Vec<Entry> = entries.into_iter().collect();
        for entry in &entries {
            self.store.put(&mut b, CF_LOG, &keys::log(self.group, entry.index()), &encode(entry)?);
        }
        {
            let mut c = self.committed.lock().expect("committed lock");
            let index = c.latest.map(|l| l.index).unwrap_or(0);
            if index > c.saved_index {
                self.store.put(
                    &mut b,
                    CF_RAFT_META,
                    &keys::meta(self.group, keys::COMMITTED),
                    &encode(&c.latest)?,
                );
                c.saved_index = index;
            }
        }
        // Readable now; durable once the node-wide WAL sync that follows completes.
        self.store.write(b)?;
        if let (Some(h), false) = (&self.hibernation, entries.is_empty()) {
            h.note_append();
        }
        self.cache.append(entries);
        self.store.flusher.after_sync(move |result| callback.io_completed(result));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map(|l| l.index + 1).unwrap_or(0);
        let (from, to) = keys::log_range(self.group, from, u64::MAX);
        let mut b = WriteBatch::default();
        self.store.delete_range(&mut b, CF_LOG, &from, &to);
        self.store.write(b)?;
        self.cache.truncate_after(last.map(|l| l.index));
        Ok(())
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        // The marker first, and durably, so a crash never exposes a hole to Raft.
        let mut b = WriteBatch::default();
        self.store.put(&mut b, CF_RAFT_META, &keys::meta(self.group, keys::PURGED), &encode(&upto)?);
        self.store.write_sync(b)?;
        *self.purged.write().expect("purged lock") = Some(Some(upto));
        self.cache.forget_through(upto.index);
        let below = if self.keeps_records {
            let trim: u64 = self.read_meta(TRIM)?.unwrap_or(0);
            trim.min(upto.index + 1)
        } else {
            upto.index + 1
        };
        self.delete_below(below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaStateMachine;
    use crate::shard::state_machine::{ShardShared, ShardStateMachine};
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::StorageError;

    struct MetaGroup;
    struct ShardGroup;

    impl StoreBuilder<TypeConfig, LogStore, MetaStateMachine, tempfile::TempDir> for MetaGroup {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, MetaStateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open rocksdb");
            let (sm, _) = MetaStateMachine::open(store.clone()).expect("open metadata state machine");
            Ok((dir, LogStore::new(store, crate::meta::META_GROUP, false, Default::default()), sm))
        }
    }

    impl StoreBuilder<TypeConfig, LogStore, ShardStateMachine, tempfile::TempDir> for ShardGroup {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, ShardStateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open rocksdb");
            let cache = std::sync::Arc::new(LogCache::default());
            let shared = ShardShared::open(store.clone(), 9, cache.clone()).expect("open shard state");
            Ok((dir, LogStore::new(store, 9, true, cache), ShardStateMachine { shared }))
        }
    }

    /// openraft's own conformance suite, for both kinds of group, with their real state
    /// machines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_store_passes_openraft_suite() {
        Suite::test_all(MetaGroup).await.expect("metadata group");
        Suite::test_all(ShardGroup).await.expect("shard group");
    }
}
