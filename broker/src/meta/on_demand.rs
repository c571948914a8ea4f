//! How an ON_DEMAND stream scales by itself. Pure: the node's loop (`node::on_demand`)
//! feeds it measured rates and carries out what it decides.
//!
//! A shard whose writes stay above half its capacity for a window is split in two at
//! the middle of its hash-key range, as Kinesis splits a shard that sustains more than
//! about 500 KB/s. An ON_DEMAND stream never has fewer open shards than it started with
//! (4): a stream switched from PROVISIONED with fewer is scaled up to 4, and nothing
//! merges an ON_DEMAND stream's shards by itself.

use crate::hashkey::HashKeyRange;
use crate::limits::ShardLimits;
use crate::meta::settings::ON_DEMAND_SHARDS;
use crate::shard::load::Rate;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Whether a shard's measured writes exceed half its write capacity in bytes or in
/// records. A stream whose limits are off is measured against Kinesis' capacity.
pub fn is_hot(rate: Rate, limits: &ShardLimits) -> bool {
    let capacity = if limits.enforce { *limits } else { ShardLimits::default() };
    rate.bytes_per_second * 2 > capacity.write_bytes_per_second
        || rate.records_per_second * 2 > capacity.write_records_per_second
}

/// Where a hot shard is cut: the upper child starts at the middle of its range.
/// `None` for a shard of a single hash key, which cannot be split.
pub fn split_point(range: HashKeyRange) -> Option<u128> {
    (range.end > range.start).then(|| range.start + (range.end - range.start) / 2 + 1)
}

/// The UpdateShardCount that brings an ON_DEMAND stream with `open` shards up to the
/// count it starts with (at most doubling per step, as UpdateShardCount allows).
pub fn floor_target(open: u32) -> Option<u32> {
    (open < ON_DEMAND_SHARDS).then(|| ON_DEMAND_SHARDS.min(open.max(1) * 2))
}

/// Since when each shard (by Raft group) has been hot without a break.
#[derive(Debug, Default)]
pub struct HotShards {
    since: HashMap<u64, Instant>,
}

impl HotShards {
    /// Records one measurement of `group` at `now`; true once it has been hot for at
    /// least `window`. A cool measurement starts the count again.
    pub fn observe(&mut self, group: u64, hot: bool, now: Instant, window: Duration) -> bool {
        if !hot {
            self.since.remove(&group);
            return false;
        }
        let since = *self.since.entry(group).or_insert(now);
        now.saturating_duration_since(since) >= window
    }

    /// Forgets shards not in `measured` (no longer led here, closed or deleted), so a
    /// shard that comes back starts its count again.
    pub fn keep_only(&mut self, measured: &[u64]) {
        self.since.retain(|g, _| measured.contains(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(bytes: u64, records: u64) -> Rate {
        Rate { bytes_per_second: bytes, records_per_second: records }
    }

    #[test]
    fn hot_is_more_than_half_the_capacity_in_bytes_or_records() {
        let kinesis = ShardLimits::default();
        assert!(!is_hot(rate(512 * 1024, 500), &kinesis), "exactly half is not hot");
        assert!(is_hot(rate(512 * 1024 + 1, 10), &kinesis));
        assert!(is_hot(rate(10, 501), &kinesis));
        let small = ShardLimits { enforce: true, write_bytes_per_second: 1000, write_records_per_second: 10 };
        assert!(is_hot(rate(501, 0), &small), "the stream's own capacity counts");
        let off = ShardLimits { enforce: false, write_bytes_per_second: 0, write_records_per_second: 0 };
        assert!(!is_hot(rate(1000, 100), &off), "limits off: measured against Kinesis' capacity");
        assert!(is_hot(rate(0, 600), &off));
    }

    #[test]
    fn splits_cut_ranges_in_half_and_single_keys_cannot_be_cut() {
        let all = HashKeyRange { start: 0, end: u128::MAX };
        let at = split_point(all).unwrap();
        assert_eq!(at, 1 << 127, "the upper child starts at the middle");
        assert_eq!(split_point(HashKeyRange { start: 10, end: 11 }), Some(11));
        assert_eq!(split_point(HashKeyRange { start: 7, end: 7 }), None);
        for r in HashKeyRange::split_evenly(3) {
            let at = split_point(r).unwrap();
            assert!(at > r.start && at <= r.end, "SplitShard's rule: the key lies inside the shard");
        }
    }

    #[test]
    fn on_demand_streams_grow_back_to_four_shards() {
        assert_eq!(floor_target(1), Some(2));
        assert_eq!(floor_target(2), Some(4));
        assert_eq!(floor_target(3), Some(4));
        assert_eq!(floor_target(4), None);
        assert_eq!(floor_target(9), None);
    }

    #[test]
    fn a_shard_must_stay_hot_for_the_whole_window() {
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let mut hot = HotShards::default();
        assert!(!hot.observe(1, true, t0, w));
        assert!(!hot.observe(1, true, t0 + Duration::from_secs(59), w));
        assert!(hot.observe(1, true, t0 + Duration::from_secs(60), w));
        // One cool measurement starts the count again.
        assert!(!hot.observe(1, false, t0 + Duration::from_secs(61), w));
        assert!(!hot.observe(1, true, t0 + Duration::from_secs(62), w));
        assert!(!hot.observe(1, true, t0 + Duration::from_secs(121), w));
        assert!(hot.observe(1, true, t0 + Duration::from_secs(122), w));
        // A shard this node stopped leading is forgotten.
        hot.keep_only(&[]);
        assert!(!hot.observe(1, true, t0 + Duration::from_secs(200), w));
    }
}
