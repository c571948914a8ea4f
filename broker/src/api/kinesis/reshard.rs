//! Kinesis' resharding actions: SplitShard, MergeShards and UpdateShardCount, on the
//! broker's one resharding path (the operator uses it too).

use super::actions::{
    is_decimal, is_name, need, optional_stream_name, stream_arn, Actions, Result, HASH_KEY_PATTERN,
    SHARD_ID_PATTERN,
};
use super::error::KinesisError;
use super::wire::{Input, Value, Violations};
use crate::pb::{self, freshet_server::Freshet};
use tonic::Request;

impl Actions {
    pub(super) async fn split_shard(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let shard = v.required("shardToSplit", input.string("ShardToSplit")?);
        let key = v.required("newStartingHashKey", input.string("NewStartingHashKey")?);
        if let Some(s) = &shard {
            v.pattern("shardToSplit", s, SHARD_ID_PATTERN, is_name);
        }
        if let Some(k) = &key {
            v.pattern("newStartingHashKey", k, HASH_KEY_PATTERN, |k| is_decimal(k, 39));
        }
        v.finish()?;
        let name = need(name)?;
        self.api
            .split_shard(Request::new(pb::SplitShardRequest {
                stream_name: name,
                shard_to_split: shard.unwrap_or_default(),
                new_starting_hash_key: key.unwrap_or_default(),
            }))
            .await?;
        Ok(Value::map([]))
    }

    pub(super) async fn merge_shards(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let a = v.required("shardToMerge", input.string("ShardToMerge")?);
        let b = v.required("adjacentShardToMerge", input.string("AdjacentShardToMerge")?);
        for (field, s) in [("shardToMerge", &a), ("adjacentShardToMerge", &b)] {
            if let Some(s) = s {
                v.pattern(field, s, SHARD_ID_PATTERN, is_name);
            }
        }
        v.finish()?;
        let name = need(name)?;
        self.api
            .merge_shards(Request::new(pb::MergeShardsRequest {
                stream_name: name,
                shard_to_merge: a.unwrap_or_default(),
                adjacent_shard_to_merge: b.unwrap_or_default(),
            }))
            .await?;
        Ok(Value::map([]))
    }

    pub(super) async fn update_shard_count(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let target = v.required("targetShardCount", input.int("TargetShardCount")?);
        let scaling = v.required("scalingType", input.string("ScalingType")?);
        if let Some(t) = target {
            v.range("targetShardCount", t, 1, 100_000);
        }
        if let Some(s) = &scaling {
            v.one_of("scalingType", s, &["UNIFORM_SCALING"]);
        }
        v.finish()?;
        let name = need(name)?;
        // As in Kinesis, only PROVISIONED streams take a shard count; ON_DEMAND ones scale
        // by themselves.
        if self.api.stream_as_committed(&name).await?.mode == crate::meta::settings::StreamMode::OnDemand {
            return Err(KinesisError::invalid_argument(format!(
                "UpdateShardCount is only supported for streams in PROVISIONED mode, and stream {name} is ON_DEMAND: it splits its hot shards by itself (UpdateStreamMode switches it)."
            )));
        }
        let out = self
            .api
            .update_shard_count(Request::new(pb::UpdateShardCountRequest {
                stream_name: name.clone(),
                target_shard_count: target.unwrap_or_default() as u32,
                scaling_type: scaling.unwrap_or_default(),
            }))
            .await?
            .into_inner();
        Ok(Value::map([
            ("StreamName", Value::str(&out.stream_name)),
            ("StreamARN", Value::str(stream_arn(&self.region, &name))),
            ("CurrentShardCount", Value::Int(out.current_shard_count.into())),
            ("TargetShardCount", Value::Int(out.target_shard_count.into())),
        ]))
    }
}
