//! Kinesis' limits, request validation in its wording, and per-shard write throttling.

use crate::error::{Error, Result};

pub const MAX_RECORD_DATA: usize = 1024 * 1024;
pub const MAX_PUT_RECORDS_ENTRIES: usize = 500;
pub const MAX_PUT_RECORDS_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_GET_RECORDS_LIMIT: u32 = 10_000;
pub const MAX_GET_RECORDS_BYTES: usize = 10 * 1024 * 1024;
pub const MIN_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 8_760;
pub const DEFAULT_RETENTION_HOURS: u32 = 24;
pub const DEFAULT_REPLICATION: u32 = 3;
pub const MAX_REPLICATION: u32 = 5;
/// Shards one stream may have: Kinesis' default shard quota. Each shard is a Raft group
/// with a replica on `replication` nodes, so this also bounds what one request can ask
/// of a node (about 0.5 MiB and a few tasks per replica).
pub const MAX_SHARDS_PER_STREAM: u32 = 500;
pub const DEFAULT_SHARD_WRITE_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_SHARD_WRITE_RECORDS: u64 = 1_000;

fn violation(value: &str, field: &str, constraint: &str) -> Error {
    Error::validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

pub fn validate_stream_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 128 {
        return Err(violation(name, "streamName", "Member must have length between 1 and 128"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(violation(
            name,
            "streamName",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

pub fn validate_shard_count(n: u32) -> Result<()> {
    if n == 0 {
        return Err(violation("0", "shardCount", "Member must have value greater than or equal to 1"));
    }
    if n > MAX_SHARDS_PER_STREAM {
        return Err(Error::new(
            crate::error::ErrorKind::LimitExceeded,
            format!(
                "This request would exceed the shard limit of {MAX_SHARDS_PER_STREAM} shards per stream."
            ),
        ));
    }
    Ok(())
}

pub fn validate_retention_hours(h: u32) -> Result<()> {
    if !(MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS).contains(&h) {
        return Err(Error::invalid(format!(
            "Minimum allowed retention period is {MIN_RETENTION_HOURS} hours and maximum is {MAX_RETENTION_HOURS} hours (retentionHours = {h})."
        )));
    }
    Ok(())
}

pub fn validate_replication(rf: u32, nodes: usize) -> Result<()> {
    if !(1..=MAX_REPLICATION).contains(&rf) {
        return Err(violation(
            &rf.to_string(),
            "replicationFactor",
            "Member must have value between 1 and 5",
        ));
    }
    if rf as usize > nodes {
        return Err(Error::invalid(format!(
            "Replication factor {rf} needs at least {rf} broker nodes; this cluster has {nodes}. Lower the replication factor or add nodes."
        )));
    }
    Ok(())
}

/// The member path Kinesis names in a violation: `partitionKey` in PutRecord,
/// `records.3.member.partitionKey` for PutRecords' third record.
pub fn member(record: Option<usize>, field: &str) -> String {
    match record {
        Some(i) => format!("records.{}.member.{field}", i + 1),
        None => field.to_string(),
    }
}

/// `record`: the record's position in a PutRecords batch (`None` for PutRecord).
pub fn validate_partition_key(key: &str, record: Option<usize>) -> Result<()> {
    let n = key.chars().count();
    if n == 0 || n > 256 {
        return Err(violation(
            &key.chars().take(64).collect::<String>(),
            &member(record, "partitionKey"),
            "Member must have length between 1 and 256",
        ));
    }
    Ok(())
}

pub fn validate_data(data: &[u8], record: Option<usize>) -> Result<()> {
    if data.len() > MAX_RECORD_DATA {
        return Err(violation(
            &format!("java.nio.HeapByteBuffer[pos=0 lim={} cap={}]", data.len(), data.len()),
            &member(record, "data"),
            "Member must have length less than or equal to 1048576",
        ));
    }
    Ok(())
}

pub fn validate_put_records_batch(entries: usize, total_bytes: usize) -> Result<()> {
    if entries == 0 || entries > MAX_PUT_RECORDS_ENTRIES {
        return Err(violation(
            &format!("{entries} records"),
            "records",
            "Member must have length less than or equal to 500 and greater than or equal to 1",
        ));
    }
    if total_bytes > MAX_PUT_RECORDS_BYTES {
        return Err(Error::invalid(format!(
            "Records size exceeds 10 MB limit (request carries {total_bytes} bytes of data and partition keys)."
        )));
    }
    Ok(())
}

/// Tag keys 1-128 and values 0-256 characters, as Kinesis.
pub fn validate_tags<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> Result<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(violation(k, "tags.key", "Member must have length between 1 and 128"));
        }
        if v.chars().count() > 256 {
            return Err(violation(v, "tags.value", "Member must have length less than or equal to 256"));
        }
    }
    Ok(())
}

pub fn validate_get_records_limit(limit: u32) -> Result<()> {
    if !(1..=MAX_GET_RECORDS_LIMIT).contains(&limit) {
        return Err(violation(&limit.to_string(), "limit", "Member must have value between 1 and 10000"));
    }
    Ok(())
}

/// Write limits of one stream's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardLimits {
    pub enforce: bool,
    pub write_bytes_per_second: u64,
    pub write_records_per_second: u64,
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits {
            enforce: true,
            write_bytes_per_second: DEFAULT_SHARD_WRITE_BYTES,
            write_records_per_second: DEFAULT_SHARD_WRITE_RECORDS,
        }
    }
}

/// Enforced limits must let something through; "no limits" is `enforce: false`.
pub fn validate_shard_limits(l: &ShardLimits) -> Result<()> {
    if l.enforce && (l.write_bytes_per_second == 0 || l.write_records_per_second == 0) {
        return Err(Error::invalid(
            "Shard write limits must be positive; switch them off with enforce = false instead.",
        ));
    }
    Ok(())
}

/// Two token buckets (bytes and records) refilled continuously, holding at most one
/// second of capacity, as Kinesis meters a shard.
#[derive(Debug)]
pub struct WriteMeter {
    limits: ShardLimits,
    bytes: f64,
    records: f64,
    last: std::time::Instant,
}

impl WriteMeter {
    pub fn new(limits: ShardLimits) -> Self {
        WriteMeter {
            limits,
            bytes: limits.write_bytes_per_second as f64,
            records: limits.write_records_per_second as f64,
            last: std::time::Instant::now(),
        }
    }

    pub fn set_limits(&mut self, limits: ShardLimits) {
        self.limits = limits;
    }

    /// Takes capacity for one record of `size` bytes (data + partition key) at `now`;
    /// false means the record must be answered as throttled.
    pub fn admit(&mut self, size: usize, now: std::time::Instant) -> bool {
        if !self.limits.enforce {
            return true;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let (max_b, max_r) =
            (self.limits.write_bytes_per_second as f64, self.limits.write_records_per_second as f64);
        self.bytes = (self.bytes + dt * max_b).min(max_b);
        self.records = (self.records + dt * max_r).min(max_r);
        if self.bytes >= size as f64 && self.records >= 1.0 {
            self.bytes -= size as f64;
            self.records -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn stream_names() {
        assert!(validate_stream_name("orders_v1.eu-west").is_ok());
        assert!(validate_stream_name(&"a".repeat(128)).is_ok());
        assert!(validate_stream_name(&"a".repeat(129)).is_err());
        assert!(validate_stream_name("").is_err());
        let e = validate_stream_name("bad name").unwrap_err();
        assert!(e.message.contains("[a-zA-Z0-9_.-]+"), "{}", e.message);
        assert!(e.message.contains("streamName"));
    }

    #[test]
    fn record_and_batch_limits() {
        assert!(validate_partition_key("k", None).is_ok());
        assert!(validate_partition_key(&"é".repeat(256), None).is_ok());
        assert!(validate_partition_key(&"k".repeat(257), None).is_err());
        let e = validate_partition_key("", Some(2)).unwrap_err();
        assert!(e.message.contains("'records.3.member.partitionKey'"), "{}", e.message);
        assert!(validate_data(&vec![0; MAX_RECORD_DATA], None).is_ok());
        let e = validate_data(&vec![0; MAX_RECORD_DATA + 1], None).unwrap_err();
        assert!(e.message.contains("at 'data'"), "{}", e.message);
        assert!(validate_put_records_batch(500, MAX_PUT_RECORDS_BYTES).is_ok());
        assert!(validate_put_records_batch(501, 10).is_err());
        assert!(validate_put_records_batch(0, 0).is_err());
        assert!(validate_put_records_batch(10, MAX_PUT_RECORDS_BYTES + 1).is_err());
        assert!(validate_get_records_limit(10_000).is_ok());
        assert!(validate_get_records_limit(10_001).is_err());
        assert!(validate_get_records_limit(0).is_err());
    }

    #[test]
    fn stream_settings() {
        assert!(validate_retention_hours(24).is_ok());
        assert!(validate_retention_hours(8760).is_ok());
        assert!(validate_retention_hours(23).is_err());
        assert!(validate_retention_hours(8761).is_err());
        assert!(validate_replication(3, 3).is_ok());
        assert!(validate_replication(0, 3).is_err());
        assert!(validate_replication(6, 9).is_err());
        assert!(validate_replication(5, 3).unwrap_err().message.contains("add nodes"));
        assert!(validate_shard_count(0).is_err());
        assert!(validate_shard_count(MAX_SHARDS_PER_STREAM + 1).is_err());
    }

    #[test]
    fn meter_throttles_records_per_second_and_refills() {
        let t0 = Instant::now();
        let mut m = WriteMeter::new(ShardLimits::default());
        let admitted = (0..1500).filter(|_| m.admit(10, t0)).count();
        assert_eq!(admitted, 1000);
        assert!(!m.admit(10, t0));
        assert!(m.admit(10, t0 + Duration::from_millis(10)), "10 ms refills 10 records");
    }

    #[test]
    fn meter_throttles_bytes_and_can_be_switched_off() {
        let t0 = Instant::now();
        let mut m = WriteMeter::new(ShardLimits::default());
        assert!(m.admit(MAX_RECORD_DATA, t0));
        assert!(!m.admit(1, t0), "a full MiB empties the byte bucket");
        let mut off = WriteMeter::new(ShardLimits { enforce: false, ..Default::default() });
        assert!((0..100_000).all(|_| off.admit(MAX_RECORD_DATA, t0)));
    }
}
