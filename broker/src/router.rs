//! Which shard each record of a request goes to. Pure: metadata in, plan out.

use crate::error::Result;
use crate::hashkey::route_key;
use crate::meta::{ShardMeta, StreamMeta};
use crate::raft::RecordInput;

/// Records of one request bound for one shard, with their positions in the request.
pub struct ShardBatch<'a> {
    pub shard: &'a ShardMeta,
    pub positions: Vec<usize>,
    pub records: Vec<RecordInput>,
}

/// Groups records by the open shard owning their hash key, keeping request order inside
/// each group (so one request's records for one key stay in order).
pub fn plan<'a>(
    stream: &'a StreamMeta,
    records: Vec<(RecordInput, Option<String>)>,
) -> Result<Vec<ShardBatch<'a>>> {
    let mut batches: Vec<ShardBatch<'a>> = Vec::new();
    for (pos, (record, explicit)) in records.into_iter().enumerate() {
        let key = route_key(&record.partition_key, explicit.as_deref())?;
        let shard = stream.shard_for(key).ok_or_else(|| {
            crate::error::Error::internal(format!("no open shard of {} owns hash key {key}", stream.name))
        })?;
        match batches.iter_mut().find(|b| b.shard.group_id == shard.group_id) {
            Some(b) => {
                b.positions.push(pos);
                b.records.push(record);
            }
            None => batches.push(ShardBatch { shard, positions: vec![pos], records: vec![record] }),
        }
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashkey::{hash_partition_key, HashKeyRange};
    use crate::meta::{StreamMeta, StreamStatus};

    fn stream(n: u32) -> StreamMeta {
        StreamMeta {
            name: "s".into(),
            status: StreamStatus::Active,
            retention_hours: 24,
            replication: 1,
            limits: Default::default(),
            created_ms: 0,
            scaling: None,
            mode: Default::default(),
            tags: Default::default(),
            consumers: Vec::new(),
            shards: HashKeyRange::split_evenly(n)
                .into_iter()
                .enumerate()
                .map(|(i, range)| ShardMeta {
                    index: i as u32,
                    group_id: 10 + i as u64,
                    range,
                    replicas: vec![1],
                    epoch: 0,
                    ready: true,
                    retiring: Vec::new(),
                    ending_sequence_number: None,
                    closed_ms: None,
                    parents: Vec::new(),
                    pending: false,
                    opened_ms: Some(0),
                })
                .collect(),
        }
    }

    fn rec(key: &str) -> (RecordInput, Option<String>) {
        (RecordInput { partition_key: key.into(), data: key.as_bytes().to_vec().into() }, None)
    }

    #[test]
    fn every_record_lands_in_the_shard_owning_its_hash() {
        let s = stream(4);
        let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        let batches = plan(&s, keys.iter().map(|k| rec(k)).collect()).unwrap();
        let mut seen = 0;
        for b in &batches {
            for (pos, r) in b.positions.iter().zip(&b.records) {
                assert_eq!(r.partition_key, keys[*pos]);
                assert!(b.shard.range.contains(hash_partition_key(&r.partition_key)));
                seen += 1;
            }
            assert!(b.positions.windows(2).all(|w| w[0] < w[1]), "request order kept");
        }
        assert_eq!(seen, 200);
        assert_eq!(batches.len(), 4, "200 keys hit all 4 shards");
    }

    #[test]
    fn explicit_hash_key_overrides_md5() {
        let s = stream(4);
        let last = (
            RecordInput { partition_key: "a".into(), data: Default::default() },
            Some(u128::MAX.to_string()),
        );
        let first =
            (RecordInput { partition_key: "a".into(), data: Default::default() }, Some("0".to_string()));
        let b = plan(&s, vec![last, first]).unwrap();
        assert_eq!(b[0].shard.index, 3);
        assert_eq!(b[1].shard.index, 0);
        let bad =
            (RecordInput { partition_key: "a".into(), data: Default::default() }, Some("x".to_string()));
        assert!(plan(&s, vec![bad]).is_err());
    }
}
