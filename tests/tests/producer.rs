//! The leader-aware producer of the client library against a real 3-node cluster.

use freshet_tests::freshet_broker::hashkey::{hash_partition_key, HashKeyRange};
use freshet_tests::freshet_broker::pb;
use freshet_tests::freshet_broker::producer::Producer;
use freshet_tests::{put_request, read_all, unlimited, Cluster};
use std::collections::BTreeSet;

fn entry(key: &str) -> pb::PutRecordsEntry {
    pb::PutRecordsEntry {
        partition_key: key.into(),
        data: key.as_bytes().to_vec().into(),
        explicit_hash_key: None,
    }
}

/// Records go straight to their shards' leaders: with the node it was given killed, a
/// producer still writes every record whose shard another node leads (a producer that
/// went through that node could write none), and everything acknowledged is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_shard_leaders_not_through_the_given_node() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("direct", 6, unlimited()).await;
    let leaders = cluster.wait_leaders("direct").await;
    let producer = Producer::new(&cluster.brokers[0].endpoint()).unwrap();
    let mut acked = BTreeSet::new();

    let batch: Vec<_> = (0..300).map(|i| entry(&format!("k{i}"))).collect();
    let r = producer
        .put_records(pb::PutRecordsRequest { stream_name: "direct".into(), records: batch.clone() })
        .await
        .unwrap();
    assert_eq!(r.failed_record_count, 0);
    assert_eq!(r.records.len(), 300);
    let mut last_seq: std::collections::BTreeMap<String, String> = Default::default();
    for (e, result) in batch.iter().zip(&r.records) {
        let shard = shard_of(&e.partition_key);
        assert_eq!(result.shard_id, format!("shardId-{shard:012}"), "results in request order");
        // Within a shard, records are written in request order: sequence numbers rise.
        if let Some(prev) = last_seq.insert(result.shard_id.clone(), result.sequence_number.clone()) {
            assert!(prev < result.sequence_number, "{prev} then {}", result.sequence_number);
        }
        acked.insert(e.partition_key.clone());
    }

    // A batch with one bad record is rejected whole, as by any node.
    let mut bad = (0..20).map(|i| entry(&format!("bad{i}"))).collect::<Vec<_>>();
    bad[7].partition_key.clear();
    let e = producer
        .put_records(pb::PutRecordsRequest { stream_name: "direct".into(), records: bad })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    // Kinesis numbers the members of a list from 1.
    assert!(e.message().contains("records.8.member.partitionKey"), "{}", e.message());

    cluster.kill(1);
    let elsewhere: Vec<_> = (300..600)
        .map(|i| format!("k{i}"))
        .filter(|k| leaders[&format!("shardId-{:012}", shard_of(k))] != 1)
        .collect();
    assert!(elsewhere.len() > 100, "node 1 should not lead every shard: {leaders:?}");
    let batch: Vec<_> = elsewhere.iter().map(|k| entry(k)).collect();
    let r = producer
        .put_records(pb::PutRecordsRequest { stream_name: "direct".into(), records: batch })
        .await
        .expect("shards led by live nodes take writes without the given node");
    assert_eq!(r.failed_record_count, 0, "{:?}", r.records.iter().find(|r| !r.error_code.is_empty()));
    acked.extend(elsewhere.iter().cloned());
    let single = producer
        .put_record(put_request("direct", &elsewhere[0], b"one more"))
        .await
        .expect("a single put to a live leader");
    assert_eq!(single.shard_id, format!("shardId-{:012}", shard_of(&elsewhere[0])));

    cluster.wait_leaders("direct").await;
    let records: Vec<pb::Record> =
        read_all(&cluster.client(2), "direct").await.into_values().flatten().collect();
    for r in &records {
        let same = &r.data[..] == r.partition_key.as_bytes() || &r.data[..] == b"one more";
        assert!(same, "{} holds {:?}", r.partition_key, r.data);
    }
    let read: BTreeSet<String> = records.into_iter().map(|r| r.partition_key).collect();
    assert_eq!(read, acked, "every acknowledged record, and nothing of the rejected batch");
}

fn shard_of(key: &str) -> usize {
    let h = hash_partition_key(key);
    HashKeyRange::split_evenly(6).iter().position(|r| r.contains(h)).unwrap()
}
