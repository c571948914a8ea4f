//! The 128-bit hash-key space: which shard owns a partition key.

use crate::error::{Error, Result};
use md5::{Digest, Md5};

/// An inclusive range `[start, end]` of the MD5 hash-key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashKeyRange {
    pub start: u128,
    pub end: u128,
}

impl HashKeyRange {
    pub const FULL: HashKeyRange = HashKeyRange { start: 0, end: u128::MAX };

    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }

    /// The ranges Kinesis gives `n` new shards: `h = floor(2^128 / n)`, shard `i` owns
    /// `[i*h, (i+1)*h - 1]` and the last one ends at `2^128 - 1`.
    pub fn split_evenly(n: u32) -> Vec<HashKeyRange> {
        assert!(n > 0, "a stream has at least one shard");
        let n = n as u128;
        // floor(2^128 / n) without overflowing: 2^128 = u128::MAX + 1.
        let h = if n == 1 { 0 } else { u128::MAX / n + u128::from(u128::MAX % n == n - 1) };
        (0..n)
            .map(|i| HashKeyRange { start: i * h, end: if i == n - 1 { u128::MAX } else { (i + 1) * h - 1 } })
            .collect()
    }
}

/// MD5 of the UTF-8 partition key as an unsigned big-endian 128-bit integer.
pub fn hash_partition_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// Parses an `ExplicitHashKey`: a decimal in `[0, 2^128 - 1]`.
pub fn parse_explicit_hash_key(value: &str) -> Result<u128> {
    if value.is_empty() || value.len() > 39 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::validation(format!(
            "1 validation error detected: Value '{value}' at 'explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{{0,38}})"
        )));
    }
    value.parse::<u128>().map_err(|_| {
        Error::invalid(format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {value}"
        ))
    })
}

/// The hash key a record is routed by: the explicit one when given, else MD5 of the key.
pub fn route_key(partition_key: &str, explicit_hash_key: Option<&str>) -> Result<u128> {
    match explicit_hash_key {
        Some(k) => parse_explicit_hash_key(k),
        None => Ok(hash_partition_key(partition_key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_tiles(ranges: &[HashKeyRange]) {
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges.last().unwrap().end, u128::MAX);
        for w in ranges.windows(2) {
            assert_eq!(w[0].end + 1, w[1].start, "ranges must be contiguous");
            assert!(w[0].start <= w[0].end);
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        assert_eq!(HashKeyRange::split_evenly(1), vec![HashKeyRange::FULL]);
    }

    #[test]
    fn matches_kinesis_boundaries() {
        // Kinesis, 2 shards: 0..170141183460469231731687303715884105727 and the rest.
        let r = HashKeyRange::split_evenly(2);
        assert_eq!(r[0].end, 170141183460469231731687303715884105727);
        assert_eq!(r[1].start, 170141183460469231731687303715884105728);
        // Kinesis, 3 shards: h = floor(2^128/3) = 113427455640312821154458202477256070485.
        let r = HashKeyRange::split_evenly(3);
        assert_eq!(r[1].start, 113427455640312821154458202477256070485);
        assert_eq!(r[2].start, 226854911280625642308916404954512140970);
        assert_eq!(r[2].end, u128::MAX);
        // Powers of two divide 2^128 exactly.
        let r = HashKeyRange::split_evenly(4);
        assert_eq!(r[1].start, 1u128 << 126);
    }

    #[test]
    fn ranges_tile_the_space() {
        for n in [1, 2, 3, 4, 5, 7, 64, 100, 1000, 10_000] {
            let r = HashKeyRange::split_evenly(n);
            assert_eq!(r.len(), n as usize);
            assert_tiles(&r);
        }
    }

    #[test]
    fn md5_routing_matches_kinesis() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_partition_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn explicit_hash_key_bounds() {
        assert_eq!(parse_explicit_hash_key("0").unwrap(), 0);
        assert_eq!(parse_explicit_hash_key("340282366920938463463374607431768211455").unwrap(), u128::MAX);
        let e = parse_explicit_hash_key("340282366920938463463374607431768211456").unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::InvalidArgument);
        assert!(parse_explicit_hash_key("-1").is_err());
        assert!(parse_explicit_hash_key("12a").is_err());
        assert!(parse_explicit_hash_key("").is_err());
    }
}
