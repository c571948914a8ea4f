//! Freshet broker: Kinesis-style streams whose shards are Raft groups (openraft) with
//! their logs in one RocksDB per node.
//!
//! Read top to bottom, a request goes: [`api`] (decode, validate) -> [`router`] (which
//! shard) -> [`node`] (which node leads it; forward if not here) -> [`shard`] (writer,
//! state machine, reader) -> [`raft`] (log store, network) -> [`storage`] (RocksDB).
//! [`meta`] holds the cluster's streams in a Raft group of its own.

pub mod api;
pub mod client;
pub mod error;
pub mod hashkey;
pub mod iterator;
pub mod kpl;
pub mod limits;
pub mod meta;
pub mod node;
pub mod producer;
pub mod raft;
pub mod router;
pub mod sequence;
pub mod shard;
pub mod storage;

/// Generated gRPC types (proto/freshet.proto).
pub mod pb {
    tonic::include_proto!("freshet.v1");
}

/// The account id in Kinesis-style messages and ARNs (one cluster = one account).
pub const ACCOUNT_ID: &str = "000000000000";

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
