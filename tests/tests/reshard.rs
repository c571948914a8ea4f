//! Resharding on a live stream: a split closes its parent, opens two children, and loses
//! or reorders no acknowledged record while producers keep writing; so do merges and
//! UpdateShardCount's rounds of both.

use freshet_broker::client::pb;
use freshet_tests::workload::{produce, stop_and_verify, Ledger};
use freshet_tests::{put_request, unlimited, Cluster};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn wait_acked(ledger: &Ledger, at_least: usize) {
    let start = Instant::now();
    while ledger.acked.load(Ordering::Relaxed) < at_least {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "producers stalled at {}",
            ledger.acked.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 3-node cluster with stream "orders" of `shards` shards and 4 producers writing to it,
/// once `acked` records have been acknowledged.
async fn loaded_cluster(
    shards: u32,
    acked: usize,
) -> (Cluster, Arc<Ledger>, Vec<tokio::task::JoinHandle<()>>) {
    let cluster = Cluster::start(3).await;
    cluster.create_stream("orders", shards, unlimited()).await;
    cluster.wait_leaders("orders").await;
    let endpoints: Vec<String> = cluster.brokers.iter().map(|b| b.endpoint()).collect();
    let ledger = Arc::new(Ledger::default());
    let producers = (0..4)
        .map(|p| tokio::spawn(produce(endpoints.clone(), "orders".into(), p, 10, 1_000_000, ledger.clone())))
        .collect();
    wait_acked(&ledger, acked).await;
    (cluster, ledger, producers)
}

/// Waits for the reshard to finish (the stream ACTIVE again).
async fn wait_active(client: &freshet_broker::client::Client) {
    let t0 = Instant::now();
    loop {
        let d = client.describe("orders").await.unwrap();
        if d.status == "ACTIVE" {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the reshard never completed: {d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_under_load_loses_and_reorders_nothing() {
    let (cluster, ledger, producers) = loaded_cluster(2, 1_000).await;

    let client = cluster.any_client();
    let parent = client.describe("orders").await.unwrap().shards[0].clone();
    let (start, end): (u128, u128) =
        (parent.starting_hash_key.parse().unwrap(), parent.ending_hash_key.parse().unwrap());
    let mid = start + (end - start) / 2;
    client
        .api
        .clone()
        .split_shard(pb::SplitShardRequest {
            stream_name: "orders".into(),
            shard_to_split: parent.shard_id.clone(),
            new_starting_hash_key: mid.to_string(),
        })
        .await
        .expect("split");
    assert_eq!(client.describe("orders").await.unwrap().status, "UPDATING");
    wait_active(&client).await;
    // Writes go on, now into the children.
    let acked = ledger.acked.load(Ordering::Relaxed);
    wait_acked(&ledger, acked + 1_000).await;
    stop_and_verify(&cluster, &client, "orders", &ledger, producers, 0).await;

    let d = client.describe("orders").await.unwrap();
    let ids: Vec<&str> = d.shards.iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(
        ids,
        ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"]
    );
    assert!(d.shards[0].ending_sequence_number.is_some(), "the parent is closed");
    assert!(d.shards[1].ending_sequence_number.is_none());
    for (child, (lo, hi)) in d.shards[2..].iter().zip([(start, mid - 1), (mid, end)]) {
        assert_eq!(child.parent_shard_id.as_deref(), Some("shardId-000000000000"));
        assert_eq!(child.adjacent_parent_shard_id, None);
        assert_eq!(
            (child.starting_hash_key.clone(), child.ending_hash_key.clone()),
            (lo.to_string(), hi.to_string())
        );
        assert!(child.starting_sequence_number > *d.shards[0].ending_sequence_number.as_ref().unwrap());
    }
    // Each child took writes; the ledger above proved nothing acknowledged was lost and
    // each key's records (parent first, then child) kept their order.
    {
        let acks = ledger.acks.lock().unwrap();
        for child in ["shardId-000000000002", "shardId-000000000003"] {
            assert!(acks.iter().any(|a| a.shard == child), "no record went to {child}");
        }
    }

    // Reading the parent to its end: no next iterator, and its children named.
    let mut it = client
        .shard_iterator("orders", "shardId-000000000000", pb::IteratorType::TrimHorizon, None, None)
        .await
        .unwrap();
    let last = loop {
        let page = client
            .api
            .clone()
            .get_records(pb::GetRecordsRequest { shard_iterator: it.clone(), limit: Some(10_000) })
            .await
            .unwrap()
            .into_inner();
        match page.next_shard_iterator.clone() {
            Some(next) => it = next,
            None => break page,
        }
    };
    let children: Vec<(&str, Vec<String>)> =
        last.child_shards.iter().map(|c| (c.shard_id.as_str(), c.parent_shards.clone())).collect();
    assert_eq!(
        children,
        [
            ("shardId-000000000002", vec!["shardId-000000000000".to_string()]),
            ("shardId-000000000003", vec!["shardId-000000000000".to_string()])
        ]
    );

    // A subscription to the parent delivers its records, names the children in its last
    // event, and ends.
    let mut events = client
        .api
        .clone()
        .subscribe(pb::SubscribeRequest {
            stream_name: "orders".into(),
            shard_id: "shardId-000000000000".into(),
            iterator_type: pb::IteratorType::TrimHorizon as i32,
            starting_sequence_number: None,
            timestamp_ms: None,
            keep_alive_ms: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut pushed = 0;
    let mut named = Vec::new();
    while let Some(event) =
        tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap()
    {
        pushed += event.records.len();
        named.extend(event.child_shards.into_iter().map(|c| c.shard_id));
    }
    let in_parent = freshet_tests::read_all(&client, "orders").await["shardId-000000000000"].len();
    assert_eq!(pushed, in_parent, "every record of the parent, then the end");
    assert_eq!(named, ["shardId-000000000002", "shardId-000000000003"]);

    // A shard that was split cannot be split again.
    let err = client
        .api
        .clone()
        .split_shard(pb::SplitShardRequest {
            stream_name: "orders".into(),
            shard_to_split: "shardId-000000000000".into(),
            new_starting_hash_key: mid.to_string(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("already been merged or split"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_under_load_loses_and_reorders_nothing() {
    let (cluster, ledger, producers) = loaded_cluster(2, 1_000).await;

    let client = cluster.any_client();
    let merge = |a: &str, b: &str| pb::MergeShardsRequest {
        stream_name: "orders".into(),
        shard_to_merge: a.into(),
        adjacent_shard_to_merge: b.into(),
    };
    client
        .api
        .clone()
        .merge_shards(merge("shardId-000000000001", "shardId-000000000000"))
        .await
        .expect("merge");
    wait_active(&client).await;
    let acked = ledger.acked.load(Ordering::Relaxed);
    wait_acked(&ledger, acked + 1_000).await;
    stop_and_verify(&cluster, &client, "orders", &ledger, producers, 0).await;

    let d = client.describe("orders").await.unwrap();
    assert_eq!(d.shards.len(), 3);
    assert!(d.shards[..2].iter().all(|s| s.ending_sequence_number.is_some()), "both parents closed");
    let child = &d.shards[2];
    assert_eq!(child.shard_id, "shardId-000000000002");
    assert_eq!(child.parent_shard_id.as_deref(), Some("shardId-000000000001"));
    assert_eq!(child.adjacent_parent_shard_id.as_deref(), Some("shardId-000000000000"));
    assert_eq!(
        (child.starting_hash_key.as_str(), child.ending_hash_key.as_str()),
        ("0", &*u128::MAX.to_string())
    );
    assert!(ledger.acks.lock().unwrap().iter().any(|a| a.shard == "shardId-000000000002"));
    // Merged shards cannot be merged again.
    let err = client
        .api
        .clone()
        .merge_shards(merge("shardId-000000000000", "shardId-000000000001"))
        .await
        .unwrap_err();
    assert!(err.message().contains("already been merged or split"), "{err:?}");
}

/// The open shards' hash-key ranges, lowest first.
fn open_ranges(d: &pb::StreamDescription) -> Vec<(u128, u128)> {
    let mut r: Vec<(u128, u128)> = d
        .shards
        .iter()
        .filter(|s| s.ending_sequence_number.is_none())
        .map(|s| (s.starting_hash_key.parse().unwrap(), s.ending_hash_key.parse().unwrap()))
        .collect();
    r.sort();
    r
}

fn even(n: u32) -> Vec<(u128, u128)> {
    freshet_broker::hashkey::HashKeyRange::split_evenly(n).into_iter().map(|r| (r.start, r.end)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_shard_count_up_and_down_under_load_gives_even_shards_and_loses_nothing() {
    let (cluster, ledger, producers) = loaded_cluster(3, 1_000).await;
    let client = cluster.any_client();
    let update = |target| pb::UpdateShardCountRequest {
        stream_name: "orders".into(),
        target_shard_count: target,
        scaling_type: "UNIFORM_SCALING".into(),
    };

    // Kinesis' bounds: at most twice, at least half the open shards; the stream unchanged.
    for (bad, says) in [(7, "scale up over double"), (1, "scale down below half")] {
        let err = client.api.clone().update_shard_count(update(bad)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        assert!(err.message().contains(says), "{err:?}");
    }
    let bad_type = pb::UpdateShardCountRequest { scaling_type: "BIGGER".into(), ..update(4) };
    let err = client.api.clone().update_shard_count(bad_type).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(client.describe("orders").await.unwrap().status, "ACTIVE");

    // 3 -> 5 -> 3: neither is a doubling or a halving, so each takes rounds of splits
    // and merges; the producers keep writing throughout.
    for (from, to) in [(3, 5), (5, 3)] {
        let r = client.api.clone().update_shard_count(update(to)).await.expect("update").into_inner();
        assert_eq!((r.current_shard_count, r.target_shard_count), (from, to));
        assert_eq!(client.describe("orders").await.unwrap().status, "UPDATING");
        wait_active(&client).await;
        let d = client.describe("orders").await.unwrap();
        assert_eq!(open_ranges(&d), even(to), "{d:?}");
        let acked = ledger.acked.load(Ordering::Relaxed);
        wait_acked(&ledger, acked + 500).await;
    }
    stop_and_verify(&cluster, &client, "orders", &ledger, producers, 0).await;

    // Every closed shard names where its keys went; every child sorts after its parents.
    let d = client.describe("orders").await.unwrap();
    let by_id: std::collections::HashMap<&str, &pb::Shard> =
        d.shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    for s in &d.shards {
        for parent in s.parent_shard_id.iter().chain(s.adjacent_parent_shard_id.iter()) {
            let p = by_id[parent.as_str()];
            let end = p.ending_sequence_number.as_ref().expect("a parent is closed");
            assert!(s.starting_sequence_number > *end, "{s:?} after {p:?}");
        }
    }
    let open: Vec<&str> =
        d.shards.iter().filter(|s| s.ending_sequence_number.is_none()).map(|s| s.shard_id.as_str()).collect();
    let acks = ledger.acks.lock().unwrap();
    for id in open {
        assert!(acks.iter().any(|a| a.shard == id), "no record went to {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_survives_sigkill_of_the_parents_leader_midway() {
    split_through_a_crash(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_survives_sigkill_of_every_node_midway() {
    split_through_a_crash(true).await;
}

/// Splits under load and SIGKILLs the parent's leader (or every node) right after the
/// split was accepted: the split completes after the restart and nothing acknowledged is
/// lost or reordered.
async fn split_through_a_crash(every_node: bool) {
    let (mut cluster, ledger, producers) = loaded_cluster(1, 500).await;
    let leader = cluster.wait_leaders("orders").await["shardId-000000000000"];
    let other = (1..=3).find(|n| *n != leader).unwrap();
    let client = cluster.client(other);
    client
        .api
        .clone()
        .split_shard(pb::SplitShardRequest {
            stream_name: "orders".into(),
            shard_to_split: "shardId-000000000000".into(),
            new_starting_hash_key: (1u128 << 127).to_string(),
        })
        .await
        .expect("split");
    // The parent's leader dies while the children are starting or the parent is closing.
    let victims: Vec<u64> = if every_node { vec![1, 2, 3] } else { vec![leader] };
    for id in &victims {
        cluster.kill(*id);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for id in &victims {
        cluster.start_node(*id);
    }
    cluster.wait_ready().await;
    wait_active(&client).await;
    let acked = ledger.acked.load(Ordering::Relaxed);
    wait_acked(&ledger, acked + 500).await;
    stop_and_verify(&cluster, &client, "orders", &ledger, producers, 0).await;
    let d = client.describe("orders").await.unwrap();
    assert_eq!(d.shards.len(), 3);
    assert!(d.shards[0].ending_sequence_number.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_shard_goes_once_its_retention_has_passed() {
    // One retention hour lasts 100 ms here, so the minimum 24 h retention is 2.4 s.
    let cluster = Cluster::start_with(
        3,
        &[("FRESHET_RETENTION_HOUR_MS", "100"), ("FRESHET_RETENTION_CHECK_SECS", "1")],
    )
    .await;
    cluster.create_stream("orders", 1, unlimited()).await;
    cluster.wait_leaders("orders").await;
    let client = cluster.any_client();
    let split = pb::SplitShardRequest {
        stream_name: "orders".into(),
        shard_to_split: "shardId-000000000000".into(),
        new_starting_hash_key: (u128::MAX / 2 + 1).to_string(),
    };
    client.api.clone().split_shard(split).await.expect("split");
    wait_active(&client).await;
    let d = client.describe("orders").await.unwrap();
    assert!(d.shards[0].ending_sequence_number.is_some(), "closed, still listed: {d:?}");
    let parent_group =
        cluster.any_client().api.clone().cluster_status(pb::ClusterStatusRequest {}).await.unwrap();
    let parent_group = parent_group
        .into_inner()
        .groups
        .iter()
        .find(|g| g.stream_name == "orders" && g.shard_id == "shardId-000000000000")
        .map(|g| g.group_id)
        .expect("the parent's group");

    // Within a few retention checks after 2.4 s the parent is gone from the stream...
    let start = Instant::now();
    let d = loop {
        let d = client.describe("orders").await.unwrap();
        if d.shards.len() == 2 {
            break d;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the closed parent stayed: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(start.elapsed() >= Duration::from_millis(1500), "removed before its retention passed");
    let ids: Vec<&str> = d.shards.iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(ids, ["shardId-000000000001", "shardId-000000000002"]);
    assert!(d.shards.iter().all(|s| s.parent_shard_id.as_deref() == Some("shardId-000000000000")));
    // ...can no longer be read...
    let err = client
        .shard_iterator("orders", "shardId-000000000000", pb::IteratorType::TrimHorizon, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // ...and every node has stopped its replica and reclaimed its storage.
    let start = Instant::now();
    loop {
        let status =
            client.api.clone().cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
        let logs_say = (1..=3).all(|n| cluster.log(n).contains("shard replica 0 is no longer placed here"));
        if logs_say && !status.groups.iter().any(|g| g.group_id == parent_group) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "replicas of the expired shard remain\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The children still take writes.
    let put = put_request("orders", "k", b"after");
    client.api.clone().put_record(put).await.expect("the children take writes");
}
