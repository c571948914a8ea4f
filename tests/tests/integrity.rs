//! A value corrupted on disk is detected by its checksum and reported, never served: the
//! damaged replica stays down (and so never leads) while the healthy majority serves.

use freshet_tests::freshet_broker::pb::{self, IteratorType};
use freshet_tests::freshet_broker::sequence::SequenceNumber;
use freshet_tests::freshet_broker::storage::{keys, Store, CF_LOG};
use freshet_tests::{put_request, read_all, unlimited, Cluster};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_replica_is_reported_and_never_serves() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("s", 1, unlimited()).await;
    let mut api = cluster.client(1).api.clone();
    let mut seqs = Vec::new();
    for i in 0..200 {
        let r = api
            .put_record(put_request("s", &format!("k{i}"), format!("record {i}")))
            .await
            .unwrap()
            .into_inner();
        seqs.push(r.sequence_number);
    }
    let status = api.cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
    let group = status.groups.iter().find(|g| g.stream_name == "s").unwrap().group_id;
    let victim = SequenceNumber::parse(&seqs[10]).unwrap().log_index;
    cluster.stop(2);

    // Flip one byte of node 2's copy of the entry holding record 10.
    {
        let store = Store::open(&cluster.brokers[1].data.join("rocksdb")).unwrap();
        let db = store.db();
        let cf = db.cf_handle(CF_LOG).unwrap();
        let key = keys::log(group, victim);
        let mut raw = db.get_cf(cf, &key).unwrap().expect("entry exists");
        let i = raw.len() - 3;
        raw[i] ^= 0x20;
        db.put_cf(cf, &key, raw).unwrap();
    }
    cluster.start_node(2);
    cluster.wait_ready().await;

    // Node 2 reports its replica as failed, naming the checksum, and does not lead.
    let start = std::time::Instant::now();
    let failed = loop {
        let s = api.cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
        let g = s.groups.into_iter().find(|g| g.group_id == group).unwrap();
        if let Some(r) = g.replicas.iter().find(|r| r.node == 2 && r.state.starts_with("Failed")) {
            break r.state.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "corruption not reported\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failed.contains("checksum mismatch"), "{failed}");
    assert_ne!(cluster.wait_leaders("s").await["shardId-000000000000"], 2, "a corrupt replica must not lead");

    // Every record is served intact through node 2 (from the healthy replicas), and the
    // shard takes writes.
    let read = read_all(&cluster.client(2), "s").await;
    let data: Vec<String> =
        read["shardId-000000000000"].iter().map(|r| String::from_utf8(r.data.to_vec()).unwrap()).collect();
    assert_eq!(data, (0..200).map(|i| format!("record {i}")).collect::<Vec<_>>());
    let r =
        cluster.client(2).api.clone().put_record(put_request("s", "k", b"after")).await.unwrap().into_inner();
    let client = cluster.client(3);
    let it = client
        .shard_iterator(
            "s",
            "shardId-000000000000",
            IteratorType::AtSequenceNumber,
            Some(r.sequence_number),
            None,
        )
        .await
        .unwrap();
    assert_eq!(client.read_to_end(it).await.unwrap()[0].data, &b"after"[..]);
    assert!(!cluster.log(2).contains("panicked"));
}
