//! Key layout: every key starts with the 8-byte big-endian group id, so one group's keys
//! are contiguous and sort by log index (sequential keys keep compaction cheap).

pub const VOTE: &[u8] = b"vote";
pub const COMMITTED: &[u8] = b"committed";
pub const PURGED: &[u8] = b"purged";
pub const APPLIED: &[u8] = b"applied";
pub const STATE: &[u8] = b"state";

pub fn log(group: u64, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// `[from, to)` over log indexes of one group; `to = u64::MAX` means "to the end".
pub fn log_range(group: u64, from: u64, to: u64) -> (Vec<u8>, Vec<u8>) {
    let end = if to == u64::MAX { group_bounds(group).1 } else { log(group, to) };
    (log(group, from), end)
}

pub fn meta(group: u64, name: &[u8]) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(name);
    k
}

pub fn ts(group: u64, arrival_ms: i64, index: u64) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    // Arrival times are after 1970, so the sign bit never matters for order.
    k.extend_from_slice(&(arrival_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// All keys of one group: `[group, group + 1)`.
pub fn group_bounds(group: u64) -> (Vec<u8>, Vec<u8>) {
    let from = group.to_be_bytes().to_vec();
    let to = match group.checked_add(1) {
        Some(g) => g.to_be_bytes().to_vec(),
        None => vec![0xff; 9],
    };
    (from, to)
}

pub fn group_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[..8].try_into().expect("keys start with a group id"))
}

/// The log index of a `log` key, or the last 8 bytes of a `ts_index` key.
pub fn index_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[key.len() - 8..].try_into().expect("index suffix"))
}

/// Human-readable key for error messages.
pub fn describe(key: &[u8]) -> String {
    if key.len() >= 16 {
        format!("group {} / {}", group_of(key), index_of(key))
    } else if key.len() >= 8 {
        format!("group {} / {}", group_of(key), String::from_utf8_lossy(&key[8..]))
    } else {
        format!("{key:?}")
    }
}
