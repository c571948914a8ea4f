//! Cluster membership: who the nodes are (the metadata group's membership), joining a
//! running cluster, moving a group's replicas to its placement (drains), removing a node,
//! readiness, and handing leadership away before a node stops.

use super::Node;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::MetaCommand;
use crate::pb;
use crate::raft::{NodeId, TypeConfig};
use crate::shard::ShardReplica;
use anyhow::Context as _;
use openraft::async_runtime::WatchReceiver;
use openraft::BasicNode;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Every node of the cluster and its address: the metadata group's membership (which
    /// grows as nodes join and shrinks as they are removed), this node included.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let m = self.meta.metrics().borrow_watched().clone();
        let mut out: BTreeMap<NodeId, String> =
            m.membership_config.nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
        if out.is_empty() {
            // Not part of a formed cluster yet: the configured peers are all we know.
            out = self.config.peers.clone();
        }
        out.entry(self.id).or_insert_with(|| self.config.advertise.clone());
        out
    }

    /// The metadata group's voters: the nodes new shard replicas are placed on.
    pub fn voters(&self) -> Vec<NodeId> {
        let m = self.meta.metrics().borrow_watched().clone();
        let voters: Vec<NodeId> = m.membership_config.voter_ids().collect();
        if voters.is_empty() {
            self.config.peers.keys().copied().collect()
        } else {
            voters
        }
    }

    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        if let Some(addr) = self.config.peers.get(&node) {
            return Some(addr.clone());
        }
        let m = self.meta.metrics().borrow_watched().clone();
        let addr = m.membership_config.nodes().find(|(id, _)| **id == node).map(|(_, n)| n.addr.clone());
        addr
    }

    /// Adds node `id` at `addr` to the metadata group: first as a learner that catches up,
    /// then as a voter. Forwarded to the metadata leader from any node; idempotent.
    pub async fn join(&self, id: NodeId, addr: String) -> Result<()> {
        let m = self.meta.metrics().borrow_watched().clone();
        if m.membership_config.voter_ids().any(|v| v == id) {
            return Ok(());
        }
        match m.current_leader {
            Some(leader) if leader == self.id => {
                let unavailable = |e: String| Error::new(ErrorKind::Unavailable, e);
                self.meta
                    .add_learner(id, BasicNode::new(&addr), true)
                    .await
                    .map_err(|e| unavailable(format!("adding node {id} as a learner: {e}")))?;
                let add = openraft::ChangeMembers::AddVoterIds(std::collections::BTreeSet::from([id]));
                self.meta
                    .change_membership(add, false)
                    .await
                    .map_err(|e| unavailable(format!("making node {id} a voter: {e}")))?;
                tracing::info!("node {id} ({addr}) joined the cluster");
                Ok(())
            }
            Some(leader) => {
                let leader_addr = self.addr_of(leader).ok_or_else(|| {
                    Error::new(ErrorKind::Unavailable, format!("no address for metadata leader {leader}"))
                })?;
                let mut peer = self.pool.peer(&leader_addr);
                peer.join(pb::JoinRequest { node_id: id, address: addr })
                    .await
                    .map_err(|s| Error::new(ErrorKind::Unavailable, s.message().to_string()))?;
                Ok(())
            }
            None => Err(Error::new(ErrorKind::Unavailable, "the metadata group has no leader yet")),
        }
    }

    /// Takes `id` out of the metadata group (on its leader, wherever it is). Idempotent.
    pub async fn remove_node(&self, id: NodeId) -> Result<()> {
        let m = self.meta.metrics().borrow_watched().clone();
        if !m.membership_config.voter_ids().any(|v| v == id) {
            return Ok(());
        }
        match m.current_leader {
            Some(leader) if leader == self.id => {
                let remove = openraft::ChangeMembers::RemoveVoters(std::collections::BTreeSet::from([id]));
                self.meta
                    .change_membership(remove, false)
                    .await
                    .map_err(|e| Error::new(ErrorKind::Unavailable, format!("removing node {id}: {e}")))?;
                tracing::info!("node {id} left the cluster");
                Ok(())
            }
            Some(leader) => {
                let addr =
                    self.addr_of(leader).ok_or_else(|| Error::unavailable("metadata leader unknown"))?;
                let mut client = crate::client::Client::new(&format!("http://{addr}"))
                    .map_err(|e| Error::unavailable(e.to_string()))?;
                client
                    .api
                    .remove_node(pb::RemoveNodeRequest { node_id: id })
                    .await
                    .map_err(|s| Error::new(ErrorKind::Unavailable, s.message().to_string()))?;
                Ok(())
            }
            None => Err(Error::unavailable("the metadata group has no leader yet")),
        }
    }

    /// A node started with peers that already form a cluster without it asks to join,
    /// until it is a voter of the metadata group.
    pub(super) async fn join_loop(self: Arc<Self>) {
        let first = *self.config.peers.keys().next().expect("peers include this node");
        if first == self.id {
            return; // the bootstrap node forms the cluster instead
        }
        let others: Vec<String> =
            self.config.peers.iter().filter(|(id, _)| **id != self.id).map(|(_, a)| a.clone()).collect();
        let mut attempt = 0usize;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let m = self.meta.metrics().borrow_watched().clone();
            if m.membership_config.voter_ids().any(|v| v == self.id) {
                return;
            }
            // Initialised (by the bootstrap node or an earlier join) yet not a voter, or not
            // contacted at all: ask a peer, one after the other.
            let target = &others[attempt % others.len().max(1)];
            attempt += 1;
            let mut peer = self.pool.peer(target);
            let req = pb::JoinRequest { node_id: self.id, address: self.config.advertise.clone() };
            match peer.join(req).await {
                Ok(_) => tracing::info!("asked {target} to add this node to the cluster"),
                Err(e) => tracing::debug!("join through {target}: {}", e.message()),
            }
        }
    }

    /// As a group's leader, moves its membership to the placement: new replicas join as
    /// learners and catch up, then one joint change swaps the voters, then the replaced
    /// replicas are reported retired (and their nodes drop them).
    pub(super) async fn move_membership(
        self: Arc<Self>,
        replica: Arc<ShardReplica>,
        target: Vec<NodeId>,
        retiring: Vec<NodeId>,
    ) {
        let group = replica.group;
        let result: anyhow::Result<()> = async {
            let voters: HashSet<NodeId> =
                replica.raft.metrics().borrow_watched().membership_config.voter_ids().collect();
            let wanted: std::collections::BTreeSet<NodeId> = target.iter().copied().collect();
            if voters != wanted.iter().copied().collect::<HashSet<_>>() {
                crate::shard::wake_to_write(&replica.raft, &replica.hibernation).await;
                for n in wanted.iter().filter(|n| !voters.contains(n)) {
                    let addr = self.addr_of(*n).with_context(|| format!("no address for node {n}"))?;
                    let added = replica.raft.add_learner(*n, BasicNode::new(&addr), true);
                    tokio::time::timeout(Duration::from_secs(120), added)
                        .await
                        .context("the new replica did not catch up within 120 s")??;
                }
                let swap = openraft::ChangeMembers::ReplaceAllVoters(wanted.clone());
                crate::shard::wake_to_write(&replica.raft, &replica.hibernation).await;
                replica.raft.change_membership(swap, false).await?;
                tracing::info!(group, "shard replicas moved to {wanted:?}");
            }
            for n in retiring {
                self.meta_write(MetaCommand::ReplicaRetired { group_id: group, node: n }).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(group, "moving shard replicas: {e:#}");
        }
        self.moving.lock().expect("lock").remove(&group);
    }

    /// Joined and serving: a voter of the metadata group that knows its leader and has
    /// applied the cluster's metadata.
    pub fn is_ready(&self) -> bool {
        let m = self.meta.metrics().borrow_watched().clone();
        m.current_leader.is_some()
            && m.membership_config.voter_ids().any(|id| id == self.id)
            && self.meta_view.read(|m| !m.secret.is_empty())
    }

    /// Asks every group this node leads to hand leadership to its most caught-up voter, then
    /// waits (at most `within`) until none is led here. Returns how many groups moved.
    pub async fn hand_off_leadership(&self, within: Duration) -> usize {
        let shards = self.local_shards();
        let mut asked = usize::from(hand_off(&self.meta, self.id).await);
        for r in &shards {
            r.hibernation.wake();
            asked += usize::from(hand_off(&r.raft, self.id).await);
        }
        if asked == 0 {
            return 0;
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.groups_led() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        asked.saturating_sub(self.groups_led())
    }

    /// How many groups (the metadata group included) this node leads now.
    pub fn groups_led(&self) -> usize {
        usize::from(leads(&self.meta, self.id))
            + self.local_shards().iter().filter(|r| leads(&r.raft, self.id)).count()
    }
}

fn leads<SM: openraft::storage::RaftStateMachine<TypeConfig>>(
    raft: &openraft::Raft<TypeConfig, SM>,
    me: NodeId,
) -> bool {
    raft.metrics().borrow_watched().current_leader == Some(me)
}

/// Triggers a leadership transfer to the voter whose log matches the leader's furthest.
/// Returns false when this node does not lead the group or has no other voter.
async fn hand_off<SM: openraft::storage::RaftStateMachine<TypeConfig>>(
    raft: &openraft::Raft<TypeConfig, SM>,
    me: NodeId,
) -> bool {
    let m = raft.metrics().borrow_watched().clone();
    if m.current_leader != Some(me) {
        return false;
    }
    let voters: HashSet<NodeId> = m.membership_config.voter_ids().collect();
    let target = m
        .replication
        .iter()
        .flatten()
        .filter(|(id, _)| **id != me && voters.contains(id))
        .max_by_key(|(_, matched)| matched.as_ref().map(|l| l.index))
        .map(|(id, _)| *id);
    match target {
        Some(to) => raft.trigger().transfer_leader(to).await.is_ok(),
        None => false,
    }
}
