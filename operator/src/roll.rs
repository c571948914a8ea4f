//! Rolling restarts, decided purely: which broker pod to replace next, and whether the
//! brokers can spare it now. The StatefulSet is `OnDelete`; the operator deletes one pod at
//! a time, and only when every shard it hosts keeps a caught-up quorum without it.

use freshet_broker::client::pb;

/// What the reconciler sees of one broker pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub ordinal: u32,
    /// The StatefulSet revision the pod was made from (`controller-revision-hash`).
    pub revision: String,
    pub ready: bool,
    pub deleting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Every pod runs the current revision.
    Done,
    /// A pod is missing, starting or stopping: nothing else is touched until it is back.
    Wait(String),
    /// Replace this pod (Raft node id = ordinal + 1) next.
    Replace { pod: String, node: u64 },
}

/// The next step of a roll towards `revision` over `brokers` pods; highest ordinal first,
/// as the StatefulSet controller itself would.
pub fn next_step(pods: &[PodView], brokers: u32, revision: &str) -> RollStep {
    if let Some(p) = pods.iter().find(|p| p.deleting || !p.ready) {
        return RollStep::Wait(format!("broker pod {} is not ready yet", p.name));
    }
    if (pods.len() as u32) < brokers {
        return RollStep::Wait(format!("{} of {brokers} broker pods exist", pods.len()));
    }
    match pods.iter().filter(|p| p.revision != revision).max_by_key(|p| p.ordinal) {
        None => RollStep::Done,
        Some(p) => RollStep::Replace { pod: p.name.clone(), node: u64::from(p.ordinal) + 1 },
    }
}

/// Whether node `node` can restart now: every node answers, every group it hosts has a
/// leader, and every other replica of those groups has applied the group's commits (within
/// `max_lag` entries), so a quorum stays caught up while it is gone. The operator then has
/// the broker hand its leaderships to those replicas (`led_by`) before deleting its pod.
pub fn can_restart(status: &pb::ClusterStatusResponse, node: u64, max_lag: u64) -> Result<(), String> {
    if let Some(n) = status.nodes.iter().find(|n| !n.reachable) {
        return Err(format!("broker node {} does not answer", n.id));
    }
    for g in status.groups.iter().filter(|g| g.replicas.iter().any(|r| r.node == node)) {
        let what = if g.group_id == 0 {
            "the metadata group".to_string()
        } else {
            format!("{} {}", g.stream_name, g.shard_id)
        };
        let Some(leader) = g.leader else {
            return Err(format!("{what} has no leader"));
        };
        let Some(committed) = g.replicas.iter().find(|r| r.node == leader).map(|r| r.committed_index) else {
            return Err(format!("{what}: its leader (node {leader}) does not report"));
        };
        let others: Vec<&pb::ReplicaStatus> = g.replicas.iter().filter(|r| r.node != node).collect();
        if let Some(r) = others.iter().find(|r| r.applied_index + max_lag < committed) {
            return Err(format!(
                "{what}: the replica on node {} is {} entries behind",
                r.node,
                committed - r.applied_index
            ));
        }
    }
    Ok(())
}

/// The groups `node` leads (the metadata group as "the metadata group"): a pod is
/// deleted only once it leads none, so its restart costs no shard an election.
pub fn led_by(status: &pb::ClusterStatusResponse, node: u64) -> Vec<String> {
    status
        .groups
        .iter()
        // A group with one replica has no one to hand over to: its restart waits for none.
        .filter(|g| g.leader == Some(node) && g.replicas.len() > 1)
        .map(|g| {
            if g.group_id == 0 {
                "the metadata group".to_string()
            } else {
                format!("{} {}", g.stream_name, g.shard_id)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ordinal: u32, revision: &str, ready: bool) -> PodView {
        PodView {
            name: format!("s-broker-{ordinal}"),
            ordinal,
            revision: revision.into(),
            ready,
            deleting: false,
        }
    }

    #[test]
    fn one_pod_at_a_time_highest_ordinal_first() {
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "old", true)];
        assert_eq!(next_step(&pods, 3, "new"), RollStep::Replace { pod: "s-broker-2".into(), node: 3 });
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "new", true)];
        assert_eq!(next_step(&pods, 3, "new"), RollStep::Replace { pod: "s-broker-1".into(), node: 2 });
        let pods = [pod(0, "new", true), pod(1, "new", true), pod(2, "new", true)];
        assert_eq!(next_step(&pods, 3, "new"), RollStep::Done);
    }

    #[test]
    fn a_replaced_pod_that_is_not_ready_blocks_the_next() {
        let pods = [pod(0, "old", true), pod(1, "old", true), pod(2, "new", false)];
        assert!(matches!(next_step(&pods, 3, "new"), RollStep::Wait(m) if m.contains("s-broker-2")));
        let pods = [pod(0, "old", true), pod(1, "old", true)];
        assert!(matches!(next_step(&pods, 3, "new"), RollStep::Wait(_)), "a missing pod blocks too");
        let mut deleting = pod(1, "old", true);
        deleting.deleting = true;
        assert!(matches!(next_step(&[pod(0, "old", true), deleting], 2, "new"), RollStep::Wait(_)));
    }

    fn replica(node: u64, applied: u64, committed: u64) -> pb::ReplicaStatus {
        pb::ReplicaStatus { node, applied_index: applied, committed_index: committed, ..Default::default() }
    }

    fn status(leader: Option<u64>, replicas: Vec<pb::ReplicaStatus>) -> pb::ClusterStatusResponse {
        pb::ClusterStatusResponse {
            nodes: (1..=3).map(|id| pb::NodeStatus { id, address: String::new(), reachable: true }).collect(),
            groups: vec![pb::GroupStatus {
                stream_name: "s".into(),
                shard_id: "shardId-000000000000".into(),
                group_id: 7,
                leader,
                replicas,
            }],
        }
    }

    #[test]
    fn a_node_restarts_only_when_the_others_are_caught_up() {
        let caught_up = status(Some(1), vec![replica(1, 100, 100), replica(2, 99, 99), replica(3, 100, 100)]);
        assert_eq!(can_restart(&caught_up, 1, 16), Ok(()));
        let lagging = status(Some(1), vec![replica(1, 500, 500), replica(2, 100, 100), replica(3, 500, 500)]);
        let err = can_restart(&lagging, 3, 16).unwrap_err();
        assert!(err.contains("node 2") && err.contains("400 entries behind"), "{err}");
        assert_eq!(can_restart(&lagging, 2, 16), Ok(()), "the lagging node itself may go");
        let leaderless = status(None, vec![replica(1, 1, 1), replica(2, 1, 1)]);
        assert!(can_restart(&leaderless, 1, 16).unwrap_err().contains("no leader"));
        assert_eq!(led_by(&caught_up, 1), vec!["s shardId-000000000000".to_string()]);
        assert!(led_by(&caught_up, 2).is_empty(), "a follower leads nothing");
        let mut down = caught_up.clone();
        down.nodes[1].reachable = false;
        assert!(can_restart(&down, 1, 16).unwrap_err().contains("does not answer"));
    }
}
