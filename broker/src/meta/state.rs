//! The metadata state machine's state and its pure transition function.

use crate::error::{Error, Result};
use crate::hashkey::HashKeyRange;
use crate::limits::{self, ShardLimits};
use crate::meta::settings::{Consumer, StreamMode};
use crate::raft::NodeId;
use crate::sequence::{SequenceBase, SequenceNumber};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// The N in `shardId-00000000000N`.
    pub index: u32,
    /// The shard's Raft group: unique in the cluster, never reused.
    pub group_id: u64,
    pub range: HashKeyRange,
    /// Nodes holding a replica; the first one bootstraps the group.
    pub replicas: Vec<NodeId>,
    /// Grows on every split or merge so children's sequence numbers sort after parents'.
    pub epoch: u32,
    /// The group has elected its first leader.
    pub ready: bool,
    /// Nodes whose replica is being replaced (a drain): they keep it until the group's
    /// leader has moved the membership to `replicas` and reported them retired.
    pub retiring: Vec<NodeId>,
    pub ending_sequence_number: Option<String>,
    /// When the shard closed (ms since the epoch): it is removed once its retention has
    /// passed since, as Kinesis drops expired closed shards.
    pub closed_ms: Option<i64>,
    /// The shards this one was split or merged from: Kinesis' ParentShardId, then
    /// AdjacentParentShardId.
    pub parents: Vec<u32>,
    /// A reshard's child waiting for its parents to close: nothing is written to it yet.
    pub pending: bool,
    /// When the shard opened (stream creation, or its parents' close), ms since the epoch.
    pub opened_ms: Option<i64>,
}

impl ShardMeta {
    pub fn shard_id(&self) -> String {
        shard_id(self.index)
    }
    pub fn starting_sequence_number(&self) -> SequenceNumber {
        self.sequence_base().at(0, 0)
    }

    /// What every sequence number of this shard shares.
    pub fn sequence_base(&self) -> SequenceBase {
        SequenceBase { epoch: self.epoch, shard: self.index }
    }
    /// Takes writes: not closed by a reshard, and not a child still waiting for its parents.
    pub fn is_open(&self) -> bool {
        self.ending_sequence_number.is_none() && !self.pending
    }
}

pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Parses `shardId-000000000007` (Kinesis also accepts the bare number's zero-padded form).
pub fn parse_shard_id(id: &str) -> Result<u32> {
    let digits = id.strip_prefix("shardId-").unwrap_or(id);
    if id.is_empty() || id.len() > 128 || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::validation(format!(
            "1 validation error detected: Value '{id}' at 'shardId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and name a shard such as shardId-000000000000"
        )));
    }
    digits.parse().map_err(|_| Error::invalid(format!("Invalid shardId {id}.")))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    pub status: StreamStatus,
    pub retention_hours: u32,
    pub replication: u32,
    pub limits: ShardLimits,
    pub created_ms: i64,
    pub shards: Vec<ShardMeta>,
    /// An UpdateShardCount under way.
    pub scaling: Option<Scaling>,
    pub mode: StreamMode,
    pub tags: BTreeMap<String, String>,
    /// Consumers registered for enhanced fan-out.
    pub consumers: Vec<Consumer>,
}

/// An UpdateShardCount under way: rounds of reshards (`scaling::next_round`) go on, each
/// planned when the previous one has opened its children, until the open shards are
/// `target` even ranges. The stream stays UPDATING until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaling {
    pub target: u32,
    /// The cluster's nodes when the request was made (placement of every round's children).
    pub nodes: Vec<NodeId>,
}

impl StreamMeta {
    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.iter().find(|s| s.index == index)
    }
    /// The open shard whose range holds `hash_key`.
    pub fn shard_for(&self, hash_key: u128) -> Option<&ShardMeta> {
        self.shards.iter().find(|s| s.is_open() && s.range.contains(hash_key))
    }
    /// The shards made from `index` by a split or merge.
    pub fn children_of(&self, index: u32) -> impl Iterator<Item = &ShardMeta> {
        self.shards.iter().filter(move |s| s.parents.contains(&index))
    }
    pub(super) fn not_active(&self) -> Error {
        Error::in_use(format!(
            "Stream {} under account {} not ACTIVE, instead in state {}",
            self.name,
            crate::ACCOUNT_ID,
            self.status.as_str()
        ))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Key for shard-iterator MACs, chosen once when the cluster is first formed.
    pub secret: Vec<u8>,
    pub streams: BTreeMap<String, StreamMeta>,
    pub next_group_id: u64,
    /// Nodes being emptied: no new replicas go there.
    pub draining: std::collections::BTreeSet<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// First entry of a new cluster.
    Init {
        secret: Vec<u8>,
    },
    CreateStream {
        name: String,
        shard_count: u32,
        retention_hours: u32,
        replication: u32,
        limits: ShardLimits,
        now_ms: i64,
        /// The cluster's nodes when the request was made (placement input).
        nodes: Vec<NodeId>,
        mode: StreamMode,
        tags: Vec<(String, String)>,
    },
    /// A shard's group elected its first leader.
    ShardReady {
        group_id: u64,
    },
    DeleteStream {
        name: String,
    },
    /// Move every replica off `node` (to the least-loaded of `nodes` not holding one) and
    /// place nothing new there.
    DrainNode {
        node: NodeId,
        nodes: Vec<NodeId>,
    },
    /// The group's membership no longer includes `node`: its replica can go.
    ReplicaRetired {
        group_id: u64,
        node: NodeId,
    },
    /// Splits an open shard at `new_starting_hash_key` into two pending children; the
    /// parent keeps taking writes until its group has closed (`ShardClosed`).
    SplitShard {
        stream: String,
        shard_index: u32,
        new_starting_hash_key: u128,
        nodes: Vec<NodeId>,
    },
    /// Merges two adjacent open shards into one pending child (ParentShardId `shard_index`,
    /// AdjacentParentShardId `adjacent_index`); each parent keeps taking writes until its
    /// group has closed, and the child opens once both have.
    MergeShards {
        stream: String,
        shard_index: u32,
        adjacent_index: u32,
        nodes: Vec<NodeId>,
    },
    /// A reshard's parent group applied its `Close` entry: nothing after
    /// `ending_sequence_number` is in it. Its children open once all their parents closed.
    ShardClosed {
        group_id: u64,
        ending_sequence_number: String,
        closed_ms: i64,
    },
    /// Closed shards whose records have all passed retention: removed from the stream
    /// (their replicas stop and their storage is reclaimed). Open shards are never removed.
    ExpireShards {
        stream: String,
        indexes: Vec<u32>,
    },
    /// UpdateShardCount with UNIFORM_SCALING: reshards the stream, in rounds, into
    /// `target` shards with even hash-key ranges.
    UpdateShardCount {
        stream: String,
        target: u32,
        nodes: Vec<NodeId>,
    },
    /// Increase/DecreaseStreamRetentionPeriod (`increase` says which).
    SetRetention {
        stream: String,
        hours: u32,
        increase: bool,
    },
    /// New write limits for every shard of the stream (taken by each shard's writer at its
    /// next request).
    SetLimits {
        stream: String,
        limits: ShardLimits,
    },
    /// AddTagsToStream (`add`) and RemoveTagsFromStream (`remove`).
    Tag {
        stream: String,
        add: Vec<(String, String)>,
        remove: Vec<String>,
    },
    /// UpdateStreamMode.
    SetMode {
        stream: String,
        mode: StreamMode,
    },
    RegisterConsumer {
        stream: String,
        name: String,
        now_ms: i64,
    },
    DeregisterConsumer {
        stream: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaReply {
    Done,
}

impl MetaState {
    /// Applies one command. Pure: the same state and command give the same result on
    /// every node.
    pub fn apply(&mut self, cmd: MetaCommand) -> Result<MetaReply> {
        match cmd {
            MetaCommand::Init { secret } => {
                if self.secret.is_empty() {
                    self.secret = secret;
                    self.next_group_id = self.next_group_id.max(1);
                }
            }
            MetaCommand::CreateStream {
                name,
                shard_count,
                retention_hours,
                replication,
                limits,
                now_ms,
                nodes,
                mode,
                tags,
            } => {
                if self.streams.contains_key(&name) {
                    return Err(Error::already_exists(format!(
                        "Stream {name} under account {} already exists.",
                        crate::ACCOUNT_ID
                    )));
                }
                let nodes: Vec<NodeId> = nodes.into_iter().filter(|n| !self.draining.contains(n)).collect();
                limits::validate_replication(replication, nodes.len())?;
                let first_group = self.next_group_id.max(1);
                let shards = HashKeyRange::split_evenly(shard_count)
                    .into_iter()
                    .enumerate()
                    .map(|(i, range)| {
                        let group_id = first_group + i as u64;
                        ShardMeta {
                            index: i as u32,
                            group_id,
                            range,
                            replicas: place(group_id, replication, &nodes),
                            epoch: 0,
                            ready: false,
                            retiring: Vec::new(),
                            ending_sequence_number: None,
                            closed_ms: None,
                            parents: Vec::new(),
                            pending: false,
                            opened_ms: Some(now_ms),
                        }
                    })
                    .collect();
                self.next_group_id = first_group + u64::from(shard_count);
                self.streams.insert(
                    name.clone(),
                    StreamMeta {
                        name,
                        status: StreamStatus::Creating,
                        retention_hours,
                        replication,
                        limits,
                        created_ms: now_ms,
                        shards,
                        scaling: None,
                        mode,
                        tags: tags.into_iter().collect(),
                        consumers: Vec::new(),
                    },
                );
            }
            MetaCommand::ShardReady { group_id } => {
                for stream in self.streams.values_mut() {
                    if let Some(shard) = stream.shards.iter_mut().find(|s| s.group_id == group_id) {
                        shard.ready = true;
                        if stream.status == StreamStatus::Creating && stream.shards.iter().all(|s| s.ready) {
                            stream.status = StreamStatus::Active;
                        }
                    }
                }
            }
            MetaCommand::DeleteStream { name } => {
                if self.streams.remove(&name).is_none() {
                    return Err(Error::stream_not_found(&name));
                }
            }
            MetaCommand::DrainNode { node, nodes } => self.drain(node, &nodes)?,
            MetaCommand::SplitShard { stream, shard_index, new_starting_hash_key, nodes } => {
                self.split(&stream, shard_index, new_starting_hash_key, &nodes)?
            }
            MetaCommand::MergeShards { stream, shard_index, adjacent_index, nodes } => {
                self.merge(&stream, shard_index, adjacent_index, &nodes)?
            }
            MetaCommand::ShardClosed { group_id, ending_sequence_number, closed_ms } => {
                let Some((name, _)) = self.shard_by_group(group_id) else {
                    return Ok(MetaReply::Done);
                };
                let name = name.name.clone();
                let stream = self.streams.get_mut(&name).expect("found above");
                let parent = stream.shards.iter_mut().find(|s| s.group_id == group_id).expect("found above");
                if parent.ending_sequence_number.is_none() {
                    parent.ending_sequence_number = Some(ending_sequence_number);
                    parent.closed_ms = Some(closed_ms);
                }
                let closed: Vec<u32> = stream
                    .shards
                    .iter()
                    .filter(|s| s.ending_sequence_number.is_some())
                    .map(|s| s.index)
                    .collect();
                let present: Vec<u32> = stream.shards.iter().map(|s| s.index).collect();
                for child in stream.shards.iter_mut().filter(|s| s.pending) {
                    // A parent already expired and removed is closed too.
                    if child.parents.iter().all(|p| closed.contains(p) || !present.contains(p)) {
                        child.pending = false;
                        child.opened_ms = Some(closed_ms);
                    }
                }
                if stream.status == StreamStatus::Updating && !stream.shards.iter().any(|s| s.pending) {
                    if stream.scaling.is_some() {
                        self.next_scaling_round(&name);
                    } else {
                        stream.status = StreamStatus::Active;
                    }
                }
            }
            MetaCommand::UpdateShardCount { stream, target, nodes } => {
                self.update_shard_count(&stream, target, nodes)?
            }
            MetaCommand::SetRetention { stream, hours, increase } => {
                self.set_retention(&stream, hours, increase)?
            }
            MetaCommand::SetLimits { stream, limits } => self.set_limits(&stream, limits)?,
            MetaCommand::Tag { stream, add, remove } => self.tag(&stream, add, remove)?,
            MetaCommand::SetMode { stream, mode } => self.set_mode(&stream, mode)?,
            MetaCommand::RegisterConsumer { stream, name, now_ms } => {
                self.register_consumer(&stream, name, now_ms)?
            }
            MetaCommand::DeregisterConsumer { stream, name } => self.deregister_consumer(&stream, &name)?,
            MetaCommand::ExpireShards { stream, indexes } => {
                if let Some(stream) = self.streams.get_mut(&stream) {
                    stream
                        .shards
                        .retain(|s| !(indexes.contains(&s.index) && s.ending_sequence_number.is_some()));
                }
            }
            MetaCommand::ReplicaRetired { group_id, node } => {
                for stream in self.streams.values_mut() {
                    for shard in stream.shards.iter_mut().filter(|s| s.group_id == group_id) {
                        shard.retiring.retain(|n| *n != node);
                    }
                }
            }
        }
        Ok(MetaReply::Done)
    }

    /// Every shard (of every stream) with a replica on `node`, retiring ones included.
    pub fn shards_on(&self, node: NodeId) -> impl Iterator<Item = (&StreamMeta, &ShardMeta)> {
        self.streams
            .values()
            .flat_map(|s| s.shards.iter().map(move |sh| (s, sh)))
            .filter(move |(_, sh)| sh.replicas.contains(&node) || sh.retiring.contains(&node))
    }

    /// Replicas still on `node` (a drained node is empty when this reaches 0).
    pub fn replicas_on(&self, node: NodeId) -> usize {
        self.shards_on(node).count()
    }

    /// Replaces `node` in every shard's replicas by the least-loaded other node; the old
    /// replica retires once the group's leader has changed the membership. Idempotent.
    fn drain(&mut self, node: NodeId, nodes: &[NodeId]) -> Result<()> {
        let targets: Vec<NodeId> =
            nodes.iter().copied().filter(|n| *n != node && !self.draining.contains(n)).collect();
        let mut load: BTreeMap<NodeId, usize> = targets.iter().map(|n| (*n, self.replicas_on(*n))).collect();
        let mut plan = Vec::new();
        for stream in self.streams.values() {
            for shard in stream.shards.iter().filter(|s| s.replicas.contains(&node)) {
                let to = load
                    .iter()
                    .filter(|(n, _)| !shard.replicas.contains(n))
                    .min_by_key(|(n, l)| (**l, **n))
                    .map(|(n, _)| *n)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "Cannot drain node {node}: {} {} already has a replica on every other node. Add a node first.",
                            stream.name,
                            shard.shard_id()
                        ))
                    })?;
                *load.get_mut(&to).expect("target") += 1;
                plan.push((shard.group_id, to));
            }
        }
        self.draining.insert(node);
        for (group, to) in plan {
            for stream in self.streams.values_mut() {
                for shard in stream.shards.iter_mut().filter(|s| s.group_id == group) {
                    for r in shard.replicas.iter_mut().filter(|r| **r == node) {
                        *r = to;
                    }
                    shard.retiring.push(node);
                }
            }
        }
        Ok(())
    }

    /// Per stream, its closed shards whose retention has passed since they closed at
    /// `now_ms` (`hour_ms` is an hour's length; tests shorten it).
    pub fn expired_shards(&self, now_ms: i64, hour_ms: i64) -> Vec<(String, Vec<u32>)> {
        self.streams
            .values()
            .filter_map(|s| {
                let retention = i64::from(s.retention_hours) * hour_ms;
                let expired: Vec<u32> = s
                    .shards
                    .iter()
                    .filter(|sh| sh.closed_ms.is_some_and(|at| at.saturating_add(retention) <= now_ms))
                    .map(|sh| sh.index)
                    .collect();
                (!expired.is_empty()).then(|| (s.name.clone(), expired))
            })
            .collect()
    }

    pub fn shard_by_group(&self, group_id: u64) -> Option<(&StreamMeta, &ShardMeta)> {
        self.streams
            .values()
            .flat_map(|s| s.shards.iter().map(move |sh| (s, sh)))
            .find(|(_, sh)| sh.group_id == group_id)
    }
}

/// Replicas of a group: `rf` consecutive nodes starting at a rotating offset, so replicas
/// and first leaders spread evenly over the cluster.
pub fn place(group_id: u64, rf: u32, nodes: &[NodeId]) -> Vec<NodeId> {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let n = sorted.len();
    (0..rf as usize).map(|i| sorted[(group_id as usize + i) % n]).collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn draining_moves_every_replica_to_the_least_loaded_nodes_and_retires_the_old_ones() {
        let mut m = MetaState::default();
        m.apply(MetaCommand::Init { secret: vec![1] }).unwrap();
        let mut c = create("s", 8, 3);
        if let MetaCommand::CreateStream { nodes, .. } = &mut c {
            *nodes = vec![1, 2, 3, 4];
        }
        m.apply(c).unwrap();
        let on4 = m.replicas_on(4);
        assert!(on4 > 0);
        m.apply(MetaCommand::DrainNode { node: 4, nodes: vec![1, 2, 3, 4] }).unwrap();
        for sh in &m.streams["s"].shards {
            assert!(!sh.replicas.contains(&4), "{sh:?}");
            assert_eq!(sh.replicas.len(), 3);
            let mut distinct = sh.replicas.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "replicas stay on distinct nodes");
        }
        assert_eq!(m.replicas_on(4), on4, "node 4 keeps its replicas until they retire");
        let retiring: Vec<u64> =
            m.streams["s"].shards.iter().filter(|s| s.retiring.contains(&4)).map(|s| s.group_id).collect();
        for g in retiring {
            m.apply(MetaCommand::ReplicaRetired { group_id: g, node: 4 }).unwrap();
        }
        assert_eq!(m.replicas_on(4), 0);
        // New streams avoid a drained node; a second drain is a no-op.
        m.apply(MetaCommand::DrainNode { node: 4, nodes: vec![1, 2, 3, 4] }).unwrap();
        let mut c = create("t", 4, 3);
        if let MetaCommand::CreateStream { nodes, .. } = &mut c {
            *nodes = vec![1, 2, 3, 4];
        }
        m.apply(c).unwrap();
        assert_eq!(m.replicas_on(4), 0);
    }

    #[test]
    fn a_drain_that_leaves_too_few_nodes_is_refused_and_changes_nothing() {
        let mut m = MetaState::default();
        m.apply(MetaCommand::Init { secret: vec![1] }).unwrap();
        m.apply(create("s", 2, 3)).unwrap();
        let before = m.clone();
        let err = m.apply(MetaCommand::DrainNode { node: 3, nodes: vec![1, 2, 3] }).unwrap_err();
        assert!(err.to_string().contains("Add a node first"), "{err}");
        assert_eq!(m, before);
    }

    pub(in crate::meta) fn create(name: &str, shards: u32, rf: u32) -> MetaCommand {
        MetaCommand::CreateStream {
            name: name.into(),
            shard_count: shards,
            retention_hours: 24,
            replication: rf,
            limits: ShardLimits::default(),
            now_ms: 1,
            nodes: vec![1, 2, 3],
            mode: StreamMode::Provisioned,
            tags: vec![],
        }
    }

    #[test]
    fn create_places_replicas_and_becomes_active_when_all_ready() {
        let mut m = MetaState::default();
        m.apply(MetaCommand::Init { secret: vec![1] }).unwrap();
        m.apply(create("s", 4, 3)).unwrap();
        let s = &m.streams["s"];
        assert_eq!(s.status, StreamStatus::Creating);
        let groups: Vec<u64> = s.shards.iter().map(|x| x.group_id).collect();
        assert_eq!(groups, vec![1, 2, 3, 4]);
        let first: Vec<NodeId> = s.shards.iter().map(|x| x.replicas[0]).collect();
        assert_eq!(first, vec![2, 3, 1, 2], "first replicas rotate");
        for sh in &s.shards {
            let mut r = sh.replicas.clone();
            r.sort();
            assert_eq!(r, vec![1, 2, 3]);
        }
        for g in 1..=3 {
            m.apply(MetaCommand::ShardReady { group_id: g }).unwrap();
            assert_eq!(m.streams["s"].status, StreamStatus::Creating);
        }
        m.apply(MetaCommand::ShardReady { group_id: 4 }).unwrap();
        assert_eq!(m.streams["s"].status, StreamStatus::Active);
    }

    #[test]
    fn names_are_unique_and_group_ids_never_reused() {
        let mut m = MetaState::default();
        m.apply(create("s", 2, 1)).unwrap();
        let e = m.apply(create("s", 2, 1)).unwrap_err();
        assert!(e.already_exists && e.message.contains("already exists"));
        m.apply(MetaCommand::DeleteStream { name: "s".into() }).unwrap();
        m.apply(create("s", 2, 1)).unwrap();
        assert_eq!(m.streams["s"].shards[0].group_id, 3);
        assert!(m.apply(MetaCommand::DeleteStream { name: "nope".into() }).is_err());
    }

    #[test]
    fn replication_beyond_cluster_size_is_refused() {
        let mut m = MetaState::default();
        assert!(m.apply(create("s", 1, 5)).is_err());
        assert!(m.streams.is_empty());
    }

    #[test]
    fn shard_ids() {
        assert_eq!(shard_id(7), "shardId-000000000007");
        assert_eq!(parse_shard_id("shardId-000000000007").unwrap(), 7);
        assert!(parse_shard_id("shardId-").is_err());
        assert!(parse_shard_id("shard-x").is_err());
    }
}
