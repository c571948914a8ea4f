//! `NextToken`s of ListShards and ListStreams: where the next page starts, signed like
//! shard iterators (so they cannot be forged) and expiring after 300 s as Kinesis' do.

use super::actions::ShardFilter;
use super::error::KinesisError;
use crate::iterator::{mac, MAC_LEN};
use base64::Engine;

pub const NEXT_TOKEN_TTL_MS: i64 = 300_000;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NextToken {
    /// The stream being listed (ListShards); empty for ListStreams.
    pub stream: String,
    /// The last shard id or stream name already returned.
    pub after: String,
    pub issued_ms: i64,
    /// ListShards' filter, which later pages keep.
    pub filter: Option<ShardFilter>,
}

impl NextToken {
    pub fn encode(&self, secret: &[u8]) -> String {
        let mut bytes = bincode::serialize(self).expect("token serializes");
        let tag = mac(secret, &bytes);
        bytes.extend_from_slice(&tag);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(token: &str, secret: &[u8], now_ms: i64) -> Result<NextToken, KinesisError> {
        let invalid = || KinesisError::invalid_argument("Invalid NextToken.");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() <= MAC_LEN {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        // Compared in constant time, like any MAC.
        if mac(secret, body).iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err(invalid());
        }
        let t: NextToken = bincode::deserialize(body).map_err(|_| invalid())?;
        if now_ms.saturating_sub(t.issued_ms) > NEXT_TOKEN_TTL_MS {
            return Err(KinesisError::new(
                400,
                "ExpiredNextTokenException",
                format!(
                    "The NextToken has expired: it was issued at {} and is valid for {NEXT_TOKEN_TTL_MS} ms.",
                    t.issued_ms
                ),
            ));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering_and_age() {
        let t = NextToken {
            stream: "s".into(),
            after: "shardId-000000000003".into(),
            issued_ms: 1_000,
            filter: None,
        };
        let enc = t.encode(b"secret");
        assert_eq!(NextToken::decode(&enc, b"secret", 2_000).unwrap(), t);
        assert_eq!(NextToken::decode(&enc, b"other", 2_000).unwrap_err().kind, "InvalidArgumentException");
        let mut forged = enc.clone().into_bytes();
        forged[3] ^= 1;
        let forged = String::from_utf8(forged).unwrap();
        assert!(NextToken::decode(&forged, b"secret", 2_000).is_err());
        let expired = NextToken::decode(&enc, b"secret", 1_000 + NEXT_TOKEN_TTL_MS + 1).unwrap_err();
        assert_eq!(expired.kind, "ExpiredNextTokenException");
    }
}
