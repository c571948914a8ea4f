//! Shard iterators: opaque, self-contained, authenticated tokens that expire.
//!
//! A token names the shard's Raft group (never reused, so a token for a deleted stream can
//! not read a new one of the same name), the next position to read and when it was issued.
//! An HMAC over all of it with the cluster's secret means it cannot be forged or altered.

use crate::error::{Error, ErrorKind, Result};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Kinesis: iterators expire 300,000 ms after they are issued.
pub const ITERATOR_TTL_MS: i64 = 300_000;
pub(crate) const MAC_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardIterator {
    pub stream: String,
    pub shard_index: u32,
    pub group_id: u64,
    /// Next record to return: (log index, position inside the entry).
    pub log_index: u64,
    pub position: u16,
    pub issued_ms: i64,
}

impl ShardIterator {
    pub fn encode(&self, secret: &[u8]) -> String {
        let mut bytes = bincode::serialize(self).expect("iterator serializes");
        let tag = mac(secret, &bytes);
        bytes.extend_from_slice(&tag);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes and authenticates a token; `now_ms` decides expiry.
    pub fn decode(token: &str, secret: &[u8], now_ms: i64) -> Result<ShardIterator> {
        let invalid = || Error::invalid("Invalid ShardIterator.");
        if token.is_empty() || token.len() > 512 {
            return Err(Error::validation(format!(
                "1 validation error detected: Value at 'shardIterator' failed to satisfy constraint: Member must have length between 1 and 512 (got {})",
                token.len()
            )));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() <= MAC_LEN {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
        m.update(body);
        m.verify_truncated_left(tag).map_err(|_| invalid())?;
        let it: ShardIterator = bincode::deserialize(body).map_err(|_| invalid())?;
        if now_ms.saturating_sub(it.issued_ms) > ITERATOR_TTL_MS {
            return Err(Error::new(
                ErrorKind::ExpiredIterator,
                format!(
                    "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {} milliseconds.",
                    it.issued_ms, now_ms, ITERATOR_TTL_MS
                ),
            ));
        }
        Ok(it)
    }
}

pub(crate) fn mac(secret: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    m.update(body);
    let full = m.finalize().into_bytes();
    full[..MAC_LEN].try_into().expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ShardIterator {
        ShardIterator {
            stream: "orders".into(),
            shard_index: 3,
            group_id: 42,
            log_index: 1000,
            position: 7,
            issued_ms: 1_000_000,
        }
    }

    #[test]
    fn round_trip_fits_kinesis_length() {
        let t = sample().encode(b"secret");
        assert!(t.len() <= 512);
        assert_eq!(ShardIterator::decode(&t, b"secret", 1_000_001).unwrap(), sample());
        let long = ShardIterator { stream: "s".repeat(128), ..sample() }.encode(b"k");
        assert!(long.len() <= 512, "{}", long.len());
    }

    #[test]
    fn tampered_or_foreign_tokens_are_rejected() {
        let t = sample().encode(b"secret");
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&t).unwrap();
        bytes[10] ^= 1;
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let e = ShardIterator::decode(&tampered, b"secret", 1_000_001).unwrap_err();
        assert_eq!(e.message, "Invalid ShardIterator.");
        assert!(ShardIterator::decode(&t, b"other-cluster", 1_000_001).is_err());
        assert!(ShardIterator::decode("not a token", b"secret", 0).is_err());
        assert!(ShardIterator::decode("", b"secret", 0).is_err());
    }

    #[test]
    fn expires_after_five_minutes() {
        let t = sample().encode(b"k");
        assert!(ShardIterator::decode(&t, b"k", 1_000_000 + ITERATOR_TTL_MS).is_ok());
        let e = ShardIterator::decode(&t, b"k", 1_000_001 + ITERATOR_TTL_MS).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ExpiredIterator);
    }
}
