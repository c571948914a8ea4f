//! Which shard groups sleep, and waking those whose leader's node is gone. Why groups
//! sleep at all: `shard/hibernation.rs`.

use super::Node;
use crate::raft::{GroupId, NodeId};
use crate::shard::hibernation::IDLE;
use crate::shard::ShardReplica;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a leader looks for groups that have gone idle.
const SLEEP_CHECK: Duration = Duration::from_millis(500);
/// How often followers of sleeping groups check that their leaders' nodes answer.
const PING_EVERY: Duration = Duration::from_millis(200);

/// Where a leader's group stands if it may sleep: its term, last log index and followers.
/// Only a plain group (no learners, no joint membership) whose followers hold, and every
/// replica has applied, the whole log: a sleeping follower must serve subscribers up to the
/// leader's last entry.
fn leader_may_sleep(replica: &ShardReplica) -> Option<(u64, u64, Vec<NodeId>)> {
    let m = replica.raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return None;
    }
    let last = m.last_log_index?;
    if m.last_applied?.index != last || m.local_committed?.index != last {
        return None;
    }
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() != 1 || membership.learner_ids().next().is_some() {
        return None;
    }
    let replication = m.replication.as_ref()?;
    let followers: Vec<NodeId> = membership.voter_ids().filter(|v| *v != m.id).collect();
    let caught_up =
        followers.iter().all(|f| replication.get(f).and_then(|l| l.as_ref()).map(|l| l.index) == Some(last));
    caught_up.then_some((m.current_term, last, followers))
}

/// A follower's answer to its leader's request to sleep: yes if it follows that leader in
/// that term with the same log, all of it committed and applied here.
pub fn follower_sleeps(replica: &ShardReplica, leader: NodeId, term: u64, last: u64) -> bool {
    let seen = replica.hibernation.appends();
    let m = replica.raft.metrics().borrow_watched().clone();
    let in_step = m.state == ServerState::Follower
        && m.current_leader == Some(leader)
        && m.current_term == term
        && m.last_log_index == Some(last)
        && m.local_committed.map(|l| l.index) == Some(last)
        && m.last_applied.map(|l| l.index) == Some(last);
    in_step && replica.hibernation.sleep_unless_appended(seen)
}

impl Node {
    /// Puts every group this node leads to sleep once it has been idle for `IDLE`: first
    /// its followers, then, if all agreed, the leader.
    pub(super) async fn hibernate_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SLEEP_CHECK).await;
            let busy = |g: GroupId| {
                self.moving.lock().expect("lock").contains(&g)
                    || self.closing.lock().expect("lock").contains(&g)
                    || self.announcing.lock().expect("lock").contains(&g)
            };
            let attempts = self.local_shards().into_iter().filter_map(|replica| {
                let h = &replica.hibernation;
                if h.is_asleep() || h.idle_for() < IDLE || busy(replica.group) {
                    return None;
                }
                let seen = h.appends();
                let (term, last, followers) = leader_may_sleep(&replica)?;
                let addrs: Vec<String> = followers.iter().filter_map(|f| self.addr_of(*f)).collect();
                (addrs.len() == followers.len()).then(|| {
                    let node = self.clone();
                    async move {
                        let asks = addrs
                            .iter()
                            .map(|a| node.pool.ask_to_hibernate(a, replica.group, (node.id, term, last)));
                        if futures::future::join_all(asks).await.into_iter().all(|yes| yes) {
                            replica.hibernation.sleep_unless_appended(seen);
                        }
                    }
                })
            });
            futures::future::join_all(attempts.collect::<Vec<_>>()).await;
        }
    }

    /// A replica that (re)starts asks the group's other replicas to wake: a sleeping leader
    /// sends no heartbeats, and a replica that hears none before its election timeout
    /// would call an election, taking leadership from a healthy node at every restart.
    pub(super) async fn wake_group(self: Arc<Self>, group: GroupId, replicas: Vec<NodeId>) {
        let asks = replicas.iter().filter(|n| **n != self.id).filter_map(|n| self.addr_of(*n)).map(|addr| {
            let pool = self.pool.clone();
            async move { pool.ask_to_wake(&addr, group).await }
        });
        futures::future::join_all(asks).await;
    }

    /// Wakes the sleeping followers of a leader whose node has not answered for an
    /// election timeout, so that they elect a successor as they would have without
    /// hibernation. A sleeping follower that knows no leader wakes at once.
    pub(super) async fn liveness_loop(self: Arc<Self>) {
        let dead_after = Duration::from_millis(self.config.timing.election_min_ms);
        let mut last_answer: HashMap<NodeId, Instant> = HashMap::new();
        loop {
            tokio::time::sleep(PING_EVERY).await;
            let mut by_leader: HashMap<NodeId, Vec<Arc<ShardReplica>>> = HashMap::new();
            for r in self.local_shards().into_iter().filter(|r| r.hibernation.is_asleep()) {
                let m = r.raft.metrics().borrow_watched().clone();
                match m.current_leader {
                    Some(leader) if leader == self.id => {}
                    Some(leader) => by_leader.entry(leader).or_default().push(r),
                    None => {
                        r.hibernation.wake();
                    }
                }
            }
            last_answer.retain(|n, _| by_leader.contains_key(n));
            for (leader, replicas) in by_leader {
                let since = *last_answer.entry(leader).or_insert_with(Instant::now);
                let answers = match self.addr_of(leader) {
                    Some(addr) => self.pool.ping(&addr, PING_EVERY).await,
                    None => false,
                };
                if answers {
                    last_answer.insert(leader, Instant::now());
                } else if since.elapsed() >= dead_after {
                    tracing::warn!(
                        leader,
                        groups = replicas.len(),
                        "node {leader} has not answered for {:?}: waking the sleeping groups it led",
                        since.elapsed()
                    );
                    for r in replicas {
                        r.hibernation.wake();
                    }
                    last_answer.remove(&leader);
                }
            }
        }
    }
}
