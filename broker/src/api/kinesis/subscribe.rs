//! SubscribeToShard (enhanced fan-out): records pushed as they commit, framed as an AWS
//! event stream (`application/vnd.amazon.eventstream`), for up to 5 minutes per call.

use super::actions::{Actions, Result};
use super::error::KinesisError;
use super::settings::{find_consumer, parse_consumer_arn};
use super::wire::{encode, Format, Input, Value, Violations};
use crate::pb::{self, freshet_server::Freshet};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::time::Duration;
use tonic::Request;

/// How long one subscription lasts, as in Kinesis; the consumer then subscribes again
/// from the last ContinuationSequenceNumber.
pub const SUBSCRIPTION: Duration = Duration::from_secs(300);
/// An idle subscription gets an event without records this often, as from Kinesis,
/// naming where to resume.
const KEEP_ALIVE_MS: u32 = 5_000;

const START_TYPES: &[&str] =
    &["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"];

fn frame(headers: Vec<(&'static str, &'static str)>, payload: Vec<u8>) -> Bytes {
    let headers =
        headers.into_iter().map(|(k, v)| Header::new(k, HeaderValue::String(v.into()))).collect::<Vec<_>>();
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&Message::new_from_parts(headers, payload), &mut out)
        .expect("event-stream frames of this size always encode");
    Bytes::from(out)
}

fn event(event_type: &'static str, format: Format, payload: &Value) -> Bytes {
    frame(
        vec![
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", format.content_type()),
        ],
        encode(format, payload),
    )
}

fn exception(e: &KinesisError, format: Format) -> Bytes {
    frame(
        vec![
            (":message-type", "exception"),
            (":exception-type", e.kind),
            (":content-type", format.content_type()),
        ],
        encode(format, &Value::map([("message", Value::str(&e.message))])),
    )
}

fn shard_event(e: pb::SubscribeEvent) -> Value {
    let records = e.records.into_iter().map(super::records::record_value).collect();
    let children = e.child_shards.iter().map(super::records::child_shard_value).collect::<Vec<_>>();
    Value::map([
        ("Records", Value::List(records)),
        // Left out at a closed shard's end, as Kinesis does (KCL checks for it).
        ("ContinuationSequenceNumber", Value::opt_str(e.continuation_sequence_number)),
        ("MillisBehindLatest", Value::Int(e.millis_behind_latest.into())),
        ("ChildShards", if children.is_empty() { Value::Null } else { Value::List(children) }),
    ])
}

impl Actions {
    /// Checks the call and opens the subscription; the frames follow as a stream.
    pub(super) async fn subscribe_to_shard(
        &self,
        mut input: Input,
        format: Format,
    ) -> Result<impl Stream<Item = Bytes> + Send + 'static> {
        let mut v = Violations::default();
        let arn = v.required("consumerARN", input.string("ConsumerARN")?);
        let shard = v.required("shardId", input.string("ShardId")?);
        let start = v.required("startingPosition", input.structure("StartingPosition")?);
        let (kind, seq, ts) = match start {
            Some(mut p) => {
                let kind = v.required("startingPosition.type", p.string("Type")?).unwrap_or_default();
                v.one_of("startingPosition.type", &kind, START_TYPES);
                (kind, p.string("SequenceNumber")?, p.timestamp("Timestamp", format)?)
            }
            None => (String::new(), None, None),
        };
        v.finish()?;
        let arn = arn.unwrap_or_default();
        let (stream, consumer, created) = parse_consumer_arn(&arn)
            .ok_or_else(|| KinesisError::invalid_argument(format!("{arn} is not a consumer ARN.")))?;
        let meta = self.api.stream_as_committed(&stream).await?;
        if find_consumer(&meta.consumers, &consumer, created).is_none() {
            return Err(crate::error::Error::not_found(format!(
                "Consumer {consumer} under stream {stream} under account {} not found.",
                crate::ACCOUNT_ID
            ))
            .into());
        }
        let kind = pb::IteratorType::from_str_name(&kind).unwrap_or(pb::IteratorType::Latest);
        let events = self
            .api
            .subscribe(Request::new(pb::SubscribeRequest {
                stream_name: stream,
                shard_id: shard.unwrap_or_default(),
                iterator_type: kind as i32,
                starting_sequence_number: seq,
                timestamp_ms: ts,
                keep_alive_ms: Some(KEEP_ALIVE_MS),
            }))
            .await?
            .into_inner();
        let first = futures::stream::once(async move { event("initial-response", format, &Value::map([])) });
        // An exception ends the subscription; so does its five minutes passing.
        let rest = events.take_until(tokio::time::sleep(SUBSCRIPTION)).scan(false, move |ended, e| {
            let out = match (*ended, e) {
                (true, _) => None,
                (false, Ok(e)) => Some(event("SubscribeToShardEvent", format, &shard_event(e))),
                (false, Err(status)) => {
                    *ended = true;
                    Some(exception(&KinesisError::from(status), format))
                }
            };
            futures::future::ready(out)
        });
        Ok(first.chain(rest))
    }
}
