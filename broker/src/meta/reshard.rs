//! Resharding in the metadata state: SplitShard, MergeShards and UpdateShardCount's rounds
//! (planned by `scaling.rs`). A reshard adds pending children under a new epoch and marks
//! the stream UPDATING; the children open once their parents have closed.

use super::state::{place, shard_id, MetaState, Scaling, ShardMeta, StreamMeta, StreamStatus};
use crate::error::{Error, Result};
use crate::hashkey::HashKeyRange;
use crate::limits;
use crate::meta::scaling::Step;
use crate::meta::settings::StreamMode;
use crate::raft::NodeId;

impl MetaState {
    /// An open shard of an ACTIVE stream that was never split or merged.
    fn reshardable(&self, name: &str, index: u32) -> Result<(&StreamMeta, &ShardMeta)> {
        let stream = self.streams.get(name).ok_or_else(|| Error::stream_not_found(name))?;
        if stream.status != StreamStatus::Active {
            return Err(stream.not_active());
        }
        let shard = stream.shard(index).filter(|s| !s.pending).ok_or_else(|| {
            Error::not_found(format!(
                "Could not find shard {} in stream {name} under account {}.",
                shard_id(index),
                crate::ACCOUNT_ID
            ))
        })?;
        if !shard.is_open() || stream.children_of(index).next().is_some() {
            return Err(Error::in_use(format!(
                "Shard {} in stream {name} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                shard.shard_id(),
                crate::ACCOUNT_ID
            )));
        }
        Ok((stream, shard))
    }

    /// Adds pending children to a stream (new indexes and groups, placed on `nodes`) and
    /// marks it UPDATING.
    fn add_children(
        &mut self,
        name: &str,
        children: Vec<(HashKeyRange, Vec<u32>, u32)>,
        nodes: &[NodeId],
    ) -> Result<()> {
        let nodes: Vec<NodeId> = nodes.iter().copied().filter(|n| !self.draining.contains(n)).collect();
        let stream = self.streams.get(name).ok_or_else(|| Error::stream_not_found(name))?;
        limits::validate_replication(stream.replication, nodes.len())?;
        let rf = stream.replication;
        let next_index = stream.shards.iter().map(|s| s.index).max().unwrap_or(0) + 1;
        let first_group = self.next_group_id.max(1);
        let count = children.len();
        let children: Vec<ShardMeta> = children
            .into_iter()
            .enumerate()
            .map(|(i, (range, parents, epoch))| {
                let group_id = first_group + i as u64;
                ShardMeta {
                    index: next_index + i as u32,
                    group_id,
                    range,
                    replicas: place(group_id, rf, &nodes),
                    epoch,
                    ready: false,
                    retiring: Vec::new(),
                    ending_sequence_number: None,
                    closed_ms: None,
                    parents,
                    pending: true,
                    opened_ms: None,
                }
            })
            .collect();
        self.next_group_id = first_group + count as u64;
        let stream = self.streams.get_mut(name).expect("checked above");
        stream.shards.extend(children);
        stream.status = StreamStatus::Updating;
        Ok(())
    }

    /// One pending child covering two adjacent open shards, under an epoch above both.
    pub(super) fn merge(&mut self, name: &str, index: u32, adjacent: u32, nodes: &[NodeId]) -> Result<()> {
        let (_, a) = self.reshardable(name, index)?;
        let (_, b) = self.reshardable(name, adjacent)?;
        let (lo, hi) = if a.range.start < b.range.start { (a, b) } else { (b, a) };
        if index == adjacent || lo.range.end.checked_add(1) != Some(hi.range.start) {
            return Err(Error::invalid(format!(
                "Shards {} and {} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                a.shard_id(),
                b.shard_id(),
                crate::ACCOUNT_ID
            )));
        }
        let stream = &self.streams[name];
        let open = stream.shards.iter().filter(|s| s.is_open()).count() as u32;
        if stream.mode == StreamMode::OnDemand && open <= crate::meta::settings::ON_DEMAND_SHARDS {
            return Err(below_on_demand_floor(name, open - 1));
        }
        let range = HashKeyRange { start: lo.range.start, end: hi.range.end };
        let epoch = a.epoch.max(b.epoch) + 1;
        self.add_children(name, vec![(range, vec![index, adjacent], epoch)], nodes)
    }

    /// Two pending children of one open shard, under a new epoch so that their sequence
    /// numbers sort after every one of the parent's.
    pub(super) fn split(&mut self, name: &str, index: u32, new_start: u128, nodes: &[NodeId]) -> Result<()> {
        let (_, parent) = self.reshardable(name, index)?;
        if new_start <= parent.range.start || new_start > parent.range.end {
            return Err(Error::invalid(format!(
                "NewStartingHashKey {new_start} used in SplitShard() on shard {} in stream {name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                parent.shard_id(),
                crate::ACCOUNT_ID,
                parent.range.start,
                parent.range.end
            )));
        }
        let (epoch, range) = (parent.epoch + 1, parent.range);
        let halves = vec![
            (HashKeyRange { start: range.start, end: new_start - 1 }, vec![index], epoch),
            (HashKeyRange { start: new_start, end: range.end }, vec![index], epoch),
        ];
        self.add_children(name, halves, nodes)
    }

    /// Starts an UpdateShardCount after checking Kinesis' rules: an ACTIVE stream, and a
    /// target between half and twice its open shards, within the per-stream shard limit.
    pub(super) fn update_shard_count(&mut self, name: &str, target: u32, nodes: Vec<NodeId>) -> Result<()> {
        let stream = self.streams.get(name).ok_or_else(|| Error::stream_not_found(name))?;
        if stream.status != StreamStatus::Active {
            return Err(stream.not_active());
        }
        let open = stream.shards.iter().filter(|s| s.is_open()).count() as u64;
        let counts = format!("Current open shard count: {open}, Target shard count: {target}");
        let limit = |message: String| Err(Error::new(crate::error::ErrorKind::LimitExceeded, message));
        if target > limits::MAX_SHARDS_PER_STREAM {
            return limit(format!(
                "Target shard count or number of open shards cannot be greater than {}. {counts}",
                limits::MAX_SHARDS_PER_STREAM
            ));
        }
        if u64::from(target) > open * 2 {
            return limit(format!(
                "UpdateShardCount cannot scale up over double your current open shard count. {counts}"
            ));
        }
        if u64::from(target) * 2 < open {
            return limit(format!(
                "UpdateShardCount cannot scale down below half your current open shard count. {counts}"
            ));
        }
        if stream.mode == StreamMode::OnDemand
            && target < crate::meta::settings::ON_DEMAND_SHARDS
            && u64::from(target) < open
        {
            return Err(below_on_demand_floor(name, target));
        }
        let nodes: Vec<NodeId> = nodes.into_iter().filter(|n| !self.draining.contains(n)).collect();
        limits::validate_replication(stream.replication, nodes.len())?;
        let stream = self.streams.get_mut(name).expect("checked above");
        stream.scaling = Some(Scaling { target, nodes });
        self.next_scaling_round(name);
        Ok(())
    }

    /// Opens the next round of an UpdateShardCount's reshards, or ends it (the stream
    /// ACTIVE again) when the open shards are the target's even ranges.
    pub(super) fn next_scaling_round(&mut self, name: &str) {
        let Some(stream) = self.streams.get_mut(name) else { return };
        let Some(scaling) = stream.scaling.clone() else { return };
        let open: Vec<(u32, HashKeyRange)> =
            stream.shards.iter().filter(|s| s.is_open()).map(|s| (s.index, s.range)).collect();
        let mut children = Vec::new();
        for step in crate::meta::scaling::next_round(&open, scaling.target) {
            let shard = |i: u32| stream.shard(i).expect("planned from the open shards");
            match step {
                Step::Split { index, at } => {
                    let p = shard(index);
                    children.push((
                        HashKeyRange { start: p.range.start, end: at - 1 },
                        vec![index],
                        p.epoch + 1,
                    ));
                    children.push((HashKeyRange { start: at, end: p.range.end }, vec![index], p.epoch + 1));
                }
                Step::Merge { index, adjacent } => {
                    let (a, b) = (shard(index), shard(adjacent));
                    let range = HashKeyRange { start: a.range.start, end: b.range.end };
                    children.push((range, vec![index, adjacent], a.epoch.max(b.epoch) + 1));
                }
            }
        }
        // Placement was checked when the scaling began; a node drained since may leave
        // too few, and then the scaling stops where it is rather than fail a close.
        if children.is_empty() || self.add_children(name, children, &scaling.nodes).is_err() {
            let stream = self.streams.get_mut(name).expect("present above");
            stream.scaling = None;
            stream.status = StreamStatus::Active;
        }
    }
}

/// An ON_DEMAND stream keeps at least the shards it started with.
fn below_on_demand_floor(name: &str, would_be: u32) -> Error {
    Error::invalid(format!(
        "Stream {name} is ON_DEMAND and keeps at least {} open shards (this would leave {would_be}); switch it to PROVISIONED with UpdateStreamMode to go lower.",
        crate::meta::settings::ON_DEMAND_SHARDS
    ))
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::create;
    use super::super::state::MetaCommand;
    use super::*;

    #[test]
    fn a_split_opens_its_children_only_once_the_parent_has_closed() {
        let mut m = MetaState::default();
        m.apply(MetaCommand::Init { secret: vec![1] }).unwrap();
        m.apply(create("s", 2, 3)).unwrap();
        for g in 1..=2 {
            m.apply(MetaCommand::ShardReady { group_id: g }).unwrap();
        }
        let parent = m.streams["s"].shards[0].clone();
        let mid = parent.range.start + (parent.range.end - parent.range.start) / 2;
        let split = |key| MetaCommand::SplitShard {
            stream: "s".into(),
            shard_index: 0,
            new_starting_hash_key: key,
            nodes: vec![1, 2, 3],
        };
        // The key must fall strictly inside the parent's range.
        for bad in [parent.range.start, parent.range.end + 1] {
            let e = m.apply(split(bad)).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::InvalidArgument, "{e}");
        }
        m.apply(split(mid)).unwrap();
        let s = &m.streams["s"];
        assert_eq!(s.status, StreamStatus::Updating);
        let kids: Vec<&ShardMeta> = s.children_of(0).collect();
        assert_eq!(kids.len(), 2);
        assert_eq!((kids[0].index, kids[1].index), (2, 3), "new shards take the next indexes");
        assert_eq!((kids[0].group_id, kids[1].group_id), (3, 4), "and new groups");
        assert_eq!(kids[0].range, HashKeyRange { start: parent.range.start, end: mid - 1 });
        assert_eq!(kids[1].range, HashKeyRange { start: mid, end: parent.range.end });
        assert!(kids.iter().all(|k| k.pending && k.epoch == 1 && k.parents == vec![0]));
        // Until the parent closes, its keys still go to it.
        assert_eq!(s.shard_for(mid).unwrap().index, 0);
        // One reshard at a time; a shard that is being split cannot be split again.
        assert_eq!(m.apply(split(mid + 1)).unwrap_err().kind, crate::error::ErrorKind::ResourceInUse);
        m.apply(MetaCommand::ShardClosed { group_id: 1, ending_sequence_number: "9".into(), closed_ms: 5 })
            .unwrap();
        let s = &m.streams["s"];
        assert_eq!(s.status, StreamStatus::Active);
        assert_eq!(s.shard(0).unwrap().ending_sequence_number.as_deref(), Some("9"));
        assert_eq!(s.shard_for(mid).unwrap().index, 3);
        assert_eq!(s.shard_for(mid - 1).unwrap().index, 2);
        assert_eq!(s.shard_for(parent.range.start).unwrap().index, 2);
        // Closed for good: never split again.
        let e = m.apply(split(mid)).unwrap_err();
        assert!(e.message.contains("already been merged or split"), "{e}");

        // Closed at 5 ms; with 1 s "hours" its 24 h retention ends at 24,005 ms. Then it
        // goes, and only it: open shards never expire.
        assert!(m.expired_shards(24_004, 1000).is_empty());
        assert_eq!(m.expired_shards(24_005, 1000), vec![("s".to_string(), vec![0])]);
        m.apply(MetaCommand::ExpireShards { stream: "s".into(), indexes: vec![0, 1] }).unwrap();
        let s = &m.streams["s"];
        let left: Vec<u32> = s.shards.iter().map(|sh| sh.index).collect();
        assert_eq!(left, vec![1, 2, 3]);
        assert_eq!(s.shard(2).unwrap().parents, vec![0], "children still name their parent");
        assert!(m.expired_shards(i64::MAX, 1000).is_empty());
    }

    #[test]
    fn a_merge_opens_its_child_only_once_both_parents_have_closed() {
        let mut m = MetaState::default();
        m.apply(MetaCommand::Init { secret: vec![1] }).unwrap();
        m.apply(create("s", 3, 3)).unwrap();
        for g in 1..=3 {
            m.apply(MetaCommand::ShardReady { group_id: g }).unwrap();
        }
        let merge = |a, b| MetaCommand::MergeShards {
            stream: "s".into(),
            shard_index: a,
            adjacent_index: b,
            nodes: vec![1, 2, 3],
        };
        let e = m.apply(merge(0, 2)).unwrap_err();
        assert!(e.message.contains("not an adjacent pair"), "{e}");
        assert!(m.apply(merge(1, 1)).is_err());
        assert_eq!(m.apply(merge(1, 9)).unwrap_err().kind, crate::error::ErrorKind::ResourceNotFound);
        m.apply(merge(2, 1)).unwrap();
        let s = &m.streams["s"];
        let child = s.children_of(1).next().unwrap().clone();
        assert_eq!(child.parents, vec![2, 1], "ParentShardId, then AdjacentParentShardId");
        assert_eq!(child.range, HashKeyRange { start: s.shards[1].range.start, end: s.shards[2].range.end });
        assert!(child.pending && child.index == 3 && child.epoch == 1);
        m.apply(MetaCommand::ShardClosed { group_id: 2, ending_sequence_number: "1".into(), closed_ms: 5 })
            .unwrap();
        let s = &m.streams["s"];
        assert!(s.shard(3).unwrap().pending, "one parent still open");
        assert_eq!(s.status, StreamStatus::Updating);
        assert!(s.shard_for(s.shards[1].range.start).is_none(), "its keys wait for the other parent");
        m.apply(MetaCommand::ShardClosed { group_id: 3, ending_sequence_number: "1".into(), closed_ms: 5 })
            .unwrap();
        let s = &m.streams["s"];
        assert_eq!(s.status, StreamStatus::Active);
        assert_eq!(s.shard_for(s.shards[1].range.start).unwrap().index, 3);
        assert_eq!(s.shard_for(s.shards[2].range.end).unwrap().index, 3);
        assert_eq!(s.shard_for(0).unwrap().index, 0);
    }

    #[test]
    fn update_shard_count_reshards_in_rounds_to_even_ranges_then_is_active() {
        let mut m = MetaState::default();
        m.apply(MetaCommand::Init { secret: vec![1] }).unwrap();
        m.apply(create("s", 3, 3)).unwrap();
        for g in 1..=3 {
            m.apply(MetaCommand::ShardReady { group_id: g }).unwrap();
        }
        let update =
            |target| MetaCommand::UpdateShardCount { stream: "s".into(), target, nodes: vec![1, 2, 3] };
        for (bad, says) in
            [(7, "scale up over double"), (1, "scale down below half"), (501, "cannot be greater than 500")]
        {
            let e = m.apply(update(bad)).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::LimitExceeded, "{e}");
            assert!(e.message.contains(says) && e.message.contains("Current open shard count: 3"), "{e}");
        }
        m.apply(update(5)).unwrap();
        assert_eq!(m.streams["s"].status, StreamStatus::Updating);
        assert!(m.apply(update(4)).is_err(), "one reshard at a time");
        let mut rounds = 0;
        // Each round: every shard with children closes (as its group's leader reports).
        while m.streams["s"].status == StreamStatus::Updating {
            rounds += 1;
            assert!(rounds <= 4, "{:?}", m.streams["s"].shards);
            let s = &m.streams["s"];
            let closing: Vec<u64> = s
                .shards
                .iter()
                .filter(|sh| sh.is_open() && s.children_of(sh.index).next().is_some())
                .map(|sh| sh.group_id)
                .collect();
            assert!(!closing.is_empty());
            for g in closing {
                m.apply(MetaCommand::ShardClosed {
                    group_id: g,
                    ending_sequence_number: "1".into(),
                    closed_ms: 5,
                })
                .unwrap();
            }
        }
        let s = &m.streams["s"];
        let mut open: Vec<HashKeyRange> =
            s.shards.iter().filter(|sh| sh.is_open()).map(|sh| sh.range).collect();
        open.sort_by_key(|r| r.start);
        assert_eq!(open, HashKeyRange::split_evenly(5));
        assert_eq!(s.status, StreamStatus::Active);
        assert!(s.scaling.is_none());
        for sh in s.shards.iter().filter(|sh| !sh.parents.is_empty()) {
            let parent_epoch = sh.parents.iter().map(|p| s.shard(*p).unwrap().epoch).max().unwrap();
            assert!(sh.epoch > parent_epoch, "children's sequence numbers sort after their parents'");
        }
        // The same count again: nothing to do, and the stream stays ACTIVE.
        m.apply(update(5)).unwrap();
        assert_eq!(m.streams["s"].status, StreamStatus::Active);
    }
}
