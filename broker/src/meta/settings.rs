//! A stream's settings beside its shards: retention, capacity mode, tags and registered
//! consumers (Kinesis' Increase/DecreaseStreamRetentionPeriod, UpdateStreamMode,
//! AddTagsToStream/RemoveTagsFromStream and Register/DeregisterStreamConsumer).

use super::state::{MetaState, StreamMeta, StreamStatus};
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use serde::{Deserialize, Serialize};

/// Tags one stream may carry (Kinesis' limit).
pub const MAX_TAGS: usize = 50;
/// Consumers registered for enhanced fan-out, per stream (Kinesis' limit).
pub const MAX_CONSUMERS: usize = 20;
/// Shards an ON_DEMAND stream starts with (4 MiB/s of writes, as Kinesis).
pub const ON_DEMAND_SHARDS: u32 = 4;

/// Kinesis' capacity modes: PROVISIONED streams have the shards their owner asks for;
/// ON_DEMAND streams start with four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StreamMode {
    #[default]
    Provisioned,
    OnDemand,
}

impl StreamMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }

    pub fn parse(s: &str) -> Option<StreamMode> {
        match s {
            "PROVISIONED" => Some(StreamMode::Provisioned),
            "ON_DEMAND" => Some(StreamMode::OnDemand),
            _ => None,
        }
    }
}

/// A consumer registered for enhanced fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub name: String,
    pub created_ms: i64,
}

fn account() -> &'static str {
    crate::ACCOUNT_ID
}

impl MetaState {
    /// The stream, if it exists and is ACTIVE (Kinesis changes settings only then).
    fn active_stream(&mut self, name: &str) -> Result<&mut StreamMeta> {
        let s = self.streams.get_mut(name).ok_or_else(|| Error::stream_not_found(name))?;
        if s.status != StreamStatus::Active {
            return Err(Error::in_use(format!(
                "Stream {name} under account {} not ACTIVE, instead in state {}",
                account(),
                s.status.as_str()
            )));
        }
        Ok(s)
    }

    pub(super) fn set_retention(&mut self, stream: &str, hours: u32, increase: bool) -> Result<()> {
        limits::validate_retention_hours(hours)?;
        let s = self.active_stream(stream)?;
        let current = s.retention_hours;
        if increase && hours < current {
            return Err(Error::invalid(format!(
                "Requested retention period ({hours} hours) for stream {stream} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
            )));
        }
        if !increase && hours > current {
            return Err(Error::invalid(format!(
                "Requested retention period ({hours} hours) for stream {stream} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
            )));
        }
        s.retention_hours = hours;
        Ok(())
    }

    pub(super) fn tag(
        &mut self,
        stream: &str,
        add: Vec<(String, String)>,
        remove: Vec<String>,
    ) -> Result<()> {
        let s = self.streams.get_mut(stream).ok_or_else(|| Error::stream_not_found(stream))?;
        let mut tags = s.tags.clone();
        for key in remove {
            tags.remove(&key);
        }
        tags.extend(add);
        if tags.len() > MAX_TAGS {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Failed to add tags to stream {stream} under account {} because a given stream cannot have more than {MAX_TAGS} tags.",
                    account()
                ),
            ));
        }
        s.tags = tags;
        Ok(())
    }

    /// Any status but DELETING: limits do not touch the shards' layout, so a stream being
    /// resharded takes them too.
    pub(super) fn set_limits(&mut self, stream: &str, new: limits::ShardLimits) -> Result<()> {
        limits::validate_shard_limits(&new)?;
        let s = self.streams.get_mut(stream).ok_or_else(|| Error::stream_not_found(stream))?;
        s.limits = new;
        Ok(())
    }

    pub(super) fn set_mode(&mut self, stream: &str, mode: StreamMode) -> Result<()> {
        self.active_stream(stream)?.mode = mode;
        Ok(())
    }

    pub(super) fn register_consumer(&mut self, stream: &str, name: String, now_ms: i64) -> Result<()> {
        let s = self.active_stream(stream)?;
        if s.consumers.iter().any(|c| c.name == name) {
            return Err(Error::in_use(format!(
                "Consumer {name} under stream {stream} under account {} already exists.",
                account()
            )));
        }
        if s.consumers.len() >= MAX_CONSUMERS {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!("Stream {stream} under account {} already has {MAX_CONSUMERS} registered consumers, the limit.", account()),
            ));
        }
        s.consumers.push(Consumer { name, created_ms: now_ms });
        Ok(())
    }

    pub(super) fn deregister_consumer(&mut self, stream: &str, name: &str) -> Result<()> {
        let s = self.streams.get_mut(stream).ok_or_else(|| Error::stream_not_found(stream))?;
        let before = s.consumers.len();
        s.consumers.retain(|c| c.name != name);
        if s.consumers.len() == before {
            return Err(Error::not_found(format!(
                "Consumer {name} under stream {stream} under account {} not found.",
                account()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MetaCommand;

    fn state_with(stream: &str) -> MetaState {
        let mut m = MetaState::default();
        m.apply(MetaCommand::Init { secret: vec![1] }).unwrap();
        m.apply(MetaCommand::CreateStream {
            name: stream.into(),
            shard_count: 1,
            retention_hours: 48,
            replication: 1,
            limits: Default::default(),
            now_ms: 0,
            nodes: vec![1],
            mode: StreamMode::Provisioned,
            tags: vec![],
        })
        .unwrap();
        let group_id = m.streams[stream].shards[0].group_id;
        m.apply(MetaCommand::ShardReady { group_id }).unwrap();
        m
    }

    #[test]
    fn retention_moves_only_in_the_direction_asked() {
        let mut m = state_with("s");
        let inc = |h| MetaCommand::SetRetention { stream: "s".into(), hours: h, increase: true };
        let dec = |h| MetaCommand::SetRetention { stream: "s".into(), hours: h, increase: false };
        assert!(m.apply(inc(24)).unwrap_err().message.contains("can not be shorter"));
        assert!(m.apply(dec(72)).unwrap_err().message.contains("can not be longer"));
        assert_eq!(m.apply(inc(9_000)).unwrap_err().kind, ErrorKind::InvalidArgument);
        m.apply(inc(168)).unwrap();
        assert_eq!(m.streams["s"].retention_hours, 168);
        m.apply(dec(24)).unwrap();
        assert_eq!(m.streams["s"].retention_hours, 24);
    }

    #[test]
    fn tags_are_capped_at_fifty_and_removal_happens_first() {
        let mut m = state_with("s");
        let add = |n: usize| (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect::<Vec<_>>();
        m.apply(MetaCommand::Tag { stream: "s".into(), add: add(50), remove: vec![] }).unwrap();
        let over = m.apply(MetaCommand::Tag {
            stream: "s".into(),
            add: vec![("extra".into(), "".into())],
            remove: vec![],
        });
        assert_eq!(over.unwrap_err().kind, ErrorKind::LimitExceeded);
        assert_eq!(m.streams["s"].tags.len(), 50, "a refused change changes nothing");
        m.apply(MetaCommand::Tag {
            stream: "s".into(),
            add: vec![("extra".into(), "".into())],
            remove: vec!["k0".into()],
        })
        .unwrap();
        assert!(m.streams["s"].tags.contains_key("extra") && !m.streams["s"].tags.contains_key("k0"));
    }

    #[test]
    fn consumers_are_unique_limited_and_removable() {
        let mut m = state_with("s");
        let reg = |n: &str| MetaCommand::RegisterConsumer { stream: "s".into(), name: n.into(), now_ms: 5 };
        m.apply(reg("app")).unwrap();
        assert_eq!(m.apply(reg("app")).unwrap_err().kind, ErrorKind::ResourceInUse);
        for i in 1..MAX_CONSUMERS {
            m.apply(reg(&format!("c{i}"))).unwrap();
        }
        assert_eq!(m.apply(reg("one-too-many")).unwrap_err().kind, ErrorKind::LimitExceeded);
        m.apply(MetaCommand::DeregisterConsumer { stream: "s".into(), name: "app".into() }).unwrap();
        let again = m.apply(MetaCommand::DeregisterConsumer { stream: "s".into(), name: "app".into() });
        assert_eq!(again.unwrap_err().kind, ErrorKind::ResourceNotFound);
    }
}
