//! Kinesis actions on a stream's settings: retention, tags, capacity mode and the
//! consumers registered for enhanced fan-out.

use super::actions::{is_name, need, optional_stream_name, stream_arn, Actions, Result};
use super::error::KinesisError;
use super::token::NextToken;
use super::wire::{Input, Value, Violations};
use crate::meta::settings::{Consumer, StreamMode};
use crate::meta::{MetaCommand, StreamMeta};

const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";

/// `arn:...:stream/<stream>/consumer/<name>:<creation seconds>`, as Kinesis names consumers.
fn consumer_arn(region: &str, stream: &str, c: &Consumer) -> String {
    format!("{}/consumer/{}:{}", stream_arn(region, stream), c.name, c.created_ms / 1000)
}

/// The stream, the consumer's name and its registration time (seconds) inside a
/// consumer ARN.
pub(super) fn parse_consumer_arn(arn: &str) -> Option<(String, String, Option<i64>)> {
    let (stream_part, consumer_part) = arn.split_once("/consumer/")?;
    let stream = stream_part.rsplit_once(":stream/")?.1;
    let (name, created) = match consumer_part.rsplit_once(':') {
        Some((n, secs)) => (n, Some(secs.parse().ok()?)),
        None => (consumer_part, None),
    };
    (is_name(stream) && is_name(name)).then(|| (stream.to_string(), name.to_string(), created))
}

/// The consumer called `name`, registered at `created` (seconds) when an ARN names the
/// time: an ARN from before a consumer was deregistered and registered again under the
/// same name names no consumer, as in Kinesis.
pub(super) fn find_consumer<'a>(
    consumers: &'a [Consumer],
    name: &str,
    created: Option<i64>,
) -> Option<&'a Consumer> {
    consumers.iter().find(|c| c.name == name && created.is_none_or(|s| s == c.created_ms / 1000))
}

fn consumer_not_found(stream: &str, consumer: &str) -> KinesisError {
    KinesisError::from(crate::error::Error::not_found(format!(
        "Consumer {consumer} under stream {stream} under account {} not found.",
        crate::ACCOUNT_ID
    )))
}

fn consumer_value(region: &str, stream: &str, c: &Consumer, with_stream: bool) -> Value {
    Value::map([
        ("ConsumerName", Value::str(&c.name)),
        ("ConsumerARN", Value::str(consumer_arn(region, stream, c))),
        // Registration is one metadata commit: a consumer is usable at once.
        ("ConsumerStatus", Value::str("ACTIVE")),
        ("ConsumerCreationTimestamp", Value::Timestamp(c.created_ms)),
        ("StreamARN", if with_stream { Value::str(stream_arn(region, stream)) } else { Value::Null }),
    ])
}

/// The stream named by a required `StreamARN` (actions that take no `StreamName`).
fn required_stream_arn(input: &mut Input, v: &mut Violations) -> Result<Option<String>> {
    let arn = v.required("streamARN", input.string("StreamARN")?);
    let mut by_arn = Input::new(Value::map([("StreamARN", Value::opt_str(arn))]))?;
    optional_stream_name(&mut by_arn, v)
}

fn tag_key_checks(v: &mut Violations, field: &str, key: &str) {
    v.length(field, key, 1, 128);
}

impl Actions {
    async fn stream_meta(&self, name: &str) -> Result<StreamMeta> {
        Ok(self.api.stream_as_committed(name).await?)
    }

    pub(super) async fn set_retention(&self, mut input: Input, increase: bool) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let hours = v.required("retentionPeriodHours", input.int("RetentionPeriodHours")?);
        if let Some(h) = hours {
            v.range("retentionPeriodHours", h, 1, 1_000_000);
        }
        v.finish()?;
        let hours = hours.unwrap_or_default() as u32;
        self.api.change(MetaCommand::SetRetention { stream: need(name)?, hours, increase }).await?;
        Ok(Value::map([]))
    }

    pub(super) async fn add_tags(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let tags = v.required("tags", input.string_map("Tags")?).unwrap_or_default();
        v.list_length("tags", tags.len(), 1, 200);
        for (k, val) in &tags {
            tag_key_checks(&mut v, "tags.key", k);
            v.length("tags.value", val, 0, 256);
        }
        v.finish()?;
        if tags.len() > 10 {
            return Err(KinesisError::invalid_argument(format!(
                "AddTagsToStream takes at most 10 tags per request; this one has {}.",
                tags.len()
            )));
        }
        self.api.change(MetaCommand::Tag { stream: need(name)?, add: tags, remove: Vec::new() }).await?;
        Ok(Value::map([]))
    }

    pub(super) async fn remove_tags(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let keys = v.required("tagKeys", input.strings("TagKeys")?).unwrap_or_default();
        v.list_length("tagKeys", keys.len(), 1, 50);
        for k in &keys {
            tag_key_checks(&mut v, "tagKeys.member", k);
        }
        v.finish()?;
        self.api.change(MetaCommand::Tag { stream: need(name)?, add: Vec::new(), remove: keys }).await?;
        Ok(Value::map([]))
    }

    pub(super) async fn list_tags(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let start = input.string("ExclusiveStartTagKey")?;
        let limit = input.int("Limit")?;
        if let Some(l) = limit {
            v.range("limit", l, 1, 50);
        }
        if let Some(s) = &start {
            tag_key_checks(&mut v, "exclusiveStartTagKey", s);
        }
        v.finish()?;
        let s = self.stream_meta(&need(name)?).await?;
        let rest: Vec<(&String, &String)> =
            s.tags.iter().filter(|(k, _)| start.as_ref().is_none_or(|st| k.as_str() > st.as_str())).collect();
        let limit = limit.unwrap_or(50) as usize;
        let page = rest
            .iter()
            .take(limit)
            .map(|(k, val)| Value::map([("Key", Value::str(*k)), ("Value", Value::str(*val))]))
            .collect();
        Ok(Value::map([("Tags", Value::List(page)), ("HasMoreTags", Value::Bool(rest.len() > limit))]))
    }

    pub(super) async fn update_stream_mode(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = required_stream_arn(&mut input, &mut v)?;
        let mode = match v.required("streamModeDetails", input.structure("StreamModeDetails")?) {
            Some(mut d) => {
                let m =
                    v.required("streamModeDetails.streamMode", d.string("StreamMode")?).unwrap_or_default();
                v.one_of("streamModeDetails.streamMode", &m, &["PROVISIONED", "ON_DEMAND"]);
                StreamMode::parse(&m)
            }
            None => None,
        };
        v.finish()?;
        let mode = mode.unwrap_or_default();
        self.api.change(MetaCommand::SetMode { stream: need(name)?, mode }).await?;
        Ok(Value::map([]))
    }

    /// The stream and consumer a call names: StreamARN and ConsumerName, or ConsumerARN
    /// (which also names the consumer's registration time).
    #[allow(clippy::type_complexity)]
    fn consumer_target(
        input: &mut Input,
        v: &mut Violations,
    ) -> Result<(Option<String>, Option<String>, Option<i64>)> {
        let name = input.string("ConsumerName")?;
        let arn = input.string("ConsumerARN")?;
        let stream = optional_stream_name(input, v)?;
        if let Some(n) = &name {
            v.length("consumerName", n, 1, 128);
            v.pattern("consumerName", n, NAME_PATTERN, is_name);
        }
        match (arn, stream, name) {
            (Some(a), _, _) => match parse_consumer_arn(&a) {
                Some((s, n, created)) => Ok((Some(s), Some(n), created)),
                None => {
                    v.pattern("consumerARN", &a, "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+", |_| false);
                    Ok((None, None, None))
                }
            },
            (None, Some(s), Some(n)) => Ok((Some(s), Some(n), None)),
            _ => Err(KinesisError::invalid_argument(
                "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
            )),
        }
    }

    pub(super) async fn register_consumer(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let consumer = v.required("consumerName", input.string("ConsumerName")?);
        let stream = required_stream_arn(&mut input, &mut v)?;
        if let Some(n) = &consumer {
            v.length("consumerName", n, 1, 128);
            v.pattern("consumerName", n, NAME_PATTERN, is_name);
        }
        v.finish()?;
        let (stream, consumer) = (need(stream)?, consumer.unwrap_or_default());
        self.api
            .change(MetaCommand::RegisterConsumer {
                stream: stream.clone(),
                name: consumer.clone(),
                now_ms: crate::now_ms(),
            })
            .await?;
        let s = self.stream_meta(&stream).await?;
        let c = s.consumers.iter().find(|c| c.name == consumer).ok_or_else(|| {
            KinesisError::new(
                500,
                "InternalFailureException",
                "the consumer vanished right after registration",
            )
        })?;
        Ok(Value::map([("Consumer", consumer_value(&self.region, &stream, c, false))]))
    }

    pub(super) async fn describe_consumer(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let (stream, consumer, created) = Self::consumer_target(&mut input, &mut v)?;
        v.finish()?;
        let (stream, consumer) = (need(stream)?, consumer.unwrap_or_default());
        let s = self.stream_meta(&stream).await?;
        let c = find_consumer(&s.consumers, &consumer, created)
            .ok_or_else(|| consumer_not_found(&stream, &consumer))?;
        Ok(Value::map([("ConsumerDescription", consumer_value(&self.region, &stream, c, true))]))
    }

    pub(super) async fn list_consumers(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let stream = required_stream_arn(&mut input, &mut v)?;
        let max = input.int("MaxResults")?;
        let token = input.string("NextToken")?;
        if let Some(m) = max {
            v.range("maxResults", m, 1, 10_000);
        }
        v.finish()?;
        let stream = need(stream)?;
        let secret = self.api.secret().await?;
        let after = match token {
            Some(t) => {
                let t = NextToken::decode(&t, &secret, crate::now_ms())?;
                if t.stream != stream {
                    return Err(KinesisError::invalid_argument(format!(
                        "NextToken was issued for stream {}, not {stream}.",
                        t.stream
                    )));
                }
                Some(t.after)
            }
            None => None,
        };
        let s = self.stream_meta(&stream).await?;
        let mut all: Vec<&Consumer> = s.consumers.iter().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let rest: Vec<&Consumer> =
            all.into_iter().filter(|c| after.as_ref().is_none_or(|a| c.name.as_str() > a.as_str())).collect();
        let max = max.unwrap_or(100) as usize;
        let page: Vec<&Consumer> = rest.iter().take(max).copied().collect();
        let next = match (rest.len() > max, page.last()) {
            (true, Some(last)) => Value::str(
                NextToken {
                    stream: stream.clone(),
                    after: last.name.clone(),
                    issued_ms: crate::now_ms(),
                    filter: None,
                }
                .encode(&secret),
            ),
            _ => Value::Null,
        };
        let consumers = page.iter().map(|c| consumer_value(&self.region, &stream, c, false)).collect();
        Ok(Value::map([("Consumers", Value::List(consumers)), ("NextToken", next)]))
    }

    pub(super) async fn deregister_consumer(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let (stream, consumer, created) = Self::consumer_target(&mut input, &mut v)?;
        v.finish()?;
        let (stream, name) = (need(stream)?, consumer.unwrap_or_default());
        if created.is_some()
            && find_consumer(&self.stream_meta(&stream).await?.consumers, &name, created).is_none()
        {
            return Err(consumer_not_found(&stream, &name));
        }
        self.api.change(MetaCommand::DeregisterConsumer { stream, name }).await?;
        Ok(Value::map([]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_arns_round_trip() {
        let c = Consumer { name: "app-1".into(), created_ms: 1_700_000_000_123 };
        let arn = consumer_arn("eu-west-1", "orders", &c);
        assert_eq!(arn, "arn:aws:kinesis:eu-west-1:000000000000:stream/orders/consumer/app-1:1700000000");
        assert_eq!(parse_consumer_arn(&arn), Some(("orders".into(), "app-1".into(), Some(1_700_000_000))));
        let again = Consumer { name: "app-1".into(), created_ms: 1_800_000_000_000 };
        let registered = [again];
        assert!(
            find_consumer(&registered, "app-1", Some(1_700_000_000)).is_none(),
            "an older registration's ARN"
        );
        assert!(find_consumer(&registered, "app-1", Some(1_800_000_000)).is_some());
        assert!(find_consumer(&registered, "app-1", None).is_some(), "by name");
        assert_eq!(parse_consumer_arn("arn:aws:kinesis:x:1:stream/orders"), None);
        assert_eq!(parse_consumer_arn("arn:aws:kinesis:x:1:stream/bad name/consumer/a:1"), None);
    }
}
