//! Cluster metadata: streams, their shards and where each shard's replicas live.
//!
//! Held by a Raft group spanning every node (group 0). Every node applies the same
//! commands in the same order, so each can route any request from its own copy.

pub mod on_demand;
mod reshard;
pub mod scaling;
pub mod settings;
mod state;
pub mod state_machine;

pub use state::{
    parse_shard_id, shard_id, MetaCommand, MetaReply, MetaState, Scaling, ShardMeta, StreamMeta, StreamStatus,
};
pub use state_machine::{MetaStateMachine, MetaView};

/// The metadata group's id; shard groups are numbered from 1.
pub const META_GROUP: u64 = 0;
