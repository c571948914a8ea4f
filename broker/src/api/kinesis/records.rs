//! Kinesis' record actions: PutRecord, PutRecords, GetShardIterator and GetRecords, and
//! the shape a record has in GetRecords and SubscribeToShard.

use super::actions::{
    is_decimal, is_name, need, optional_stream_name, Actions, Result, HASH_KEY_PATTERN, SEQUENCE_PATTERN,
    SHARD_ID_PATTERN,
};
use super::wire::{Format, Input, Value, Violations};
use crate::pb::{self, freshet_server::Freshet};
use tonic::Request;

const ITERATOR_TYPES: &[&str] =
    &["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"];

/// A record as GetRecords and SubscribeToShard return it.
pub(super) fn record_value(r: pb::Record) -> Value {
    Value::map([
        ("SequenceNumber", Value::str(r.sequence_number)),
        ("ApproximateArrivalTimestamp", Value::Timestamp(r.approximate_arrival_timestamp_ms)),
        ("Data", Value::Bytes(r.data.into())),
        ("PartitionKey", Value::str(r.partition_key)),
    ])
}

pub(super) fn child_shard_value(c: &pb::ChildShard) -> Value {
    Value::map([
        ("ShardId", Value::str(&c.shard_id)),
        ("ParentShards", Value::List(c.parent_shards.iter().map(Value::str).collect())),
        (
            "HashKeyRange",
            Value::map([
                ("StartingHashKey", Value::str(&c.starting_hash_key)),
                ("EndingHashKey", Value::str(&c.ending_hash_key)),
            ]),
        ),
    ])
}

impl Actions {
    /// Checks one record's members (PutRecord's or a PutRecords entry's).
    fn record(input: &mut Input, v: &mut Violations) -> Result<pb::PutRecordsEntry> {
        let data_field = input.field("Data");
        let key_field = input.field("PartitionKey");
        let hash_field = input.field("ExplicitHashKey");
        let data = v.required(&data_field, input.blob("Data")?).unwrap_or_default();
        let key = v.required(&key_field, input.string("PartitionKey")?);
        let hash = input.string("ExplicitHashKey")?;
        v.blob_length(&data_field, &data, 0, crate::limits::MAX_RECORD_DATA);
        if let Some(k) = &key {
            v.length(&key_field, k, 1, 256);
        }
        if let Some(h) = &hash {
            v.pattern(&hash_field, h, HASH_KEY_PATTERN, |h| is_decimal(h, 39));
        }
        Ok(pb::PutRecordsEntry {
            partition_key: key.unwrap_or_default(),
            data: data.into(),
            explicit_hash_key: hash,
        })
    }

    pub(super) async fn put_record(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let entry = Self::record(&mut input, &mut v)?;
        if let Some(s) = input.string("SequenceNumberForOrdering")? {
            // Sequence numbers only grow within a shard, so a later put always sorts after.
            v.pattern("sequenceNumberForOrdering", &s, SEQUENCE_PATTERN, |s| is_decimal(s, 129));
        }
        v.finish()?;
        let name = need(name)?;
        let out = self
            .api
            .put_record(Request::new(pb::PutRecordRequest {
                stream_name: name,
                partition_key: entry.partition_key,
                data: entry.data.into(),
                explicit_hash_key: entry.explicit_hash_key,
            }))
            .await?
            .into_inner();
        Ok(Value::map([
            ("ShardId", Value::str(out.shard_id)),
            ("SequenceNumber", Value::str(out.sequence_number)),
            ("EncryptionType", Value::str("NONE")),
        ]))
    }

    pub(super) async fn put_records(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let records = v.required("records", input.structures("Records")?).unwrap_or_default();
        v.list_length("records", records.len(), 1, crate::limits::MAX_PUT_RECORDS_ENTRIES);
        let mut entries = Vec::with_capacity(records.len());
        for mut r in records {
            entries.push(Self::record(&mut r, &mut v)?);
        }
        v.finish()?;
        let name = need(name)?;
        let out = self
            .api
            .put_records(Request::new(pb::PutRecordsRequest { stream_name: name, records: entries }))
            .await?
            .into_inner();
        let results = out
            .records
            .into_iter()
            .map(|r| {
                if r.error_code.is_empty() {
                    Value::map([
                        ("SequenceNumber", Value::str(r.sequence_number)),
                        ("ShardId", Value::str(r.shard_id)),
                    ])
                } else {
                    // Kinesis has two per-record codes; anything but throttling is retryable.
                    let code = if r.error_code == "ProvisionedThroughputExceededException" {
                        r.error_code
                    } else {
                        "InternalFailure".to_string()
                    };
                    Value::map([
                        ("ErrorCode", Value::str(code)),
                        ("ErrorMessage", Value::str(r.error_message)),
                    ])
                }
            })
            .collect();
        Ok(Value::map([
            ("FailedRecordCount", Value::Int(out.failed_record_count.into())),
            ("Records", Value::List(results)),
            ("EncryptionType", Value::str("NONE")),
        ]))
    }

    pub(super) async fn get_shard_iterator(&self, mut input: Input, format: Format) -> Result<Value> {
        let mut v = Violations::default();
        let name = optional_stream_name(&mut input, &mut v)?;
        let shard = v.required("shardId", input.string("ShardId")?);
        let kind = v.required("shardIteratorType", input.string("ShardIteratorType")?);
        let seq = input.string("StartingSequenceNumber")?;
        let ts = input.timestamp("Timestamp", format)?;
        if let Some(s) = &shard {
            v.length("shardId", s, 1, 128);
            v.pattern("shardId", s, SHARD_ID_PATTERN, is_name);
        }
        if let Some(k) = &kind {
            v.one_of("shardIteratorType", k, ITERATOR_TYPES);
        }
        if let Some(s) = &seq {
            v.pattern("startingSequenceNumber", s, SEQUENCE_PATTERN, |s| is_decimal(s, 129));
        }
        v.finish()?;
        let name = need(name)?;
        let kind = pb::IteratorType::from_str_name(&kind.unwrap_or_default())
            .unwrap_or(pb::IteratorType::TrimHorizon);
        let out = self
            .api
            .get_shard_iterator(Request::new(pb::GetShardIteratorRequest {
                stream_name: name,
                shard_id: shard.unwrap_or_default(),
                iterator_type: kind as i32,
                starting_sequence_number: seq,
                timestamp_ms: ts,
            }))
            .await?
            .into_inner();
        Ok(Value::map([("ShardIterator", Value::str(out.shard_iterator))]))
    }

    pub(super) async fn get_records(&self, mut input: Input) -> Result<Value> {
        let mut v = Violations::default();
        let it = v.required("shardIterator", input.string("ShardIterator")?);
        let limit = input.int("Limit")?;
        optional_stream_name(&mut input, &mut v)?;
        if let Some(i) = &it {
            v.length("shardIterator", i, 1, 512);
        }
        if let Some(l) = limit {
            v.range("limit", l, 1, crate::limits::MAX_GET_RECORDS_LIMIT.into());
        }
        v.finish()?;
        let out = self
            .api
            .get_records(Request::new(pb::GetRecordsRequest {
                shard_iterator: it.unwrap_or_default(),
                limit: limit.map(|l| l as u32),
            }))
            .await?
            .into_inner();
        let records = out.records.into_iter().map(record_value).collect();
        let children = if out.child_shards.is_empty() {
            Value::Null
        } else {
            Value::List(out.child_shards.iter().map(child_shard_value).collect())
        };
        Ok(Value::map([
            ("Records", Value::List(records)),
            ("NextShardIterator", Value::opt_str(out.next_shard_iterator)),
            ("MillisBehindLatest", Value::Int(out.millis_behind_latest.into())),
            ("ChildShards", children),
        ]))
    }
}
