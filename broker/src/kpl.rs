//! KPL aggregated records: the Kinesis Producer Library packs many user records into one
//! Kinesis record (`F3 89 9A C2`, a protobuf `AggregatedRecord`, then the MD5 of that
//! protobuf). Freshet stores them untouched; readers (the `freshet` CLI, the Rust client)
//! unpack them, as the KCL does.

use md5::{Digest, Md5};
use prost::Message;

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<SubRecord>,
}

#[derive(Clone, PartialEq, Message)]
struct SubRecord {
    #[prost(uint64, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", tag = "3")]
    data: Vec<u8>,
}

/// One user record out of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    /// Its place in the aggregate (the KCL's subsequence number).
    pub sub_sequence: u64,
}

/// The user records inside `data` when it is a well-formed KPL aggregate (magic,
/// protobuf, matching MD5); `None` for anything else, which is then an ordinary record.
pub fn deaggregate(data: &[u8]) -> Option<Vec<UserRecord>> {
    let body = data.strip_prefix(&MAGIC)?;
    if body.len() < 16 {
        return None;
    }
    let (proto, digest) = body.split_at(body.len() - 16);
    if Md5::digest(proto).as_slice() != digest {
        return None;
    }
    let agg = AggregatedRecord::decode(proto).ok()?;
    agg.records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Some(UserRecord {
                partition_key: agg.partition_key_table.get(r.partition_key_index as usize)?.clone(),
                explicit_hash_key: match r.explicit_hash_key_index {
                    Some(j) => Some(agg.explicit_hash_key_table.get(j as usize)?.clone()),
                    None => None,
                },
                data: r.data,
                sub_sequence: i as u64,
            })
        })
        .collect()
}

/// Packs `(partition key, data)` pairs the way the KPL does.
pub fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut keys: Vec<String> = Vec::new();
    let subs = records
        .iter()
        .map(|(key, data)| {
            let index = keys.iter().position(|k| k == key).unwrap_or_else(|| {
                keys.push(key.to_string());
                keys.len() - 1
            });
            SubRecord {
                partition_key_index: index as u64,
                explicit_hash_key_index: None,
                data: data.to_vec(),
            }
        })
        .collect();
    let proto =
        AggregatedRecord { partition_key_table: keys, explicit_hash_key_table: Vec::new(), records: subs }
            .encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&proto);
    out.extend_from_slice(&Md5::digest(&proto));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_round_trip_and_anything_else_stays_a_plain_record() {
        let packed = aggregate(&[("a", b"one"), ("b", b""), ("a", b"three")]);
        let users = deaggregate(&packed).unwrap();
        assert_eq!(
            users
                .iter()
                .map(|u| (u.partition_key.as_str(), u.data.as_slice(), u.sub_sequence))
                .collect::<Vec<_>>(),
            vec![("a", &b"one"[..], 0), ("b", &b""[..], 1), ("a", &b"three"[..], 2)]
        );
        let mut tampered = packed.clone();
        tampered[6] ^= 1;
        assert_eq!(deaggregate(&tampered), None, "a wrong MD5 is not an aggregate");
        assert_eq!(deaggregate(b"plain data"), None);
        assert_eq!(deaggregate(&MAGIC), None);
    }
}
