//! Capacity arithmetic: declared throughput -> shard count -> broker pods. Pure.

/// Kinesis' per-shard capacity, which Freshet's default limits follow.
pub const WRITE_MIB_PER_SHARD: f64 = 1.0;
pub const READ_MIB_PER_SHARD: f64 = 2.0;
pub const RECORDS_PER_SHARD: f64 = 1000.0;
/// A stream created on demand starts with this many shards (as Kinesis does).
pub const ON_DEMAND_INITIAL_SHARDS: u32 = 4;
/// The broker refuses streams above this many shards (Kinesis' default quota; the same
/// figure as `freshet_broker::limits::MAX_SHARDS_PER_STREAM`).
pub const MAX_SHARDS: u32 = 500;
/// Shard replicas one broker pod hosts by default (the chart can change it).
pub const DEFAULT_REPLICAS_PER_BROKER: u32 = 100;

/// Throughput a user declares for a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Throughput {
    pub write_mib_per_second: f64,
    pub read_mib_per_second: f64,
    pub records_per_second: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Provisioned,
    OnDemand,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapacityError {
    /// A negative, infinite or NaN figure.
    Invalid(&'static str),
    TooManyShards {
        needed: u64,
    },
}

impl std::fmt::Display for CapacityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapacityError::Invalid(field) => write!(f, "{field} must be a finite number >= 0"),
            CapacityError::TooManyShards { needed } => write!(
                f,
                "the declared throughput needs {needed} shards; a stream may have at most {MAX_SHARDS}: split it into several streams"
            ),
        }
    }
}

impl std::error::Error for CapacityError {}

fn shards_for(value: f64, per_shard: f64, field: &'static str) -> Result<u64, CapacityError> {
    if !value.is_finite() || value < 0.0 {
        return Err(CapacityError::Invalid(field));
    }
    let n = (value / per_shard).ceil();
    Ok(if n > u64::MAX as f64 { u64::MAX } else { n as u64 })
}

/// Shards for a declared throughput: max(write / 1 MiB/s, read / 2 MiB/s,
/// records / 1,000 per second), rounded up, at least 1 (at least 4 on demand).
pub fn shards_for_throughput(t: Throughput, mode: Mode) -> Result<u32, CapacityError> {
    let needed = shards_for(t.write_mib_per_second, WRITE_MIB_PER_SHARD, "writeMiBPerSecond")?
        .max(shards_for(t.read_mib_per_second, READ_MIB_PER_SHARD, "readMiBPerSecond")?)
        .max(shards_for(t.records_per_second, RECORDS_PER_SHARD, "recordsPerSecond")?)
        .max(1);
    let floor = match mode {
        Mode::Provisioned => 1,
        Mode::OnDemand => u64::from(ON_DEMAND_INITIAL_SHARDS),
    };
    let needed = needed.max(floor);
    if needed > u64::from(MAX_SHARDS) {
        return Err(CapacityError::TooManyShards { needed });
    }
    Ok(needed as u32)
}

/// Broker pods for `shards` with `replication` replicas each: enough pods that none hosts
/// more than `replicas_per_broker` replicas, and never fewer than `replication` (each
/// replica of a shard on a different pod).
pub fn broker_pods(shards: u32, replication: u32, replicas_per_broker: u32) -> u32 {
    let replicas = u64::from(shards) * u64::from(replication);
    let per = u64::from(replicas_per_broker.max(1));
    let by_load = replicas.div_ceil(per);
    by_load.max(u64::from(replication)).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(w: f64, r: f64, n: f64) -> Throughput {
        Throughput { write_mib_per_second: w, read_mib_per_second: r, records_per_second: n }
    }

    #[test]
    fn zero_throughput_still_gets_a_shard() {
        assert_eq!(shards_for_throughput(t(0.0, 0.0, 0.0), Mode::Provisioned), Ok(1));
    }

    #[test]
    fn the_largest_need_wins_and_fractions_round_up() {
        assert_eq!(shards_for_throughput(t(2.5, 0.0, 0.0), Mode::Provisioned), Ok(3));
        assert_eq!(shards_for_throughput(t(1.0, 9.0, 0.0), Mode::Provisioned), Ok(5));
        assert_eq!(shards_for_throughput(t(1.0, 2.0, 12_001.0), Mode::Provisioned), Ok(13));
        assert_eq!(shards_for_throughput(t(0.001, 0.0, 0.0), Mode::Provisioned), Ok(1));
        assert_eq!(
            shards_for_throughput(t(4.0, 0.0, 0.0), Mode::Provisioned),
            Ok(4),
            "exact multiples do not round up"
        );
    }

    #[test]
    fn on_demand_starts_at_four_shards() {
        assert_eq!(shards_for_throughput(t(0.0, 0.0, 0.0), Mode::OnDemand), Ok(4));
        assert_eq!(shards_for_throughput(t(10.0, 0.0, 0.0), Mode::OnDemand), Ok(10));
        // Switching a 2-shard provisioned stream to on demand raises it to the floor.
        assert_eq!(shards_for_throughput(t(2.0, 0.0, 0.0), Mode::Provisioned), Ok(2));
        assert_eq!(shards_for_throughput(t(2.0, 0.0, 0.0), Mode::OnDemand), Ok(4));
    }

    #[test]
    fn huge_or_invalid_figures_are_refused() {
        assert_eq!(shards_for_throughput(t(500.0, 0.0, 0.0), Mode::Provisioned), Ok(500));
        assert_eq!(
            shards_for_throughput(t(500.5, 0.0, 0.0), Mode::Provisioned),
            Err(CapacityError::TooManyShards { needed: 501 })
        );
        assert!(matches!(
            shards_for_throughput(t(1e300, 0.0, 0.0), Mode::Provisioned),
            Err(CapacityError::TooManyShards { .. })
        ));
        assert_eq!(
            shards_for_throughput(t(-1.0, 0.0, 0.0), Mode::Provisioned),
            Err(CapacityError::Invalid("writeMiBPerSecond"))
        );
        assert!(shards_for_throughput(t(0.0, f64::NAN, 0.0), Mode::Provisioned).is_err());
        assert!(shards_for_throughput(t(0.0, 0.0, f64::INFINITY), Mode::Provisioned).is_err());
    }

    #[test]
    fn pods_follow_replicas_and_never_undercut_replication() {
        assert_eq!(broker_pods(1, 3, 100), 3, "three replicas need three pods");
        assert_eq!(broker_pods(100, 3, 100), 3);
        assert_eq!(broker_pods(101, 3, 100), 4);
        assert_eq!(broker_pods(500, 5, 100), 25);
        assert_eq!(broker_pods(4, 1, 100), 1);
        assert_eq!(broker_pods(10, 1, 3), 4);
        assert_eq!(broker_pods(10, 3, 0), 30, "a zero capacity is treated as one replica per pod");
    }
}
