//! A shard replica's state machine. Applying an entry never copies the records: they stay
//! in the log entry that carried them. Apply records only small things: the applied id,
//! the arrival-time index, the trim horizon.

use crate::raft::log_cache::LogCache;
use crate::raft::log_store::TRIM;
use crate::raft::{
    decode, encode, Command, Entry, GroupId, LogId, Reply, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use crate::storage::{keys, Store, CF_LOG, CF_RAFT_META, CF_SM_META, CF_TS_INDEX};
use futures::TryStreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

const SNAPSHOT_META: &[u8] = b"snapshot";

/// The applied state is saved every this many entries (and at every membership change,
/// trim and snapshot) rather than at every apply: after a crash openraft applies the
/// entries since the saved state again, which yields the same state, since applying is
/// deterministic and idempotent. Saves a RocksDB write per entry on every replica.
const SAVE_STATE_EVERY: u64 = 256;

/// What a shard replica knows beyond its log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardState {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Arrival time of the newest record; stamps never go backwards within a shard.
    pub last_arrival_ms: i64,
    /// First log index still within retention (the trim horizon).
    pub first_index: u64,
    /// Index of the `Close` entry once a reshard closed the shard: every record is below it.
    pub closed_at: Option<u64>,
}

impl ShardState {
    pub fn applied_index(&self) -> u64 {
        self.applied.map(|l| l.index).unwrap_or(0)
    }
}

/// State shared between the state machine (the writer) and readers on the same node.
pub struct ShardShared {
    pub store: Store,
    pub group: GroupId,
    /// The log's newest entries, shared with the log store: tailing readers read here.
    pub cache: Arc<LogCache>,
    state: RwLock<ShardState>,
    applied: watch::Sender<u64>,
    /// The trim horizon (`first_index`), changed only by trims: what `shard/forget.rs` waits on.
    trimmed: watch::Sender<u64>,
    /// The applied index of the last saved state.
    saved: std::sync::atomic::AtomicU64,
}

impl ShardShared {
    pub fn open(store: Store, group: GroupId, cache: Arc<LogCache>) -> io::Result<Arc<ShardShared>> {
        let state: ShardState = match store.get(CF_SM_META, &keys::meta(group, keys::STATE))? {
            Some(b) => decode(&b)?,
            None => ShardState::default(),
        };
        let (applied, _) = watch::channel(state.applied_index());
        let (trimmed, _) = watch::channel(state.first_index);
        let saved = std::sync::atomic::AtomicU64::new(state.applied_index());
        Ok(Arc::new(ShardShared { store, group, cache, state: RwLock::new(state), applied, trimmed, saved }))
    }

    pub fn state(&self) -> ShardState {
        self.state.read().expect("shard lock").clone()
    }

    /// Wakes whenever entries are applied (the push path of Subscribe).
    pub fn applied_changes(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The trim horizon, waking only when a trim moves it.
    pub fn trim_changes(&self) -> watch::Receiver<u64> {
        self.trimmed.subscribe()
    }

    fn commit(&self, b: &mut WriteBatch, state: &ShardState) -> io::Result<()> {
        self.store.put(b, CF_SM_META, &keys::meta(self.group, keys::STATE), &encode(state)?);
        self.saved.store(state.applied_index(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn save_due(&self, state: &ShardState) -> bool {
        state.applied_index() >= self.saved.load(std::sync::atomic::Ordering::Relaxed) + SAVE_STATE_EVERY
    }

    fn publish(&self, state: ShardState) {
        let (applied, first_index) = (state.applied_index(), state.first_index);
        *self.state.write().expect("shard lock") = state;
        self.applied.send_replace(applied);
        self.trimmed.send_if_modified(|t| std::mem::replace(t, first_index) != first_index);
    }

    /// Deletes record bytes below the trim horizon that Raft no longer needs either; the
    /// deleted range, for `Store::reclaim_log` once `b` is written.
    fn delete_trimmed(&self, b: &mut WriteBatch, first_index: u64) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        // The log store saves the purge point as a bare `LogId` (`LogStore::purge`).
        let purged: Option<LogId> =
            match self.store.get(CF_RAFT_META, &keys::meta(self.group, keys::PURGED))? {
                Some(v) => Some(decode(&v)?),
                None => None,
            };
        let below = first_index.min(purged.map(|p| p.index + 1).unwrap_or(0));
        if below == 0 {
            return Ok(None);
        }
        let (from, to) = keys::log_range(self.group, 0, below);
        self.store.delete_range(b, CF_LOG, &from, &to);
        Ok(Some((from, to)))
    }
}

#[derive(Clone)]
pub struct ShardStateMachine {
    pub shared: Arc<ShardShared>,
}

/// A snapshot carries the shard's state plus every retained record, so a new or far
/// behind replica receives exactly what a reader could still read.
///
/// Locally a snapshot is only the state (`entries: None`): the records are already in the
/// log. The records are gathered only when a snapshot is sent to another replica.
#[derive(Serialize, Deserialize)]
struct ShardSnapshot {
    state: ShardState,
    /// `(log index, encoded entry)` from the trim horizon to the snapshot point.
    entries: Option<Vec<(u64, Vec<u8>)>>,
}

/// Fills a locally deferred snapshot with the retained records it stands for, read from
/// this replica's log; called by the network just before a snapshot is sent.
pub fn materialize(store: &Store, group: GroupId, data: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut snap: ShardSnapshot = decode(&data)?;
    if snap.entries.is_some() {
        return Ok(data);
    }
    let mut entries = Vec::new();
    if let Some(applied) = snap.state.applied {
        let (from, to) = keys::log_range(group, snap.state.first_index, applied.index + 1);
        for item in store.scan(CF_LOG, from, to) {
            let (k, v) = item?;
            entries.push((keys::index_of(&k), v));
        }
    }
    snap.entries = Some(entries);
    encode(&snap)
}

impl ShardStateMachine {
    fn snapshot_of(&self, state: ShardState) -> io::Result<Snapshot> {
        let meta = SnapshotMeta { last_log_id: state.applied, last_membership: state.membership.clone() };
        let bytes = encode(&ShardSnapshot { state, entries: None })?;
        Ok(Snapshot { meta, snapshot: std::io::Cursor::new(bytes) })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for ShardStateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let state = self.shared.state();
        let snapshot = self.snapshot_of(state.clone())?;
        // Only the small part is kept: the records are still in the log. The state is
        // saved with it, so the saved state is never behind a snapshot (whose entries
        // Raft may purge).
        let mut b = WriteBatch::default();
        self.shared.commit(&mut b, &state)?;
        self.shared.store.put(
            &mut b,
            CF_SM_META,
            &keys::meta(self.shared.group, SNAPSHOT_META),
            &encode(&state)?,
        );
        self.shared.store.write_sync(b)?;
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for ShardStateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = ShardStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let s = self.shared.state();
        Ok((s.applied, s.membership))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let shared = &self.shared;
        let mut state = shared.state();
        let mut b = WriteBatch::default();
        let mut replies = Vec::new();
        let mut save = false;
        let mut reclaim = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.index();
            state.applied = Some(entry.log_id());
            let reply = match entry.payload {
                EntryPayload::Normal(Command::Append(_)) if state.closed_at.is_some() => {
                    Reply::Closed { at: state.closed_at.unwrap_or(index) }
                }
                EntryPayload::Normal(Command::Close) => {
                    let at = *state.closed_at.get_or_insert(index);
                    save = true;
                    Reply::Closed { at }
                }
                EntryPayload::Normal(Command::Append(batch)) => {
                    let arrival = batch.arrival_ms.max(state.last_arrival_ms);
                    if arrival > state.last_arrival_ms || state.last_arrival_ms == 0 {
                        // First entry at this millisecond: AT_TIMESTAMP starts here.
                        shared.store.put(
                            &mut b,
                            CF_TS_INDEX,
                            &keys::ts(shared.group, arrival, 0),
                            &index.to_be_bytes(),
                        );
                    }
                    state.last_arrival_ms = arrival;
                    Reply::Appended { log_index: index, arrival_ms: arrival }
                }
                EntryPayload::Normal(Command::Trim { below_index }) if below_index > state.first_index => {
                    let below_index = below_index.min(index);
                    state.first_index = below_index;
                    shared.store.put(
                        &mut b,
                        CF_RAFT_META,
                        &keys::meta(shared.group, TRIM),
                        &encode(&below_index)?,
                    );
                    drop_ts_index_below(shared, &mut b, below_index)?;
                    reclaim = shared.delete_trimmed(&mut b, below_index)?.or(reclaim);
                    save = true;
                    Reply::None
                }
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    save = true;
                    Reply::None
                }
                _ => Reply::None,
            };
            if let Some(r) = responder {
                replies.push((r, reply));
            }
        }
        if save || shared.save_due(&state) {
            shared.commit(&mut b, &state)?;
        }
        if !b.is_empty() {
            shared.store.write(b)?;
        }
        if let Some((from, to)) = reclaim {
            shared.store.reclaim_log(shared.group, from, to);
        }
        shared.publish(state);
        for (r, reply) in replies {
            r.send(reply);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let snap: ShardSnapshot = decode(&snapshot.into_inner())?;
        let shared = &self.shared;
        let mut state = snap.state;
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let mut b = WriteBatch::default();
        let (from, to) = keys::log_range(shared.group, 0, state.first_index);
        shared.store.delete_range(&mut b, CF_LOG, &from, &to);
        // A deferred snapshot is our own: its records are in our log already.
        let entries = snap.entries.unwrap_or_default();
        if !entries.is_empty() {
            let (from, to) = keys::group_bounds(shared.group);
            shared.store.delete_range(&mut b, CF_TS_INDEX, &from, &to);
        }
        let mut last_arrival = i64::MIN;
        for (index, bytes) in &entries {
            shared.store.put(&mut b, CF_LOG, &keys::log(shared.group, *index), bytes);
            let entry: Entry = decode(bytes)?;
            if let EntryPayload::Normal(Command::Append(batch)) = entry.payload {
                let arrival = batch.arrival_ms.max(last_arrival);
                if arrival > last_arrival {
                    shared.store.put(
                        &mut b,
                        CF_TS_INDEX,
                        &keys::ts(shared.group, arrival, 0),
                        &index.to_be_bytes(),
                    );
                }
                last_arrival = arrival;
            }
        }
        shared.store.put(&mut b, CF_RAFT_META, &keys::meta(shared.group, TRIM), &encode(&state.first_index)?);
        shared.store.put(&mut b, CF_SM_META, &keys::meta(shared.group, SNAPSHOT_META), &encode(&state)?);
        shared.commit(&mut b, &state)?;
        shared.store.write_sync(b)?;
        // The log was rewritten below the snapshot without the log store.
        shared.cache.clear();
        shared.publish(state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let s = &self.shared;
        match s.store.get(CF_SM_META, &keys::meta(s.group, SNAPSHOT_META))? {
            None => Ok(None),
            Some(b) => {
                let mut state: ShardState = decode(&b)?;
                // Records trimmed since the snapshot was taken are gone for readers too.
                state.first_index = state.first_index.max(s.state().first_index);
                Ok(Some(self.snapshot_of(state)?))
            }
        }
    }
}

/// Removes arrival-time index keys of entries below `below_index` (arrival times grow
/// with the index, so they are a prefix of the group's keys).
fn drop_ts_index_below(shared: &ShardShared, b: &mut WriteBatch, below_index: u64) -> io::Result<()> {
    let (from, to) = keys::group_bounds(shared.group);
    let mut last_below: Option<Box<[u8]>> = None;
    for item in shared.store.scan(CF_TS_INDEX, from.clone(), to) {
        let (k, v) = item?;
        let index = u64::from_be_bytes(v.as_slice().try_into().map_err(crate::raft::io_err)?);
        if index >= below_index {
            break;
        }
        last_below = Some(k);
    }
    if let Some(k) = last_below {
        // Keep nothing at or below the last trimmed key.
        let mut end = k.to_vec();
        end.push(0);
        shared.store.delete_range(b, CF_TS_INDEX, &from, &end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_store::LogStore;
    use openraft::storage::RaftLogStorage;
    use openraft::type_config::alias::LeaderIdOf;
    use openraft::vote::RaftLeaderIdExt;

    /// A trim past Raft's purge point reads the point the log store saved, and deletes
    /// only what both let go. (It once read it in another encoding and failed the apply,
    /// which stops the group.)
    #[tokio::test]
    async fn a_trim_deletes_only_entries_raft_has_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let group = 7;
        let mut b = WriteBatch::default();
        for i in 0..10 {
            store.put(&mut b, CF_LOG, &keys::log(group, i), b"entry");
        }
        store.write(b).unwrap();
        let cache = Arc::new(LogCache::default());
        let mut log = LogStore::new(store.clone(), group, true, cache.clone());
        log.purge(LogId::new(LeaderIdOf::<TypeConfig>::new_committed(1, 1), 5)).await.unwrap();

        let shared = ShardShared::open(store.clone(), group, cache).unwrap();
        let mut b = WriteBatch::default();
        let deleted = shared.delete_trimmed(&mut b, 8).unwrap();
        store.write(b).unwrap();
        assert_eq!(deleted, Some(keys::log_range(group, 0, 6)), "below the purge point only");
        for i in 0..10 {
            let kept = store.get(CF_LOG, &keys::log(group, i)).unwrap().is_some();
            assert_eq!(kept, i >= 6, "entry {i}");
        }
    }
}
