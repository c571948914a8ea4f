//! What every Raft group on a node shares: the openraft type configuration, the command
//! and reply types carried by entries, the RocksDB log store and the peer network.
//!
//! Two kinds of group use these: the metadata group ([`crate::meta`]) and one group per
//! shard replica ([`crate::shard`]); each brings its own state machine.

pub mod log_cache;
pub mod log_store;
pub mod network;
pub mod runtime;

use crate::error::Error;
use crate::meta::{MetaCommand, MetaReply};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;
use std::time::Duration;

pub type NodeId = u64;
pub type GroupId = u64;

/// A batch of records proposed by a shard leader as one Raft entry (group commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    /// Stamped by the leader at proposal; the state machine keeps it monotonic per shard.
    pub arrival_ms: i64,
    pub records: Vec<RecordInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordInput {
    pub partition_key: String,
    /// Shared, not copied, between the request, the forwarded piece and the Raft entry;
    /// encoded exactly as a byte vector was.
    pub data: bytes::Bytes,
}

impl RecordInput {
    /// What the record counts against its shard's byte limit (Kinesis counts the key too).
    pub fn metered_size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// The application data of a Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Meta(MetaCommand),
    Append(RecordBatch),
    /// Retention: records in entries below this log index are gone.
    Trim {
        below_index: u64,
    },
    /// Resharding: the shard takes no more records; appends after this entry are refused.
    Close,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Meta(m) => write!(f, "meta {m:?}"),
            Command::Append(b) => write!(f, "append {} records", b.records.len()),
            Command::Trim { below_index } => write!(f, "trim below {below_index}"),
            Command::Close => write!(f, "close"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    None,
    Meta(Result<MetaReply, Error>),
    /// The entry's records got sequence numbers `(log_index, 0..n)` at `arrival_ms`.
    Appended {
        log_index: u64,
        arrival_ms: i64,
    },
    /// The shard is closed: the `Close` entry is at `at`, and this entry's records were
    /// refused (or, for `Close` itself, the shard is closed at `at`).
    Closed {
        at: u64,
    },
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        AsyncRuntime = runtime::CoarseTimers,
);

pub type SnapshotData = Cursor<Vec<u8>>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

pub fn io_err(e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Entries and Raft state are stored with bincode: compact, and record payloads are
/// copied as byte strings.
pub fn encode<T: Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
    bincode::serialize(v).map_err(io_err)
}

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> std::io::Result<T> {
    bincode::deserialize(b).map_err(io_err)
}

/// Raft timing for many groups per node: heartbeats every 250 ms and 1.5-3 s election
/// timeouts keep idle shards cheap (openraft's 50 ms default costs thousands of
/// heartbeats per second with many shards).
#[derive(Debug, Clone, Copy)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming { heartbeat_ms: 250, election_min_ms: 1500, election_max_ms: 3000 }
    }
}

impl RaftTiming {
    /// The lease a shard read relies on: openraft's (`election_max_ms`) less the margin by
    /// which an answered commit-news append may postdate a follower's real contact
    /// (`network::commit_news_only`). Fails at once when stale, for the caller to fall back
    /// to a read index.
    pub fn shard_read_lease(&self) -> openraft::LinearizerOption {
        let lease = Duration::from_millis(self.election_max_ms).saturating_sub(network::COMMIT_NEWS_MARGIN);
        openraft::LinearizerOption::new(Some(lease), false).with_wait_timeout(Duration::ZERO)
    }

    pub fn config(
        &self,
        cluster: &str,
        snapshot_every: u64,
    ) -> anyhow::Result<std::sync::Arc<openraft::Config>> {
        let cfg = openraft::Config {
            cluster_name: cluster.to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: 60_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every),
            max_in_snapshot_log_to_keep: 1_000,
            purge_batch_size: 256,
            max_payload_entries: 64,
            // A restarted leader must not resume its old term. Its unflushed tail may be on a
            // follower, and it would reuse those log ids for different entries; and the committed
            // id is saved lazily, so reads would stop short of acknowledged records. An
            // election after a restart gives a new term whose first entry commits the past.
            enable_leader_restore: Some(false),
            ..Default::default()
        };
        Ok(std::sync::Arc::new(cfg.validate()?))
    }
}
