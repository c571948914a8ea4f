//! A broker node: the node's RocksDB, the metadata group, and every shard replica placed
//! on it. Routes writes and reads to shard leaders on this or another node.

pub mod hibernate;
mod membership;
mod on_demand;
mod write;

use crate::error::{Error, Result};
use crate::meta::{MetaCommand, MetaReply, MetaStateMachine, MetaView, META_GROUP};
use crate::pb;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, PeerPool};
use crate::raft::{decode, encode, Command, GroupId, NodeId, RaftTiming, RecordInput, Reply, TypeConfig};
use crate::sequence::SequenceBase;
use crate::shard::{ShardReplica, ShardSpec};
use crate::storage::Store;
use openraft::async_runtime::WatchReceiver;
use openraft::BasicNode;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub type MetaRaft = openraft::Raft<TypeConfig, MetaStateMachine>;

/// Hops a forwarded request may take before we give up (stale leader hints).
pub const MAX_HOPS: u32 = 3;
/// How long a write waits for a shard to elect a leader before answering Unavailable.
const LEADER_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Address other nodes and clients use to reach this node (host:port).
    pub advertise: String,
    pub data_dir: PathBuf,
    /// Every node of the cluster, this one included.
    pub peers: BTreeMap<NodeId, String>,
    pub timing: RaftTiming,
    /// How often leaders look for records past their stream's retention.
    pub retention_check: Duration,
    /// Length of one retention "hour" in milliseconds (tests shorten it).
    pub retention_hour_ms: i64,
    /// How long a busy node's group commit waits for more appends before it syncs.
    pub sync_linger: Duration,
    /// How long a busy shard leader may hold a piece of a multi-shard request for company.
    pub write_linger: Duration,
    /// How long a shard of an ON_DEMAND stream stays hot before it is split.
    pub on_demand_split_after: Duration,
    /// Whether Raft frames travel over one `RaftStream` per peer (offered and used). Off,
    /// the node behaves as nodes did before it: a `RaftBatch` call per batch.
    pub peer_streams: bool,
}

/// One shard's share of a write, as it travels between nodes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShardPiece {
    pub group: GroupId,
    pub replicas: Vec<NodeId>,
    pub records: Vec<RecordInput>,
}

pub struct Node {
    pub id: NodeId,
    pub config: NodeConfig,
    pub store: Store,
    pub pool: PeerPool,
    pub meta: MetaRaft,
    pub meta_view: MetaView,
    shards: RwLock<HashMap<GroupId, Arc<ShardReplica>>>,
    /// Groups whose first-leader announcement is under way.
    announcing: Mutex<HashSet<GroupId>>,
    /// Groups whose membership this node (their leader) is moving to the placement.
    moving: Mutex<HashSet<GroupId>>,
    /// Groups this node (their leader) is closing for a reshard.
    closing: Mutex<HashSet<GroupId>>,
    /// Replicas that could not start (for example a checksum mismatch in their log):
    /// they stay down, are reported by cluster status, and never lead.
    failed: Mutex<HashMap<GroupId, String>>,
    reconcile_lock: tokio::sync::Mutex<()>,
}

/// Where a request for a shard should be served.
pub enum Target {
    Local(Arc<ShardReplica>),
    Remote(String),
}

impl Node {
    pub async fn start(config: NodeConfig) -> anyhow::Result<Arc<Node>> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Store::open_with(&config.data_dir.join("rocksdb"), config.sync_linger)?;
        let pool = PeerPool::new(config.peer_streams);
        let (sm, meta_view) = MetaStateMachine::open(store.clone())?;
        let meta = MetaRaft::new(
            config.id,
            config.timing.config("meta", 1_000)?,
            NetworkFactory { group: META_GROUP, pool: pool.clone(), records: None },
            LogStore::new(store.clone(), META_GROUP, false, Default::default()),
            sm,
        )
        .await?;
        let node = Arc::new(Node {
            id: config.id,
            config,
            store,
            pool,
            meta,
            meta_view,
            shards: RwLock::new(HashMap::new()),
            announcing: Mutex::new(HashSet::new()),
            moving: Mutex::new(HashSet::new()),
            closing: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashMap::new()),
            reconcile_lock: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(node.clone().bootstrap());
        tokio::spawn(node.clone().join_loop());
        tokio::spawn(node.clone().reconcile_loop());
        tokio::spawn(node.clone().retention_loop());
        tokio::spawn(node.clone().hibernate_loop());
        tokio::spawn(node.clone().liveness_loop());
        tokio::spawn(node.clone().on_demand_loop());
        Ok(node)
    }

    /// The lowest-numbered node forms a new cluster; everyone else waits to be contacted.
    async fn bootstrap(self: Arc<Self>) {
        let first = *self.config.peers.keys().next().expect("peers include this node");
        if first != self.id {
            return;
        }
        if !self.meta.is_initialized().await.unwrap_or(true) {
            let members: BTreeMap<NodeId, BasicNode> =
                self.config.peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
            match self.meta.initialize(members).await {
                Ok(()) => {
                    tracing::info!("formed a new cluster of {} nodes", self.config.peers.len())
                }
                Err(e) => tracing::info!("cluster already formed: {e}"),
            }
        }
        while self.meta_view.read(|m| m.secret.is_empty()) {
            let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
            if let Err(e) = self.meta_write(MetaCommand::Init { secret }).await {
                tracing::debug!("waiting to initialise cluster metadata: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Proposes a metadata command through the metadata leader, wherever it is.
    pub async fn meta_write(&self, cmd: MetaCommand) -> Result<MetaReply> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let leader = match self.meta.client_write(Command::Meta(cmd.clone())).await {
                Ok(resp) => match resp.data {
                    Reply::Meta(r) => return r,
                    other => return Err(Error::internal(format!("unexpected metadata reply {other:?}"))),
                },
                Err(e) => e.forward_to_leader().and_then(|f| f.leader_id),
            };
            if let Some(addr) = leader.filter(|l| *l != self.id).and_then(|l| self.addr_of(l)) {
                let body = encode(&cmd).map_err(|e| Error::internal(e.to_string()))?;
                let req = pb::PeerWrite { group_id: META_GROUP, body, hops: 1, spread: 1 };
                if let Ok(reply) = self.pool.peer(&addr).meta_write(req).await {
                    let r: Option<Result<MetaReply>> =
                        decode::<Result<MetaReply>>(&reply.into_inner().body).ok();
                    if let Some(r) = r {
                        return r;
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::unavailable(
                    "the metadata group has no leader; is a majority of nodes up?",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Serves a forwarded metadata write: only proposes locally, never forwards again.
    pub async fn meta_write_local(&self, cmd: MetaCommand) -> Option<Result<MetaReply>> {
        match self.meta.client_write(Command::Meta(cmd)).await {
            Ok(resp) => match resp.data {
                Reply::Meta(r) => Some(r),
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// Waits until this node's metadata includes every change committed before the call
    /// (a read index from the metadata leader), so "not found" is never a stale answer.
    pub async fn meta_barrier(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let index = loop {
            let leader = match self.meta.ensure_linearizable(openraft::ReadPolicy::ReadIndex).await {
                Ok(read) => break read.log_id().index,
                Err(e) => e.forward_to_leader().and_then(|f| f.leader_id),
            };
            if let Some(addr) = leader.filter(|l| *l != self.id).and_then(|l| self.addr_of(l)) {
                if let Ok(reply) = self.pool.peer(&addr).meta_read_index(pb::ClusterStatusRequest {}).await {
                    if let Ok(index) = decode::<u64>(&reply.into_inner().body) {
                        break index;
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::unavailable(
                    "the metadata group has no leader; is a majority of nodes up?",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut applied = self.meta_view.changes();
        while *applied.borrow_and_update() < index {
            if tokio::time::timeout_at(deadline, applied.changed()).await.is_err() {
                return Err(Error::unavailable("this node's metadata is lagging; retry"));
            }
        }
        Ok(())
    }

    pub fn shard(&self, group: GroupId) -> Option<Arc<ShardReplica>> {
        self.shards.read().expect("shards lock").get(&group).cloned()
    }

    pub fn local_shards(&self) -> Vec<Arc<ShardReplica>> {
        self.shards.read().expect("shards lock").values().cloned().collect()
    }

    async fn reconcile_loop(self: Arc<Self>) {
        let mut changes = self.meta_view.changes();
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!("reconciling shard replicas: {e:#}");
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Starts a replica for every shard placed here and removes those of deleted streams.
    async fn reconcile(self: &Arc<Self>) -> anyhow::Result<()> {
        let _guard = self.reconcile_lock.lock().await;
        let (desired, known_below) = self.meta_view.read(|m| {
            let desired: Vec<_> = m
                .shards_on(self.id)
                .map(|(s, sh)| {
                    // A reshard's parent closes once all its children have a leader.
                    let children: Vec<&crate::meta::ShardMeta> = s.children_of(sh.index).collect();
                    let close_due = sh.ending_sequence_number.is_none()
                        && !children.is_empty()
                        && children.iter().all(|c| c.ready);
                    (
                        sh.group_id,
                        s.name.clone(),
                        sh.index,
                        s.limits,
                        sh.replicas.clone(),
                        sh.ready,
                        sh.retiring.clone(),
                        close_due.then_some(sh.sequence_base()),
                    )
                })
                .collect();
            (desired, m.next_group_id)
        });
        let wanted: HashSet<GroupId> = desired.iter().map(|d| d.0).collect();
        for (group, stream, index, limits, replicas, ready, retiring, close_due) in desired {
            let replica = match self.shard(group) {
                Some(r) => {
                    r.limits.send_if_modified(|l| std::mem::replace(l, limits) != limits);
                    r
                }
                None => {
                    let spec = ShardSpec { group, stream, shard_index: index, limits };
                    let started = ShardReplica::start(
                        self.id,
                        self.store.clone(),
                        self.pool.clone(),
                        self.config.timing,
                        spec,
                        self.config.write_linger,
                    )
                    .await;
                    match started {
                        Ok(r) => {
                            let r = Arc::new(r);
                            self.failed.lock().expect("lock").remove(&group);
                            self.shards.write().expect("shards lock").insert(group, r.clone());
                            tokio::spawn(self.clone().wake_group(group, replicas.clone()));
                            r
                        }
                        Err(e) => {
                            let reason = format!("{e:#}");
                            if self.failed.lock().expect("lock").insert(group, reason.clone()).is_none() {
                                tracing::error!(group, "shard replica cannot start and stays down: {reason}");
                            }
                            continue;
                        }
                    }
                }
            };
            if !ready
                && replicas.first() == Some(&self.id)
                && self.announcing.lock().expect("lock").insert(group)
            {
                tokio::spawn(self.clone().announce_ready(replica, replicas));
            } else if let Some(base) = close_due.filter(|_| replica.raft.is_leader()) {
                if self.closing.lock().expect("lock").insert(group) {
                    tokio::spawn(self.clone().close_for_reshard(replica, base));
                }
            } else if ready && replica.raft.is_leader() {
                let voters: HashSet<NodeId> =
                    replica.raft.metrics().borrow_watched().membership_config.voter_ids().collect();
                let target: HashSet<NodeId> = replicas.iter().copied().collect();
                if (voters != target || !retiring.is_empty())
                    && self.moving.lock().expect("lock").insert(group)
                {
                    tokio::spawn(self.clone().move_membership(replica, replicas, retiring));
                }
            }
        }
        // Replicas of deleted streams, or retired by a drain: stop them, reclaim storage.
        let gone: Vec<Arc<ShardReplica>> = {
            let mut shards = self.shards.write().expect("shards lock");
            let ids: Vec<GroupId> = shards.keys().copied().filter(|g| !wanted.contains(g)).collect();
            ids.into_iter().filter_map(|g| shards.remove(&g)).collect()
        };
        for r in gone {
            tracing::info!(
                group = r.group,
                "shard replica {} is no longer placed here: removing it",
                r.shard_index
            );
            r.hibernation.clear();
            let _ = r.raft.shutdown().await;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for g in store.groups_on_disk()? {
                if g != META_GROUP && g < known_below && !wanted.contains(&g) {
                    store.destroy_group(g)?;
                }
            }
            Ok(())
        })
        .await??;
        Ok(())
    }

    /// Closes a reshard's parent (its leader does): a `Close` entry in its group, then the
    /// metadata learns the ending sequence number and opens the children.
    async fn close_for_reshard(self: Arc<Self>, replica: Arc<ShardReplica>, base: SequenceBase) {
        let group = replica.group;
        match crate::shard::writer::close(&replica.raft, &replica.hibernation).await {
            Ok(at) => {
                let ending = base.at(at, 0).to_string();
                tracing::info!(group, "shard {} closed for a reshard at entry {at}", replica.shard_index);
                let deadline = tokio::time::Instant::now() + LEADER_WAIT;
                let cmd = MetaCommand::ShardClosed {
                    group_id: group,
                    ending_sequence_number: ending,
                    closed_ms: crate::now_ms(),
                };
                while let Err(e) = self.meta_write(cmd.clone()).await {
                    if tokio::time::Instant::now() > deadline {
                        tracing::warn!(group, "reporting the closed shard: {e}; will retry");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(e) => tracing::debug!(group, "closing for a reshard: {e:?}"),
        }
        self.closing.lock().expect("lock").remove(&group);
    }

    /// The bootstrapping replica forms the shard's group and reports its first leader.
    async fn announce_ready(self: Arc<Self>, replica: Arc<ShardReplica>, replicas: Vec<NodeId>) {
        let group = replica.group;
        if !replica.raft.is_initialized().await.unwrap_or(true) {
            let members: BTreeMap<NodeId, BasicNode> = replicas
                .iter()
                .filter_map(|id| self.addr_of(*id).map(|a| (*id, BasicNode::new(a))))
                .collect();
            if let Err(e) = replica.raft.initialize(members).await {
                tracing::debug!(group, "shard group already formed: {e}");
            }
        }
        let _ = replica
            .raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(|m| m.current_leader.is_some(), "first leader")
            .await;
        while let Err(e) = self.meta_write(MetaCommand::ShardReady { group_id: group }).await {
            tracing::debug!(group, "announcing shard leader: {e}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.announcing.lock().expect("lock").remove(&group);
    }

    /// Where to serve a read for `group`: the local replica when it leads and has applied
    /// everything committed, else the leader's node. Waits briefly for an election.
    pub async fn leader_target(&self, group: GroupId, replicas: &[NodeId]) -> Result<Target> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let leader = match self.shard(group) {
                Some(local) if local.raft.is_leader() => {
                    // A new leader may not have applied its predecessor's last entries yet:
                    // wait until it has (lease read, else read index) so reads see every ack.
                    let lease = local.raft.ensure_linearizable(self.config.timing.shard_read_lease()).await;
                    if lease.is_ok()
                        || local.raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex).await.is_ok()
                    {
                        return Ok(Target::Local(local));
                    }
                    local.raft.metrics().borrow_watched().current_leader
                }
                Some(local) => local.raft.metrics().borrow_watched().current_leader,
                None => {
                    // No replica here: any replica node will know the leader. (When this
                    // node is the only one placed, its replica is still starting: wait.)
                    let pick = replicas.iter().find(|r| **r != self.id).and_then(|r| self.addr_of(*r));
                    if let Some(addr) = pick {
                        return Ok(Target::Remote(addr));
                    }
                    None
                }
            };
            if let Some(addr) = leader.filter(|l| *l != self.id).and_then(|l| self.addr_of(l)) {
                return Ok(Target::Remote(addr));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::unavailable(format!(
                    "shard group {group} (replicas on nodes {replicas:?}) has no leader reachable from node {}; is a majority of its replicas up? Retry shortly",
                    self.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Retention: each shard leader proposes a trim of entries older than the stream's
    /// retention, then a snapshot so Raft can let go of them too; the metadata leader
    /// removes closed shards once their retention has passed since they closed.
    async fn retention_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.retention_check).await;
            if self.meta.is_leader() {
                let now = crate::now_ms();
                let hour = self.config.retention_hour_ms;
                for (stream, indexes) in self.meta_view.read(|m| m.expired_shards(now, hour)) {
                    tracing::info!(stream, ?indexes, "retention: removing closed shards past retention");
                    if let Err(e) = self.meta_write(MetaCommand::ExpireShards { stream, indexes }).await {
                        tracing::warn!("retention: removing closed shards: {e}");
                    }
                }
            }
            for replica in self.local_shards() {
                if !replica.raft.is_leader() {
                    continue;
                }
                let Some(hours) =
                    self.meta_view.read(|m| m.streams.get(&replica.stream).map(|s| s.retention_hours))
                else {
                    continue;
                };
                let cutoff = crate::now_ms() - i64::from(hours) * self.config.retention_hour_ms;
                // Only records expire: a shard without any older than the cutoff is left
                // alone (and, if it sleeps, asleep).
                match replica.shared.oldest_arrival_ms() {
                    Ok(Some(oldest)) if oldest < cutoff => {}
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(group = replica.group, "retention: {e}");
                        continue;
                    }
                }
                let state = replica.shared.state();
                let below = match replica.shared.at_timestamp(cutoff) {
                    Ok(p) => p.log_index,
                    Err(e) => {
                        tracing::warn!(group = replica.group, "retention: {e}");
                        continue;
                    }
                };
                if below > state.first_index {
                    tracing::info!(group = replica.group, "retention: trimming entries below {below}");
                    crate::shard::wake_to_write(&replica.raft, &replica.hibernation).await;
                    // Every replica then forgets the trimmed entries (`shard/forget.rs`).
                    let _ = replica.raft.client_write(Command::Trim { below_index: below }).await;
                }
            }
        }
    }

    /// This node's view of every group it holds a replica of.
    pub fn local_status(&self) -> Vec<pb::GroupStatus> {
        let mut out = Vec::new();
        let mut push = |group: GroupId,
                        stream: String,
                        shard_id: String,
                        m: openraft::RaftMetrics<TypeConfig>,
                        rate: crate::shard::load::Rate,
                        hibernating: bool| {
            out.push(pb::GroupStatus {
                stream_name: stream,
                shard_id,
                group_id: group,
                leader: m.current_leader,
                replicas: vec![pb::ReplicaStatus {
                    node: self.id,
                    state: format!("{:?}", m.state),
                    applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
                    committed_index: m.local_committed.map(|l| l.index).unwrap_or(0),
                    last_log_index: m.last_log_index.unwrap_or(0),
                    term: m.current_term,
                    write_bytes_per_second: rate.bytes_per_second,
                    write_records_per_second: rate.records_per_second,
                    hibernating,
                }],
            });
        };
        let meta = self.meta.metrics().borrow_watched().clone();
        push(META_GROUP, String::new(), String::new(), meta, Default::default(), false);
        let now = std::time::Instant::now();
        for r in self.local_shards() {
            let m = r.raft.metrics().borrow_watched().clone();
            let rate = if r.raft.is_leader() { r.load.rate(now) } else { Default::default() };
            let asleep = r.hibernation.is_asleep();
            push(r.group, r.stream.clone(), crate::meta::shard_id(r.shard_index), m, rate, asleep);
        }
        let failed = self.failed.lock().expect("lock").clone();
        for (group, reason) in failed {
            let (stream, shard_id) = self
                .meta_view
                .read(|m| m.shard_by_group(group).map(|(s, sh)| (s.name.clone(), sh.shard_id())))
                .unwrap_or_default();
            out.push(pb::GroupStatus {
                stream_name: stream,
                shard_id,
                group_id: group,
                leader: None,
                replicas: vec![pb::ReplicaStatus {
                    node: self.id,
                    state: format!("Failed: {reason}"),
                    ..Default::default()
                }],
            });
        }
        out
    }

    pub async fn shutdown(&self) {
        for r in self.local_shards() {
            let _ = r.raft.shutdown().await;
        }
        let _ = self.meta.shutdown().await;
        let _ = self.store.db().flush_wal(true);
    }
}
