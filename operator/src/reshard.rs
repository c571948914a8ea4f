//! Which reshard brings a stream's open shards toward the declared count. Pure.
//!
//! One reshard at a time (the brokers refuse a second while the stream is UPDATING).
//! Splits take the widest open shard at the middle of its range, merges the adjacent pair
//! covering the least of the hash-key space, so that doubling or halving the count gives
//! the uniform ranges Kinesis' UNIFORM_SCALING would.

/// An open shard as the brokers describe it: id, inclusive hash-key range, and the write
/// rate its leader measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenShard {
    pub shard_id: String,
    pub start: u128,
    pub end: u128,
    pub bytes_per_second: u64,
    pub records_per_second: u64,
}

/// A merged shard must take its parents' combined writes with room to spare: at most 80%
/// of Kinesis' per-shard write capacity (1 MiB/s, 1,000 records/s).
pub const MERGE_MAX_BYTES_PER_SECOND: u64 = (1 << 20) * 8 / 10;
pub const MERGE_MAX_RECORDS_PER_SECOND: u64 = 800;

/// The next split to make, as `(shard id, new starting hash key)`, or None when there are
/// enough open shards (or none can be split: a range of one hash key).
pub fn next_split(open: &[OpenShard], declared: u32) -> Option<(String, u128)> {
    if open.len() >= declared as usize {
        return None;
    }
    let widest = open
        .iter()
        .filter(|s| s.end > s.start)
        .max_by(|a, b| (a.end - a.start).cmp(&(b.end - b.start)).then_with(|| b.shard_id.cmp(&a.shard_id)))?;
    Some((widest.shard_id.clone(), widest.start + (widest.end - widest.start) / 2 + 1))
}

/// The next merge to make, as `(shard to merge, adjacent shard)`, or None when there are
/// no more open shards than declared, or when no adjacent pair's measured load would fit
/// one shard (the open shards' load is never squeezed below their capacity).
pub fn next_merge(open: &[OpenShard], declared: u32) -> Option<(String, String)> {
    if open.len() <= declared.max(1) as usize {
        return None;
    }
    let mut sorted: Vec<&OpenShard> = open.iter().collect();
    sorted.sort_by_key(|s| s.start);
    sorted
        .windows(2)
        .filter(|w| w[0].end.checked_add(1) == Some(w[1].start))
        .filter(|w| {
            w[0].bytes_per_second + w[1].bytes_per_second <= MERGE_MAX_BYTES_PER_SECOND
                && w[0].records_per_second + w[1].records_per_second <= MERGE_MAX_RECORDS_PER_SECOND
        })
        .min_by_key(|w| (w[1].end - w[0].start, w[0].start))
        .map(|w| (w[0].shard_id.clone(), w[1].shard_id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(n: u32) -> Vec<OpenShard> {
        let h = u128::MAX / u128::from(n);
        (0..n)
            .map(|i| OpenShard {
                shard_id: format!("shardId-{i:012}"),
                start: u128::from(i) * h,
                end: if i == n - 1 { u128::MAX } else { u128::from(i + 1) * h - 1 },
                ..Default::default()
            })
            .collect()
    }

    /// What the brokers would open for a reshard: the next shard index over `start..=end`.
    fn push_child(open: &mut Vec<OpenShard>, next: &mut u32, start: u128, end: u128) {
        open.push(OpenShard { shard_id: format!("shardId-{next:012}"), start, end, ..Default::default() });
        *next += 1;
    }

    #[test]
    fn nothing_to_split_when_enough_are_open() {
        assert_eq!(next_split(&even(4), 4), None);
        assert_eq!(next_split(&even(4), 2), None, "merges are not splits");
    }

    #[test]
    fn splits_the_widest_shard_at_its_middle() {
        let mut open = even(2);
        open[1].end = open[1].start + 10; // shard 1 now narrow
        let (id, at) = next_split(&open, 3).unwrap();
        assert_eq!(id, "shardId-000000000000");
        assert_eq!(at, open[0].start + (open[0].end - open[0].start) / 2 + 1);
        assert!(at > open[0].start && at <= open[0].end, "inside the range, as SplitShard requires");
    }

    #[test]
    fn doubling_ends_with_uniform_ranges() {
        let mut open = even(2);
        let mut next = 2;
        while let Some((id, at)) = next_split(&open, 4) {
            let i = open.iter().position(|s| s.shard_id == id).unwrap();
            let parent = open.remove(i);
            for (start, end) in [(parent.start, at - 1), (at, parent.end)] {
                push_child(&mut open, &mut next, start, end);
            }
        }
        assert_eq!(open.len(), 4);
        let widths: Vec<u128> = open.iter().map(|s| s.end - s.start).collect();
        let (lo, hi) = (widths.iter().min().unwrap(), widths.iter().max().unwrap());
        assert!(hi - lo <= 2, "{widths:?}");
    }

    #[test]
    fn merges_the_narrowest_adjacent_pair_until_the_count_is_reached() {
        assert_eq!(next_merge(&even(4), 4), None);
        assert_eq!(next_merge(&even(4), 8), None, "splits are not merges");
        let mut open = even(4);
        let mut next = 4;
        while let Some((a, b)) = next_merge(&open, 2) {
            let first = open.iter().position(|s| s.shard_id == a).unwrap();
            let second = open.iter().position(|s| s.shard_id == b).unwrap();
            assert_eq!(open[first].end + 1, open[second].start, "adjacent, lower first");
            let (start, end) = (open[first].start, open[second].end);
            open.retain(|s| s.shard_id != a && s.shard_id != b);
            push_child(&mut open, &mut next, start, end);
        }
        open.sort_by_key(|s| s.start);
        assert_eq!(open.len(), 2);
        let widths: Vec<u128> = open.iter().map(|s| s.end - s.start).collect();
        assert!(widths[0].abs_diff(widths[1]) <= 8, "halving stays uniform: {widths:?}");
        assert_eq!(next_merge(&even(1), 0), None, "never below one shard");
    }

    #[test]
    fn pairs_too_busy_for_one_shard_are_not_merged() {
        let mut open = even(4);
        // 0+1 and 1+2 would carry 900 KB/s; 2+3 500 KB/s and 600 records/s: only 2+3 fits.
        open[0].bytes_per_second = 500_000;
        open[1].bytes_per_second = 400_000;
        open[2].bytes_per_second = 500_000;
        open[2].records_per_second = 300;
        open[3].records_per_second = 300;
        assert_eq!(
            next_merge(&open, 2),
            Some(("shardId-000000000002".to_string(), "shardId-000000000003".to_string()))
        );
        open[3].records_per_second = 600;
        assert_eq!(next_merge(&open, 2), None, "no pair fits: the count stays above the declared one");
    }

    #[test]
    fn a_one_key_shard_cannot_be_split() {
        let one = vec![OpenShard {
            shard_id: "shardId-000000000000".into(),
            start: 5,
            end: 5,
            ..Default::default()
        }];
        assert_eq!(next_split(&one, 2), None);
    }
}
