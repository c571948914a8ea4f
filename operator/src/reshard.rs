//! Which UpdateShardCount brings a stream's open shards toward the declared count. Pure.
//!
//! The brokers' UpdateShardCount (UNIFORM_SCALING, the path the Kinesis API uses too) does
//! the splits and merges and ends with even hash-key ranges; it takes half to twice the
//! open count per call, so a bigger change is several calls, each once the stream is
//! ACTIVE again. Scaling down never squeezes the measured load into too few shards.

use freshet_broker::hashkey::HashKeyRange;

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

/// A shard left after a scale-down must take its share of the writes with room to spare:
/// at most 80% of Kinesis' per-shard write capacity (1 MiB/s, 1,000 records/s).
pub const MERGE_MAX_BYTES_PER_SECOND: u64 = (1 << 20) * 8 / 10;
pub const MERGE_MAX_RECORDS_PER_SECOND: u64 = 800;

/// The next UpdateShardCount target on the way up: the declared count, or twice the open
/// count when that is less. None when enough shards are open.
pub fn scale_up_target(open: usize, declared: u32) -> Option<u32> {
    let open = open as u32;
    (open < declared).then(|| declared.min(open.max(1) * 2))
}

/// The next UpdateShardCount target on the way down: the fewest shards, no fewer than
/// declared nor than half the open ones, whose even ranges would each carry at most
/// `MERGE_MAX_*` of the writes measured now. `Ok(None)`: no more shards are open than
/// declared. `Err(())`: fewer are declared, but the measured load does not fit fewer.
#[allow(clippy::result_unit_err)]
pub fn scale_down_target(open: &[OpenShard], declared: u32) -> Result<Option<u32>, ()> {
    let n = open.len() as u32;
    if n <= declared.max(1) {
        return Ok(None);
    }
    let lowest = declared.max(n.div_ceil(2)).max(1);
    (lowest..n).find(|t| fits(open, *t)).map(Some).ok_or(())
}

/// Whether `target` even ranges could carry the open shards' measured writes, each
/// shard's load spread evenly over its own range.
fn fits(open: &[OpenShard], target: u32) -> bool {
    HashKeyRange::split_evenly(target).iter().all(|r| {
        let (mut bytes, mut records) = (0.0, 0.0);
        for s in open {
            let (lo, hi) = (s.start.max(r.start), s.end.min(r.end));
            if lo > hi {
                continue;
            }
            let share = ((hi - lo) as f64 + 1.0) / ((s.end - s.start) as f64 + 1.0);
            bytes += s.bytes_per_second as f64 * share;
            records += s.records_per_second as f64 * share;
        }
        bytes <= MERGE_MAX_BYTES_PER_SECOND as f64 && records <= MERGE_MAX_RECORDS_PER_SECOND as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(n: u32) -> Vec<OpenShard> {
        HashKeyRange::split_evenly(n)
            .into_iter()
            .enumerate()
            .map(|(i, r)| OpenShard {
                shard_id: format!("shardId-{i:012}"),
                start: r.start,
                end: r.end,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn scaling_up_goes_to_the_declared_count_at_most_doubling_per_call() {
        assert_eq!(scale_up_target(4, 4), None);
        assert_eq!(scale_up_target(4, 2), None, "scaling down is not scaling up");
        assert_eq!(scale_up_target(2, 3), Some(3));
        assert_eq!(scale_up_target(2, 8), Some(4));
        assert_eq!(scale_up_target(4, 8), Some(8));
        assert_eq!(scale_up_target(300, 500), Some(500));
    }

    #[test]
    fn idle_shards_scale_down_to_the_declared_count_at_most_halving_per_call() {
        assert_eq!(scale_down_target(&even(4), 4), Ok(None));
        assert_eq!(scale_down_target(&even(4), 8), Ok(None), "scaling up is not scaling down");
        assert_eq!(scale_down_target(&even(4), 2), Ok(Some(2)));
        assert_eq!(scale_down_target(&even(8), 1), Ok(Some(4)));
        assert_eq!(scale_down_target(&even(5), 3), Ok(Some(3)));
        assert_eq!(scale_down_target(&even(1), 0), Ok(None), "never below one shard");
    }

    #[test]
    fn scaling_down_keeps_enough_shards_for_the_measured_writes() {
        // 4 shards at 300 KB/s each: 1.2 MB/s needs 2 shards of at most 800 KiB/s.
        let mut open = even(4);
        for s in &mut open {
            s.bytes_per_second = 300_000;
        }
        assert_eq!(scale_down_target(&open, 1), Ok(Some(2)));
        // 6 shards, all writes on the first: 700 KB/s. Three even ranges would give the
        // first one shard 0 and half of shard 1... still 700 KB/s: fits.
        let mut open = even(6);
        open[0].bytes_per_second = 700_000;
        assert_eq!(scale_down_target(&open, 3), Ok(Some(3)));
        // Shards 0 and 1 at 500 KB/s each: three even ranges would put both in the first
        // (1 MB/s, too much); four put shard 0 and half of shard 1 together (750 KB/s).
        open[1].bytes_per_second = 500_000;
        open[0].bytes_per_second = 500_000;
        assert_eq!(scale_down_target(&open, 3), Ok(Some(4)));
        // Records count too: 4 shards at 500 records/s fit 3 (about 667 each), not 2.
        let mut open = even(4);
        for s in &mut open {
            s.records_per_second = 500;
        }
        assert_eq!(scale_down_target(&open, 2), Ok(Some(3)));
        // At 700 records/s each not even 3 fit: the count stays.
        for s in &mut open {
            s.records_per_second = 700;
        }
        assert_eq!(scale_down_target(&open, 2), Err(()));
    }
}
