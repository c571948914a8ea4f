//! Kinesis actions: each takes the request's members, checks them the way Kinesis'
//! model does (all violations at once), runs the same operation the gRPC API runs, and
//! shapes the answer as Kinesis does.
//!
//! Here: the dispatch, the checks every action shares, and the stream actions (create,
//! delete, describe, list). Records are in `records.rs`, resharding in `reshard.rs`,
//! settings and consumers in `settings.rs`, SubscribeToShard in `subscribe.rs`.

use super::error::KinesisError;
use super::token::NextToken;
use super::wire::{Format, Input, Value, Violations};
use crate::api::grpc::Api;
use crate::pb::{self, freshet_server::Freshet};
use tonic::Request;

pub(super) type Result<T> = std::result::Result<T, KinesisError>;

/// Actions in Kinesis' API that Freshet does not serve yet: answered with an error that
/// names them rather than "unknown".
const NOT_YET: &[&str] = &[
    "DeleteResourcePolicy",
    "DescribeAccountSettings",
    "DisableEnhancedMonitoring",
    "EnableEnhancedMonitoring",
    "GetResourcePolicy",
    "ListTagsForResource",
    "PutResourcePolicy",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "TagResource",
    "UntagResource",
    "UpdateAccountSettings",
    "UpdateMaxRecordSize",
    "UpdateStreamWarmThroughput",
];

pub const STREAM_NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
pub(super) const SHARD_ID_PATTERN: &str = "[a-zA-Z0-9_.-]+";
pub(super) const SEQUENCE_PATTERN: &str = "0|([1-9]\\d{0,128})";
pub(super) const HASH_KEY_PATTERN: &str = "0|([1-9]\\d{0,38})";
const SHARD_FILTER_TYPES: &[&str] = &[
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
];

pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub(super) fn is_decimal(s: &str, max_digits: usize) -> bool {
    s == "0"
        || (!s.is_empty()
            && !s.starts_with('0')
            && s.len() <= max_digits
            && s.bytes().all(|b| b.is_ascii_digit()))
}

/// The ARN Kinesis gives a stream.
pub fn stream_arn(region: &str, name: &str) -> String {
    format!("arn:aws:kinesis:{region}:{}:stream/{name}", crate::ACCOUNT_ID)
}

/// The stream name from `StreamName` or `StreamARN` (data-plane calls take either; newer
/// SDKs and the KPL send only the ARN); `None` when neither is given.
pub(super) fn optional_stream_name(input: &mut Input, v: &mut Violations) -> Result<Option<String>> {
    let name = input.string("StreamName")?;
    let arn = input.string("StreamARN")?;
    if let Some(n) = &name {
        v.length("streamName", n, 1, 128);
        v.pattern("streamName", n, STREAM_NAME_PATTERN, is_name);
    }
    let from_arn = match &arn {
        Some(a) => match a.strip_prefix("arn:").and_then(|rest| rest.rsplit_once(":stream/")) {
            Some((_, n)) if is_name(n) && n.len() <= 128 => Some(n.to_string()),
            _ => {
                v.pattern("streamARN", a, "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+", |_| false);
                Some(String::new())
            }
        },
        None => None,
    };
    match (name, from_arn) {
        (Some(n), Some(a)) if !a.is_empty() && n != a => Err(KinesisError::invalid_argument(format!(
            "StreamName {n} and StreamARN {} name different streams.",
            arn.unwrap_or_default()
        ))),
        (Some(n), _) => Ok(Some(n)),
        (None, a) => Ok(a),
    }
}

/// The stream a call needs, once its members have passed validation.
pub(super) fn need(name: Option<String>) -> Result<String> {
    name.ok_or_else(|| KinesisError::invalid_argument("Either StreamName or StreamARN should be provided."))
}

fn shard_value(s: &pb::Shard) -> Value {
    Value::map([
        ("ShardId", Value::str(&s.shard_id)),
        ("ParentShardId", Value::opt_str(s.parent_shard_id.clone())),
        ("AdjacentParentShardId", Value::opt_str(s.adjacent_parent_shard_id.clone())),
        (
            "HashKeyRange",
            Value::map([
                ("StartingHashKey", Value::str(&s.starting_hash_key)),
                ("EndingHashKey", Value::str(&s.ending_hash_key)),
            ]),
        ),
        (
            "SequenceNumberRange",
            Value::map([
                ("StartingSequenceNumber", Value::str(&s.starting_sequence_number)),
                ("EndingSequenceNumber", Value::opt_str(s.ending_sequence_number.clone())),
            ]),
        ),
    ])
}

pub(super) fn mode_details(mode: &str) -> Value {
    Value::map([("StreamMode", Value::str(if mode.is_empty() { "PROVISIONED" } else { mode }))])
}

fn no_monitoring() -> Value {
    Value::List(vec![Value::map([("ShardLevelMetrics", Value::List(Vec::new()))])])
}

/// One node's Kinesis endpoint: the gRPC API's operations behind Kinesis' shapes.
pub struct Actions {
    pub api: Api,
    pub region: String,
    /// When set, every request must carry a valid SigV4 signature by one of these keys.
    pub credentials: Option<super::Credentials>,
    /// How long a request's body may take to arrive.
    pub read_timeout: std::time::Duration,
}

impl Actions {
    pub async fn run(&self, action: &str, format: Format, input: Input) -> Result<Value> {
        match action {
            "CreateStream" => self.create_stream(input).await,
            "DeleteStream" => self.delete_stream(input).await,
            "DescribeStream" => self.describe_stream(input).await,
            "DescribeStreamSummary" => self.describe_stream_summary(input).await,
            "ListStreams" => self.list_streams(input).await,
            "ListShards" => self.list_shards(input, format).await,
            "DescribeLimits" => self.describe_limits().await,
            "PutRecord" => self.put_record(input).await,
            "PutRecords" => self.put_records(input).await,
            "GetShardIterator" => self.get_shard_iterator(input, format).await,
            "GetRecords" => self.get_records(input).await,
            "SplitShard" => self.split_shard(input).await,
            "MergeShards" => self.merge_shards(input).await,
            "UpdateShardCount" => self.update_shard_count(input).await,
            "IncreaseStreamRetentionPeriod" => self.set_retention(input, true).await,
            "DecreaseStreamRetentionPeriod" => self.set_retention(input, false).await,
            "AddTagsToStream" => self.add_tags(input).await,
            "RemoveTagsFromStream" => self.remove_tags(input).await,
            "ListTagsForStream" => self.list_tags(input).await,
            "UpdateStreamMode" => self.update_stream_mode(input).await,
            "RegisterStreamConsumer" => self.register_consumer(input).await,
            "DescribeStreamConsumer" => self.describe_consumer(input).await,
            "ListStreamConsumers" => self.list_consumers(input).await,
            "DeregisterStreamConsumer" => self.deregister_consumer(input).await,
            a if NOT_YET.contains(&a) => Err(KinesisError::unknown_operation(format!(
                "Freshet does not implement the Kinesis action {a} yet."
            ))),
            a => Err(KinesisError::unknown_operation(format!("Unknown Kinesis action {a}."))),
        }
    }

    async fn describe(&self, name: String) -> Result<pb::StreamDescription> {
        Ok(self
            .api
            .describe_stream(Request::new(pb::DescribeStreamRequest { stream_name: name }))
            .await?
            .into_inner())
    }

    async fn create_stream(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = v.required("streamName", input.string("StreamName")?);
        let count = input.int("ShardCount")?;
        let mode = match input.structure("StreamModeDetails")? {
            Some(mut d) => {
                let m = v.required("streamModeDetails.streamMode", d.string("StreamMode")?);
                if let Some(m) = &m {
                    v.one_of("streamModeDetails.streamMode", m, &["PROVISIONED", "ON_DEMAND"]);
                }
                m
            }
            None => None,
        };
        let tags = input.string_map("Tags")?.unwrap_or_default();
        if let Some(n) = &name {
            v.length("streamName", n, 1, 128);
            v.pattern("streamName", n, STREAM_NAME_PATTERN, is_name);
        }
        if let Some(c) = count {
            v.range("shardCount", c, 1, 100_000);
        }
        v.finish()?;
        let on_demand = mode.as_deref() == Some("ON_DEMAND");
        match (on_demand, count) {
            (false, None) => {
                return Err(KinesisError::invalid_argument(
                    "ShardCount is required for a PROVISIONED stream.",
                ))
            }
            (true, Some(_)) => {
                return Err(KinesisError::invalid_argument(
                    "An ON_DEMAND stream starts with 4 shards and scales by itself: leave ShardCount out.",
                ))
            }
            _ => {}
        }
        self.api
            .create_stream(Request::new(pb::CreateStreamRequest {
                stream_name: name.unwrap_or_default(),
                shard_count: count.unwrap_or(0) as u32,
                stream_mode: mode.unwrap_or_default(),
                tags: tags.into_iter().collect(),
                ..Default::default()
            }))
            .await?;
        Ok(Value::map([]))
    }

    async fn delete_stream(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let enforce = input.bool("EnforceConsumerDeletion")?.unwrap_or(false);
        v.finish()?;
        let name = need(name)?;
        if !enforce && !self.api.stream_as_committed(&name).await?.consumers.is_empty() {
            return Err(crate::error::Error::in_use(format!(
                "Stream {name} under account {} has registered consumers: deregister them first, or delete with EnforceConsumerDeletion.",
                crate::ACCOUNT_ID
            ))
            .into());
        }
        self.api.delete_stream(Request::new(pb::DeleteStreamRequest { stream_name: name })).await?;
        Ok(Value::map([]))
    }

    async fn describe_stream(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let limit = input.int("Limit")?;
        let start = input.string("ExclusiveStartShardId")?;
        if let Some(l) = limit {
            v.range("limit", l, 1, 10_000);
        }
        if let Some(s) = &start {
            v.length("exclusiveStartShardId", s, 1, 128);
            v.pattern("exclusiveStartShardId", s, SHARD_ID_PATTERN, is_name);
        }
        v.finish()?;
        let d = self.describe(need(name)?).await?;
        let limit = limit.unwrap_or(100) as usize;
        let after: Vec<&pb::Shard> = d
            .shards
            .iter()
            .filter(|s| start.as_ref().is_none_or(|st| s.shard_id.as_str() > st.as_str()))
            .collect();
        let page: Vec<Value> = after.iter().take(limit).map(|s| shard_value(s)).collect();
        Ok(Value::map([(
            "StreamDescription",
            Value::map([
                ("StreamName", Value::str(&d.stream_name)),
                ("StreamARN", Value::str(stream_arn(&self.region, &d.stream_name))),
                ("StreamStatus", Value::str(&d.status)),
                ("StreamModeDetails", mode_details(&d.stream_mode)),
                ("Shards", Value::List(page)),
                ("HasMoreShards", Value::Bool(after.len() > limit)),
                ("RetentionPeriodHours", Value::Int(d.retention_hours.into())),
                ("StreamCreationTimestamp", Value::Timestamp(d.created_at_ms)),
                ("EnhancedMonitoring", no_monitoring()),
                ("EncryptionType", Value::str("NONE")),
            ]),
        )]))
    }

    async fn describe_stream_summary(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        v.finish()?;
        let d = self.describe(need(name)?).await?;
        let open = d.shards.iter().filter(|s| s.ending_sequence_number.is_none()).count();
        Ok(Value::map([(
            "StreamDescriptionSummary",
            Value::map([
                ("StreamName", Value::str(&d.stream_name)),
                ("StreamARN", Value::str(stream_arn(&self.region, &d.stream_name))),
                ("StreamStatus", Value::str(&d.status)),
                ("StreamModeDetails", mode_details(&d.stream_mode)),
                ("RetentionPeriodHours", Value::Int(d.retention_hours.into())),
                ("StreamCreationTimestamp", Value::Timestamp(d.created_at_ms)),
                ("EnhancedMonitoring", no_monitoring()),
                ("EncryptionType", Value::str("NONE")),
                ("OpenShardCount", Value::Int(open as i128)),
                ("ConsumerCount", Value::Int(d.consumer_count.into())),
            ]),
        )]))
    }

    async fn list_streams(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let limit = input.int("Limit")?;
        let start = input.string("ExclusiveStartStreamName")?;
        let token = input.string("NextToken")?;
        if let Some(l) = limit {
            v.range("limit", l, 1, 10_000);
        }
        if let Some(s) = &start {
            v.length("exclusiveStartStreamName", s, 1, 128);
            v.pattern("exclusiveStartStreamName", s, STREAM_NAME_PATTERN, is_name);
        }
        if let Some(t) = &token {
            v.length("nextToken", t, 1, 1048576);
        }
        v.finish()?;
        let secret = self.api.secret().await?;
        let after = match &token {
            Some(t) => Some(NextToken::decode(t, &secret, crate::now_ms())?.after),
            None => start,
        };
        let names =
            self.api.list_streams(Request::new(pb::ListStreamsRequest {})).await?.into_inner().stream_names;
        let limit = limit.unwrap_or(100) as usize;
        let rest: Vec<String> =
            names.into_iter().filter(|n| after.as_ref().is_none_or(|a| n.as_str() > a.as_str())).collect();
        let page: Vec<String> = rest.iter().take(limit).cloned().collect();
        let more = rest.len() > limit;
        let mut summaries = Vec::new();
        for name in &page {
            // A stream deleted between the listing and this look is left out.
            if let Ok(d) = self.describe(name.clone()).await {
                summaries.push(Value::map([
                    ("StreamName", Value::str(&d.stream_name)),
                    ("StreamARN", Value::str(stream_arn(&self.region, &d.stream_name))),
                    ("StreamStatus", Value::str(&d.status)),
                    ("StreamModeDetails", mode_details(&d.stream_mode)),
                    ("StreamCreationTimestamp", Value::Timestamp(d.created_at_ms)),
                ]));
            }
        }
        let next = match (more, page.last()) {
            (true, Some(last)) => Value::str(
                NextToken {
                    stream: String::new(),
                    after: last.clone(),
                    issued_ms: crate::now_ms(),
                    filter: None,
                }
                .encode(&secret),
            ),
            _ => Value::Null,
        };
        Ok(Value::map([
            ("StreamNames", Value::List(page.into_iter().map(Value::Str).collect())),
            ("HasMoreStreams", Value::Bool(more)),
            ("NextToken", next),
            ("StreamSummaries", Value::List(summaries)),
        ]))
    }

    async fn list_shards(&self, mut input: Input, format: Format) -> Result<Value> {
        let mut v = Violations::default();
        let token = input.string("NextToken")?;
        let name = optional_stream_name(&mut input, &mut v)?;
        let max = input.int("MaxResults")?;
        let start = input.string("ExclusiveStartShardId")?;
        input.timestamp("StreamCreationTimestamp", format)?;
        let filter = match input.structure("ShardFilter")? {
            Some(mut f) => {
                let kind = v.required("shardFilter.type", f.string("Type")?).unwrap_or_default();
                v.one_of("shardFilter.type", &kind, SHARD_FILTER_TYPES);
                Some(ShardFilter {
                    kind,
                    shard_id: f.string("ShardId")?,
                    timestamp_ms: f.timestamp("Timestamp", format)?,
                })
            }
            None => None,
        };
        if let Some(m) = max {
            v.range("maxResults", m, 1, 10_000);
        }
        if let Some(s) = &start {
            v.length("exclusiveStartShardId", s, 1, 128);
            v.pattern("exclusiveStartShardId", s, SHARD_ID_PATTERN, is_name);
        }
        v.finish()?;
        let secret = self.api.secret().await?;
        let (name, after, filter) = match token {
            // The token names the stream, the position and the filter. Kinesis refuses a
            // StreamName beside it; Freshet accepts one naming the same stream, as boto3's
            // ListShards paginator sends both.
            Some(t) => {
                let t = NextToken::decode(&t, &secret, crate::now_ms())?;
                if name.as_ref().is_some_and(|n| *n != t.stream) {
                    return Err(KinesisError::invalid_argument(
                        "NextToken and StreamName cannot be provided together.",
                    ));
                }
                // Likewise a paginator sends the first page's ShardFilter again: it must
                // be the token's. ExclusiveStartShardId is the token's own position.
                if filter.as_ref().is_some_and(|f| Some(f) != t.filter.as_ref()) {
                    return Err(KinesisError::invalid_argument(
                        "NextToken and a different ShardFilter cannot be provided together.",
                    ));
                }
                (t.stream, Some(t.after), t.filter)
            }
            None => {
                let name = name.ok_or_else(|| {
                    KinesisError::invalid_argument(
                        "Either NextToken or StreamName or StreamARN should be provided.",
                    )
                })?;
                (name, start, filter)
            }
        };
        if let Some(f) = &filter {
            f.check()?;
        }
        let d = self.describe(name.clone()).await?;
        let horizon = (crate::now_ms() - i64::from(d.retention_hours) * 3_600_000).max(d.created_at_ms);
        let shards: Vec<&pb::Shard> = d
            .shards
            .iter()
            .filter(|s| after.as_ref().is_none_or(|a| s.shard_id.as_str() > a.as_str()))
            .filter(|s| filter.as_ref().is_none_or(|f| f.admits(s, horizon)))
            .collect();
        let max = max.unwrap_or(1_000) as usize;
        let page: Vec<&pb::Shard> = shards.iter().take(max).copied().collect();
        let next = match (shards.len() > max, page.last()) {
            (true, Some(last)) => Value::str(
                NextToken { stream: name, after: last.shard_id.clone(), issued_ms: crate::now_ms(), filter }
                    .encode(&secret),
            ),
            _ => Value::Null,
        };
        Ok(Value::map([
            ("Shards", Value::List(page.into_iter().map(shard_value).collect())),
            ("NextToken", next),
        ]))
    }

    async fn describe_limits(&self) -> Result<Value> {
        let (open, on_demand) = self.api.shard_counts().await?;
        Ok(Value::map([
            ("ShardLimit", Value::Int(crate::limits::MAX_SHARDS_PER_STREAM.into())),
            ("OpenShardCount", Value::Int(open.into())),
            ("OnDemandStreamCount", Value::Int(on_demand.into())),
            ("OnDemandStreamCountLimit", Value::Int(50)),
        ]))
    }
}

/// ListShards' `ShardFilter`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardFilter {
    kind: String,
    shard_id: Option<String>,
    timestamp_ms: Option<i64>,
}

impl ShardFilter {
    /// Checks the members each filter type needs.
    fn check(&self) -> Result<()> {
        match self.kind.as_str() {
            "AFTER_SHARD_ID" if self.shard_id.is_none() => {
                Err(KinesisError::invalid_argument("ShardFilter of type AFTER_SHARD_ID needs a ShardId."))
            }
            "AT_TIMESTAMP" | "FROM_TIMESTAMP" if self.timestamp_ms.is_none() => {
                Err(KinesisError::invalid_argument(format!(
                    "ShardFilter of type {} needs a Timestamp.",
                    self.kind
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether ListShards lists `s`; `horizon_ms` is the stream's trim horizon (now minus
    /// retention, or its creation if younger).
    fn admits(&self, s: &pb::Shard, horizon_ms: i64) -> bool {
        let open = s.ending_sequence_number.is_none();
        // Open at `t`: opened by then and not closed before.
        let open_at =
            |t: i64| s.opened_at_ms.is_some_and(|o| o <= t) && s.closed_at_ms.is_none_or(|c| c >= t);
        let open_from = |t: i64| s.closed_at_ms.is_none_or(|c| c >= t);
        match self.kind.as_str() {
            "AFTER_SHARD_ID" => self.shard_id.as_ref().is_none_or(|id| s.shard_id.as_str() > id.as_str()),
            "AT_LATEST" => open,
            "AT_TRIM_HORIZON" => open_at(horizon_ms),
            "AT_TIMESTAMP" => open_at(self.timestamp_ms.unwrap_or(0)),
            "FROM_TIMESTAMP" => open_from(self.timestamp_ms.unwrap_or(0)),
            // FROM_TRIM_HORIZON: every shard still held (closed ones go once expired).
            _ => true,
        }
    }
}
