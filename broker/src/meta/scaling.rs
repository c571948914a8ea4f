//! UpdateShardCount's UNIFORM_SCALING: which splits and merges turn a stream's open shards
//! into `target` shards with the even ranges `HashKeyRange::split_evenly(target)` gives.
//! Pure.
//!
//! The work goes in rounds, as Kinesis' own does: every split or merge of a round touches
//! different shards, so a round's reshards run at once; the next round is planned from the
//! shards the previous one opened. Splits come first (each open shard is cut at a target
//! boundary inside it), then merges (the pieces that lie in one target range are joined
//! pairwise). Within the 1/2x to 2x that UpdateShardCount allows this takes at most two
//! rounds of splits and two of merges.

use crate::hashkey::HashKeyRange;

/// One reshard of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Split shard `index` so that the upper child starts at `at`.
    Split { index: u32, at: u128 },
    /// Merge shard `index` with the adjacent shard above it, `adjacent`.
    Merge { index: u32, adjacent: u32 },
}

/// The next round of reshards toward `target` even ranges, for open shards given as
/// `(index, range)` covering the key space without gaps. Empty when the open shards are
/// exactly the target ranges.
pub fn next_round(open: &[(u32, HashKeyRange)], target: u32) -> Vec<Step> {
    let ranges = HashKeyRange::split_evenly(target.max(1));
    let mut open: Vec<(u32, HashKeyRange)> = open.to_vec();
    open.sort_by_key(|(_, r)| r.start);

    // A target boundary strictly inside a shard: cut there (the lowest one, when a shard
    // holds two; the next round cuts its upper child).
    let splits: Vec<Step> = open
        .iter()
        .filter_map(|(index, r)| {
            ranges
                .iter()
                .map(|t| t.start)
                .find(|b| *b > r.start && *b <= r.end)
                .map(|at| Step::Split { index: *index, at })
        })
        .collect();
    if !splits.is_empty() {
        return splits;
    }

    // No shard crosses a boundary now, so each lies inside one target range: join the
    // pieces of every range two by two, lowest first.
    let mut merges = Vec::new();
    let mut i = 0;
    while i + 1 < open.len() {
        let (a, b) = (&open[i], &open[i + 1]);
        if target_of(&ranges, a.1.start) == target_of(&ranges, b.1.start) {
            merges.push(Step::Merge { index: a.0, adjacent: b.0 });
            i += 2;
        } else {
            i += 1;
        }
    }
    merges
}

/// The index of the target range holding `key`.
fn target_of(ranges: &[HashKeyRange], key: u128) -> usize {
    ranges.partition_point(|r| r.end < key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every round the way the metadata applies them: a split's children and a
    /// merge's child get the next shard indexes. Returns the final open shards and the
    /// number of rounds.
    fn scale(from: u32, to: u32) -> (Vec<(u32, HashKeyRange)>, usize) {
        let mut open: Vec<(u32, HashKeyRange)> =
            HashKeyRange::split_evenly(from).into_iter().enumerate().map(|(i, r)| (i as u32, r)).collect();
        let mut next = from;
        let mut rounds = 0;
        loop {
            let round = next_round(&open, to);
            if round.is_empty() {
                return (open, rounds);
            }
            rounds += 1;
            assert!(rounds <= 8, "{from} -> {to} does not converge");
            let mut touched = std::collections::HashSet::new();
            for step in round {
                match step {
                    Step::Split { index, at } => {
                        assert!(touched.insert(index), "a shard is resharded twice in one round");
                        let i = open.iter().position(|(x, _)| *x == index).unwrap();
                        let (_, r) = open.remove(i);
                        assert!(at > r.start && at <= r.end, "SplitShard's rule: the key is inside");
                        open.push((next, HashKeyRange { start: r.start, end: at - 1 }));
                        open.push((next + 1, HashKeyRange { start: at, end: r.end }));
                        next += 2;
                    }
                    Step::Merge { index, adjacent } => {
                        assert!(touched.insert(index) && touched.insert(adjacent));
                        let a = open.iter().position(|(x, _)| *x == index).unwrap();
                        let (_, ra) = open.remove(a);
                        let b = open.iter().position(|(x, _)| *x == adjacent).unwrap();
                        let (_, rb) = open.remove(b);
                        assert_eq!(ra.end + 1, rb.start, "MergeShards' rule: adjacent");
                        open.push((next, HashKeyRange { start: ra.start, end: rb.end }));
                        next += 1;
                    }
                }
            }
        }
    }

    fn ranges(open: &[(u32, HashKeyRange)]) -> Vec<HashKeyRange> {
        let mut r: Vec<HashKeyRange> = open.iter().map(|(_, r)| *r).collect();
        r.sort_by_key(|r| r.start);
        r
    }

    #[test]
    fn every_allowed_count_change_ends_with_kinesis_even_ranges() {
        for from in 1..=24u32 {
            for to in from.div_ceil(2)..=from * 2 {
                let (open, rounds) = scale(from, to);
                assert_eq!(ranges(&open), HashKeyRange::split_evenly(to), "{from} -> {to}");
                assert!(rounds <= 4, "{from} -> {to} took {rounds} rounds");
            }
        }
    }

    #[test]
    fn doubling_is_one_round_of_splits_and_halving_one_of_merges() {
        let (_, rounds) = scale(64, 128);
        assert_eq!(rounds, 1);
        let (_, rounds) = scale(64, 32);
        assert_eq!(rounds, 1);
        let start: Vec<(u32, HashKeyRange)> =
            HashKeyRange::split_evenly(2).into_iter().enumerate().map(|(i, r)| (i as u32, r)).collect();
        assert_eq!(
            next_round(&start, 4),
            vec![
                Step::Split { index: 0, at: HashKeyRange::split_evenly(4)[1].start },
                Step::Split { index: 1, at: HashKeyRange::split_evenly(4)[3].start },
            ]
        );
    }

    #[test]
    fn same_count_and_even_ranges_need_nothing() {
        let open: Vec<(u32, HashKeyRange)> =
            HashKeyRange::split_evenly(5).into_iter().enumerate().map(|(i, r)| (i as u32 + 7, r)).collect();
        assert!(next_round(&open, 5).is_empty());
    }

    #[test]
    fn uneven_shards_are_evened_out_at_the_same_count() {
        // Three shards after one split of a two-shard stream (1/4, 1/4, 1/2) -> 3 even ones.
        let two = HashKeyRange::split_evenly(2);
        let quarter = two[0].start + (two[0].end - two[0].start) / 2 + 1;
        let open = vec![
            (2, HashKeyRange { start: two[0].start, end: quarter - 1 }),
            (3, HashKeyRange { start: quarter, end: two[0].end }),
            (1, two[1]),
        ];
        assert!(!next_round(&open, 3).is_empty());
    }
}
