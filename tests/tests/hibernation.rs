//! Idle shard groups sleep (no heartbeats, no timers) and lose nothing by it: a write
//! wakes them, subscribers on sleeping replicas still get new records, a sleeping group
//! whose leader's node dies elects a successor, and a restarted node takes no leadership.

use freshet_broker::client::{pb, Client};
use freshet_tests::{put_request, read_all, unlimited, Cluster};
use std::time::{Duration, Instant};

/// Waits until every replica of every shard of `stream` reports it is hibernating.
async fn wait_all_asleep(cluster: &Cluster, stream: &str) {
    let start = Instant::now();
    loop {
        let status = cluster.any_client().api.clone().cluster_status(pb::ClusterStatusRequest {}).await;
        if let Ok(status) = status {
            let groups: Vec<pb::GroupStatus> =
                status.into_inner().groups.into_iter().filter(|g| g.stream_name == stream).collect();
            let replicas: Vec<&pb::ReplicaStatus> = groups.iter().flat_map(|g| g.replicas.iter()).collect();
            if !groups.is_empty()
                && replicas.len() == groups.len() * 3
                && replicas.iter().all(|r| r.hibernating)
            {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{stream} never went to sleep\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn write(client: &Client, stream: &str, keys: std::ops::Range<u32>) {
    for i in keys {
        client
            .api
            .clone()
            .put_record(put_request(stream, &format!("k{i}"), format!("r{i}")))
            .await
            .expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_sleep_and_a_write_wakes_them_for_every_replica() {
    // Retention checks every second: they must leave shards with nothing expired asleep.
    let cluster = Cluster::start_with(3, &[("FRESHET_RETENTION_CHECK_SECS", "1")]).await;
    cluster.create_stream("empty", 1, unlimited()).await;
    cluster.create_stream("quiet", 2, unlimited()).await;
    cluster.wait_leaders("quiet").await;
    write(&cluster.client(1), "quiet", 0..40).await;
    wait_all_asleep(&cluster, "quiet").await;
    // The first writes to sleeping groups, with no read before them to wake anything.
    let start = Instant::now();
    write(&cluster.client(3), "quiet", 40..50).await;
    assert!(start.elapsed() < Duration::from_secs(5), "writes to sleeping groups took {:?}", start.elapsed());
    wait_all_asleep(&cluster, "quiet").await;

    // A subscriber on every node: each is served by that node's own (sleeping) replica.
    let shard = "shardId-000000000000";
    let mut subscribers = Vec::new();
    for n in 1..=3 {
        let events = cluster
            .client(n)
            .api
            .clone()
            .subscribe(pb::SubscribeRequest {
                stream_name: "quiet".into(),
                shard_id: shard.into(),
                iterator_type: pb::IteratorType::Latest as i32,
                starting_sequence_number: None,
                timestamp_ms: None,
                keep_alive_ms: None,
            })
            .await
            .expect("subscribe")
            .into_inner();
        subscribers.push(events);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Writes to the sleeping groups are acknowledged, and every subscriber gets them.
    let mut sent = Vec::new();
    let client = cluster.client(2);
    for i in 50..80 {
        let r = client
            .api
            .clone()
            .put_record(put_request("quiet", &format!("k{i}"), format!("r{i}")))
            .await
            .unwrap();
        if r.into_inner().shard_id == shard {
            sent.push(format!("r{i}"));
        }
    }
    assert!(!sent.is_empty());
    for (n, events) in subscribers.iter_mut().enumerate() {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < sent.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, events.message()).await;
            let Ok(Ok(Some(event))) = event else {
                panic!("subscriber on node {} got {got:?} of {sent:?}", n + 1)
            };
            got.extend(event.records.into_iter().map(|r| String::from_utf8(r.data.to_vec()).unwrap()));
        }
        assert_eq!(got, sent, "node {}", n + 1);
    }
    let all: usize = read_all(&client, "quiet").await.values().map(|r| r.len()).sum();
    assert_eq!(all, 80);
    // And the groups go back to sleep.
    wait_all_asleep(&cluster, "quiet").await;

    // A shard that never took a record sleeps through the retention checks.
    wait_all_asleep(&cluster, "empty").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = cluster.any_client().api.clone().cluster_status(pb::ClusterStatusRequest {}).await.unwrap();
    let empty: Vec<pb::GroupStatus> =
        status.into_inner().groups.into_iter().filter(|g| g.stream_name == "empty").collect();
    assert!(empty.iter().flat_map(|g| &g.replicas).all(|r| r.hibernating), "{empty:?}");
    assert!(empty.iter().flat_map(|g| &g.replicas).all(|r| r.last_log_index <= 2), "no trims: {empty:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_group_whose_leader_dies_elects_a_successor_and_loses_nothing() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("quiet", 2, unlimited()).await;
    let leaders = cluster.wait_leaders("quiet").await;
    write(&cluster.client(1), "quiet", 0..40).await;
    wait_all_asleep(&cluster, "quiet").await;

    let dead = leaders["shardId-000000000000"];
    cluster.kill(dead);
    let alive = (1..=3).find(|n| *n != dead).unwrap();
    let client = cluster.client(alive);
    // Writes to every shard go on through the survivors (the dead leader's groups need a
    // new leader first, which only the woken followers can elect).
    let start = Instant::now();
    let mut written = 40;
    while written < 80 {
        let r = client
            .api
            .clone()
            .put_record(put_request("quiet", &format!("k{written}"), format!("r{written}")))
            .await;
        match r {
            Ok(_) => written += 1,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "no successor: {e:?}\n{}",
                    cluster.log_tails()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let new_leaders = cluster.wait_leaders("quiet").await;
    assert_ne!(new_leaders["shardId-000000000000"], dead);
    assert!(
        (1..=3).filter(|n| *n != dead).any(|n| cluster.log(n).contains("waking the sleeping groups it led")),
        "the followers' liveness check woke them\n{}",
        cluster.log_tails()
    );
    let read = read_all(&client, "quiet").await;
    let mut data: Vec<String> =
        read.values().flatten().map(|r| String::from_utf8(r.data.to_vec()).unwrap()).collect();
    data.sort();
    let mut want: Vec<String> = (0..80).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(data, want, "every acknowledged record, exactly once");

    // The dead node comes back and catches up: its replicas apply what the leaders hold.
    cluster.start_node(dead);
    cluster.wait_ready().await;
    let start = Instant::now();
    loop {
        let status =
            cluster.client(dead).api.clone().cluster_status(pb::ClusterStatusRequest {}).await.unwrap();
        let caught_up = status.into_inner().groups.iter().filter(|g| g.stream_name == "quiet").all(|g| {
            let leader = g.replicas.iter().find(|r| Some(r.node) == g.leader);
            let mine = g.replicas.iter().find(|r| r.node == dead);
            matches!((leader, mine), (Some(l), Some(m)) if m.applied_index >= l.committed_index && l.committed_index > 0)
        });
        if caught_up {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node {dead} never caught up\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back = read_all(&cluster.client(dead), "quiet").await;
    assert_eq!(back.values().map(|r| r.len()).sum::<usize>(), 80);

    // Every group asleep again, led elsewhere: a restart of that node wakes its groups as
    // it starts, so it hears their leaders instead of calling elections of its own.
    wait_all_asleep(&cluster, "quiet").await;
    let before = cluster.wait_leaders("quiet").await;
    assert!(!before.values().any(|l| *l == dead), "{before:?}");
    cluster.restart(dead);
    cluster.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.wait_leaders("quiet").await, before, "the restart moved no leadership");
}
