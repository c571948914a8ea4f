//! The loop that scales ON_DEMAND streams: each shard leader splits its own hot shards
//! (it measures their writes), and the metadata leader brings a stream switched to
//! ON_DEMAND with fewer than 4 open shards up to 4. What to do is decided in
//! `meta::on_demand`; this only measures and asks the metadata group.

use super::Node;
use crate::meta::on_demand::{self, HotShards};
use crate::meta::settings::StreamMode;
use crate::meta::{MetaCommand, StreamStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often rates are looked at: twice per measurement window, so a window is never missed.
const CHECK_EVERY: Duration = Duration::from_secs(crate::shard::load::WINDOW.as_secs() / 2);

impl Node {
    pub(super) async fn on_demand_loop(self: Arc<Self>) {
        let mut hot = HotShards::default();
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if self.meta.is_leader() {
                self.keep_on_demand_floor().await;
            }
            self.split_hot_shards(&mut hot).await;
        }
    }

    /// UpdateShardCount toward 4 open shards for every ACTIVE ON_DEMAND stream with fewer.
    async fn keep_on_demand_floor(&self) {
        let short: Vec<(String, u32)> = self.meta_view.read(|m| {
            m.streams
                .values()
                .filter(|s| s.mode == StreamMode::OnDemand && s.status == StreamStatus::Active)
                .filter_map(|s| {
                    let open = s.shards.iter().filter(|sh| sh.is_open()).count() as u32;
                    on_demand::floor_target(open).map(|t| (s.name.clone(), t))
                })
                .collect()
        });
        for (stream, target) in short {
            tracing::info!(stream, target, "on-demand: scaling up to the starting shard count");
            let cmd = MetaCommand::UpdateShardCount { stream, target, nodes: self.voters() };
            if let Err(e) = self.meta_write(cmd).await {
                tracing::warn!("on-demand: {e}");
            }
        }
    }

    /// Splits, at the middle of its range, every open shard this node leads in an ACTIVE
    /// ON_DEMAND stream that has been hot for the configured window.
    async fn split_hot_shards(&self, hot: &mut HotShards) {
        let now = Instant::now();
        let mut measured = Vec::new();
        let mut splits = Vec::new();
        for replica in self.local_shards() {
            if !replica.raft.is_leader() {
                continue;
            }
            let shard = self.meta_view.read(|m| {
                let s = m.streams.get(&replica.stream)?;
                let shard = s.shard(replica.shard_index)?;
                let eligible =
                    s.mode == StreamMode::OnDemand && shard.is_open() && shard.group_id == replica.group;
                eligible.then(|| (s.status == StreamStatus::Active, s.limits, shard.range))
            });
            let Some((active, limits, range)) = shard else { continue };
            measured.push(replica.group);
            let is_hot = on_demand::is_hot(replica.load.rate(now), &limits);
            if hot.observe(replica.group, is_hot, now, self.config.on_demand_split_after) && active {
                if let Some(at) = on_demand::split_point(range) {
                    splits.push((replica.stream.clone(), replica.shard_index, at));
                }
            }
        }
        hot.keep_only(&measured);
        for (stream, shard_index, at) in splits {
            tracing::info!(stream, shard_index, "on-demand: splitting a hot shard");
            let cmd = MetaCommand::SplitShard {
                stream,
                shard_index,
                new_starting_hash_key: at,
                nodes: self.voters(),
            };
            if let Err(e) = self.meta_write(cmd).await {
                // Another reshard of the stream under way: the shard stays hot and is
                // split on a later check.
                tracing::info!("on-demand: {e}");
            }
        }
    }
}
