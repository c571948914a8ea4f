//! Resharding through the API: split, merge and UpdateShardCount requests, and the
//! children named at a closed shard's end.

use super::{shard_of, Api};
use crate::error::{Error, Result};
use crate::meta::{shard_id, MetaCommand, StreamMeta};
use crate::pb;

/// The shards made from `index` (named at the end of a closed shard).
pub(super) fn child_shards(stream: &StreamMeta, index: u32) -> Vec<pb::ChildShard> {
    stream
        .children_of(index)
        .map(|c| pb::ChildShard {
            shard_id: c.shard_id(),
            parent_shards: c.parents.iter().map(|p| shard_id(*p)).collect(),
            starting_hash_key: c.range.start.to_string(),
            ending_hash_key: c.range.end.to_string(),
        })
        .collect()
}

impl Api {
    pub(super) async fn split(&self, r: pb::SplitShardRequest) -> Result<()> {
        let stream = self.stream(&r.stream_name).await?;
        let shard_index = shard_of(&stream, &r.shard_to_split)?.index;
        let key = crate::hashkey::parse_explicit_hash_key(&r.new_starting_hash_key).map_err(|_| {
            Error::validation(format!(
                "1 validation error detected: Value '{}' at 'newStartingHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{{0,38}})",
                r.new_starting_hash_key
            ))
        })?;
        let nodes = self.node.voters();
        self.node
            .meta_write(MetaCommand::SplitShard {
                stream: stream.name.clone(),
                shard_index,
                new_starting_hash_key: key,
                nodes,
            })
            .await?;
        Ok(())
    }

    pub(super) async fn merge(&self, r: pb::MergeShardsRequest) -> Result<()> {
        let stream = self.stream(&r.stream_name).await?;
        let shard_index = shard_of(&stream, &r.shard_to_merge)?.index;
        let adjacent_index = shard_of(&stream, &r.adjacent_shard_to_merge)?.index;
        let nodes = self.node.voters();
        self.node
            .meta_write(MetaCommand::MergeShards {
                stream: stream.name.clone(),
                shard_index,
                adjacent_index,
                nodes,
            })
            .await?;
        Ok(())
    }

    pub(super) async fn update_shard_count(
        &self,
        r: pb::UpdateShardCountRequest,
    ) -> Result<pb::UpdateShardCountResponse> {
        if !r.scaling_type.is_empty() && r.scaling_type != "UNIFORM_SCALING" {
            return Err(Error::validation(format!(
                "1 validation error detected: Value '{}' at 'scalingType' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]",
                r.scaling_type
            )));
        }
        if r.target_shard_count == 0 {
            return Err(Error::validation(
                "1 validation error detected: Value '0' at 'targetShardCount' failed to satisfy constraint: Member must have value greater than or equal to 1",
            ));
        }
        let stream = self.stream(&r.stream_name).await?;
        let current = stream.shards.iter().filter(|s| s.is_open()).count() as u32;
        let nodes = self.node.voters();
        self.node
            .meta_write(MetaCommand::UpdateShardCount {
                stream: stream.name.clone(),
                target: r.target_shard_count,
                nodes,
            })
            .await?;
        Ok(pb::UpdateShardCountResponse {
            stream_name: stream.name,
            current_shard_count: current,
            target_shard_count: r.target_shard_count,
        })
    }
}
