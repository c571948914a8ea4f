//! One shard replica: its Raft group (log in the node's RocksDB, state machine, network),
//! the leader-side writer, and the record reader.

pub mod forget;
pub mod hibernation;
pub mod load;
pub mod reader;
pub mod state_machine;
pub mod writer;

use crate::limits::ShardLimits;
use crate::raft::log_cache::LogCache;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerPool};
use crate::raft::{GroupId, RaftTiming, TypeConfig};
use crate::storage::Store;
use state_machine::{ShardShared, ShardStateMachine};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

pub type ShardRaft = openraft::Raft<TypeConfig, ShardStateMachine>;

/// Entries between snapshots. Snapshots only let Raft forget entries; the records stay.
const SNAPSHOT_EVERY: u64 = 20_000;

/// Which shard a replica serves, from the metadata.
pub struct ShardSpec {
    pub group: GroupId,
    pub stream: String,
    pub shard_index: u32,
    pub limits: ShardLimits,
}

pub struct ShardReplica {
    pub group: GroupId,
    pub stream: String,
    pub shard_index: u32,
    pub raft: ShardRaft,
    pub shared: Arc<ShardShared>,
    pub writer: mpsc::Sender<writer::WriteRequest>,
    pub limits: watch::Sender<ShardLimits>,
    /// What this replica wrote while leading.
    pub load: Arc<load::Load>,
    pub hibernation: Arc<hibernation::Hibernation>,
}

impl ShardReplica {
    pub async fn start(
        node_id: u64,
        store: Store,
        pool: PeerPool,
        timing: RaftTiming,
        spec: ShardSpec,
        write_linger: std::time::Duration,
    ) -> anyhow::Result<ShardReplica> {
        let ShardSpec { group, stream, shard_index, limits } = spec;
        let cache = Arc::new(LogCache::default());
        let hibernation = Arc::new(hibernation::Hibernation::new());
        let shared = ShardShared::open(store.clone(), group, cache.clone())?;
        let config = timing.config(&format!("shard-{group}"), SNAPSHOT_EVERY)?;
        let raft = ShardRaft::new(
            node_id,
            config,
            NetworkFactory { group, pool, records: Some(store.clone()) },
            LogStore::new(store, group, true, cache).with_hibernation(hibernation.clone()),
            ShardStateMachine { shared: shared.clone() },
        )
        .await?;
        let ticker = raft.clone();
        hibernation.set_ticker(move |on| ticker.runtime_config().tick(on));
        let (limits_tx, limits_rx) = watch::channel(limits);
        let load = Arc::new(load::Load::new(std::time::Instant::now()));
        let writer =
            writer::spawn(raft.clone(), hibernation.clone(), limits, limits_rx, load.clone(), write_linger);
        forget::spawn(raft.clone(), shared.trim_changes());
        Ok(ShardReplica {
            group,
            stream,
            shard_index,
            raft,
            shared,
            writer,
            limits: limits_tx,
            load,
            hibernation,
        })
    }
}

/// Call on a leader before it proposes anything. A group that slept gets its ticker back
/// and its leader's lease renewed with one heartbeat round: openraft refuses writes once
/// the lease has lapsed, and a sleeping leader sends no heartbeats to keep it.
pub async fn wake_to_write(raft: &ShardRaft, hibernation: &hibernation::Hibernation) {
    if hibernation.wake() {
        let _ = raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex).await;
    }
}
