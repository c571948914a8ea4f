//! The metadata group's state machine: applies [`MetaCommand`]s to [`MetaState`] and
//! persists the whole (small) state with the applied log id in one write.

use super::{MetaState, META_GROUP};
use crate::raft::{
    decode, encode, Command, LogId, Reply, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::storage::{keys, Store, CF_SM_META};
use futures::TryStreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

const SNAPSHOT: &[u8] = b"snapshot";

#[derive(Clone, Default, Serialize, Deserialize)]
struct Persisted {
    applied: Option<LogId>,
    membership: StoredMembership,
    state: MetaState,
}

/// Every node's view of the metadata: read by routing, watched by the reconciler.
#[derive(Clone)]
pub struct MetaView {
    state: Arc<RwLock<MetaState>>,
    changed: watch::Receiver<u64>,
}

impl MetaView {
    pub fn read<T>(&self, f: impl FnOnce(&MetaState) -> T) -> T {
        f(&self.state.read().expect("meta lock"))
    }
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }
}

#[derive(Clone)]
pub struct MetaStateMachine {
    store: Store,
    data: Arc<RwLock<Persisted>>,
    state: Arc<RwLock<MetaState>>,
    changed: Arc<watch::Sender<u64>>,
}

impl MetaStateMachine {
    pub fn open(store: Store) -> io::Result<(MetaStateMachine, MetaView)> {
        let persisted: Persisted = match store.get(CF_SM_META, &keys::meta(META_GROUP, keys::STATE))? {
            Some(b) => decode(&b)?,
            None => Persisted::default(),
        };
        let state = Arc::new(RwLock::new(persisted.state.clone()));
        let (tx, rx) = watch::channel(persisted.applied.map(|l| l.index).unwrap_or(0));
        let sm = MetaStateMachine {
            store,
            data: Arc::new(RwLock::new(persisted)),
            state: state.clone(),
            changed: Arc::new(tx),
        };
        Ok((sm, MetaView { state, changed: rx }))
    }

    fn persist(&self, p: &Persisted, snapshot: Option<&[u8]>) -> io::Result<()> {
        let mut b = WriteBatch::default();
        self.store.put(&mut b, CF_SM_META, &keys::meta(META_GROUP, keys::STATE), &encode(p)?);
        if let Some(s) = snapshot {
            self.store.put(&mut b, CF_SM_META, &keys::meta(META_GROUP, SNAPSHOT), s);
            return Ok(self.store.write_sync(b)?);
        }
        Ok(self.store.write(b)?)
    }

    fn publish(&self, p: &Persisted) {
        *self.state.write().expect("meta lock") = p.state.clone();
        self.changed.send_replace(p.applied.map(|l| l.index).unwrap_or(0));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetaStateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let p = self.data.read().expect("meta lock").clone();
        let meta = SnapshotMeta { last_log_id: p.applied, last_membership: p.membership.clone() };
        let bytes = encode(&p)?;
        self.persist(&p, Some(&encode(&(meta.clone(), bytes.clone()))?))?;
        Ok(Snapshot { meta, snapshot: std::io::Cursor::new(bytes) })
    }
}

impl RaftStateMachine<TypeConfig> for MetaStateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = MetaStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let p = self.data.read().expect("meta lock");
        Ok((p.applied, p.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut p = self.data.read().expect("meta lock").clone();
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            p.applied = Some(entry.log_id());
            let reply = match entry.payload {
                EntryPayload::Normal(Command::Meta(cmd)) => Reply::Meta(p.state.apply(cmd)),
                EntryPayload::Membership(m) => {
                    p.membership = StoredMembership::new(Some(entry.log_id), m);
                    Reply::None
                }
                _ => Reply::None,
            };
            if let Some(r) = responder {
                replies.push((r, reply));
            }
        }
        self.persist(&p, None)?;
        self.publish(&p);
        *self.data.write().expect("meta lock") = p;
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
        let bytes = snapshot.into_inner();
        let mut p: Persisted = decode(&bytes)?;
        p.applied = meta.last_log_id;
        p.membership = meta.last_membership.clone();
        self.persist(&p, Some(&encode(&(meta.clone(), bytes))?))?;
        self.publish(&p);
        *self.data.write().expect("meta lock") = p;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        match self.store.get(CF_SM_META, &keys::meta(META_GROUP, SNAPSHOT))? {
            None => Ok(None),
            Some(b) => {
                let (meta, bytes): (SnapshotMeta, Vec<u8>) = decode(&b)?;
                Ok(Some(Snapshot { meta, snapshot: std::io::Cursor::new(bytes) }))
            }
        }
    }
}
