//! No acknowledged record is lost, duplicated or reordered when nodes are SIGKILLed.

use freshet_tests::workload::{produce, stop_and_verify, verify, Ledger};
use freshet_tests::{read_all, unlimited, Cluster};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const PRODUCERS: usize = 4;
const KEYS_PER_PRODUCER: usize = 25;

fn endpoints(c: &Cluster) -> Vec<String> {
    c.brokers.iter().map(|b| b.endpoint()).collect()
}

/// Starts the producers on stream "orders", each stopping after `max` acknowledgements
/// (or when the ledger says stop).
fn spawn_producers(c: &Cluster, max: usize, ledger: &Arc<Ledger>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(produce(endpoints(c), "orders".into(), p, KEYS_PER_PRODUCER, max, ledger.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_each_shard_leader_being_killed() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("orders", 4, unlimited()).await;
    let ledger = Arc::new(Ledger::default());
    let producers = spawn_producers(&cluster, usize::MAX, &ledger);

    // Kill each shard's leader in turn with SIGKILL, then bring it back.
    for shard in
        ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"]
    {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let leaders = cluster.wait_leaders("orders").await;
        let victim = leaders[shard];
        eprintln!(
            "killing node {victim}, leader of {shard}; {} acknowledged so far",
            ledger.acked.load(Ordering::Relaxed)
        );
        cluster.kill(victim);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.start_node(victim);
        cluster.wait_ready().await;
    }
    while ledger.acked.load(Ordering::Relaxed) < 10_000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ledger.stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    cluster.wait_leaders("orders").await;
    let read = read_all(&cluster.any_client(), "orders").await;
    eprintln!(
        "acknowledged {}, retried {}, read back {}",
        ledger.acked.load(Ordering::Relaxed),
        ledger.retried.lock().unwrap().len(),
        read.values().map(|v| v.len()).sum::<usize>()
    );
    verify(&ledger, &read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill_of_every_node() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("orders", 4, unlimited()).await;
    let ledger = Arc::new(Ledger::default());
    let producers = spawn_producers(&cluster, usize::MAX, &ledger);
    // Kill everything while the producers are still writing, past 10,000 acknowledgements.
    while ledger.acked.load(Ordering::Relaxed) < 10_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in 1..=3 {
        cluster.kill(id);
    }
    ledger.stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    for id in 1..=3 {
        cluster.start_node(id);
    }
    cluster.wait_ready().await;
    cluster.wait_leaders("orders").await;
    let read = read_all(&cluster.any_client(), "orders").await;
    eprintln!(
        "acknowledged {}, read back {}",
        ledger.acked.load(Ordering::Relaxed),
        read.values().map(|v| v.len()).sum::<usize>()
    );
    verify(&ledger, &read);

    // And the restarted cluster takes writes again.
    let more = Arc::new(Ledger::default());
    produce(endpoints(&cluster), "orders".into(), 9, 10, 200, more.clone()).await;
    assert_eq!(more.acked.load(Ordering::Relaxed), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_during_writes_catches_up_and_can_lead() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("orders", 1, unlimited()).await;
    // Node 3 dies (SIGKILL) with writes under way, and misses the rest of them.
    let ledger = Arc::new(Ledger::default());
    let writes = endpoints(&cluster)[..2].to_vec();
    let writer = tokio::spawn(produce(writes, "orders".into(), 0, 20, 2_000, ledger.clone()));
    while ledger.acked.load(Ordering::Relaxed) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(3);
    writer.await.unwrap();
    assert!(ledger.acked.load(Ordering::Relaxed) >= 2_000);
    cluster.start_node(3);
    cluster.wait_ready().await;

    // Move leadership until node 3 leads the shard: kill whoever leads, wait for the
    // survivors to elect one of themselves, bring the old leader back.
    let mut attempts = 0;
    loop {
        let leader = cluster.wait_leaders("orders").await["shardId-000000000000"];
        if leader == 3 {
            break;
        }
        attempts += 1;
        assert!(attempts <= 12, "node 3 never became leader");
        cluster.kill(leader);
        while cluster.wait_leaders("orders").await["shardId-000000000000"] == leader {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.start_node(leader);
        cluster.wait_ready().await;
    }
    // Node 3, now leading, serves everything written while it was down, and more.
    produce(endpoints(&cluster), "orders".into(), 1, 20, 400, ledger.clone()).await;
    let read = read_all(&cluster.client(3), "orders").await;
    verify(&ledger, &read);
    assert_eq!(read["shardId-000000000000"].len(), ledger.acked.load(Ordering::Relaxed));
}

/// Scale-down's broker half: every replica moves off a node (new replica as a learner,
/// caught up, then one membership change) while producers write, then the node leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_moves_its_replicas_under_load_and_loses_nothing() {
    use freshet_tests::freshet_broker::pb;
    let mut cluster = Cluster::start(4).await;
    cluster.create_stream("orders", 4, unlimited()).await;
    let before = cluster.client(1).describe("orders").await.unwrap();
    assert!(before.shards.iter().any(|s| s.replicas.contains(&4)), "node 4 holds replicas to move");
    let ledger = Arc::new(Ledger::default());
    let endpoints: Vec<String> = cluster.brokers.iter().filter(|b| b.id != 4).map(|b| b.endpoint()).collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(produce(
                endpoints.clone(),
                "orders".into(),
                p,
                KEYS_PER_PRODUCER,
                usize::MAX,
                ledger.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut api = cluster.client(1).api;
    let refused = api.remove_node(pb::RemoveNodeRequest { node_id: 4 }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("drain it first"), "{}", refused.message());
    let start = std::time::Instant::now();
    loop {
        let left = api.drain_node(pb::DrainNodeRequest { node_id: 4 }).await.unwrap().into_inner();
        if left.replicas_remaining == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} replicas still on node 4\n{}",
            left.replicas_remaining,
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = cluster.client(1).describe("orders").await.unwrap();
    assert!(
        after.shards.iter().all(|s| !s.replicas.contains(&4) && s.replicas.len() == 3),
        "{:?}",
        after.shards
    );
    api.remove_node(pb::RemoveNodeRequest { node_id: 4 }).await.unwrap();
    cluster.stop(4);

    stop_and_verify(&cluster, &cluster.client(1), "orders", &ledger, producers, 3_000).await;

    // Three nodes left and replication 3: another drain has nowhere to go.
    let err = api.drain_node(pb::DrainNodeRequest { node_id: 3 }).await.unwrap_err();
    assert!(err.message().contains("Add a node first"), "{}", err.message());
}

/// During a rolling upgrade, nodes with Raft streams run beside nodes without them (older
/// versions; `--peer-streams=false` stands in for one): they must keep replicating, both
/// ways, with nothing acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_raft_streams_replicates_with_nodes_that_have_them() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("orders", 4, unlimited()).await;
    cluster.stop(3);
    cluster.start_node_with(3, &[("FRESHET_PEER_STREAMS", "false")]);
    cluster.wait_ready().await;
    let ledger = Arc::new(Ledger::default());
    let producers = spawn_producers(&cluster, usize::MAX, &ledger);
    while ledger.acked.load(Ordering::Relaxed) < 500 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without node 1, every shard's majority needs node 3 and node 2 to replicate to each
    // other: one offers streams, the other only calls.
    cluster.kill(1);
    let at_kill = ledger.acked.load(Ordering::Relaxed);
    let reader = cluster.client(3);
    let verified = stop_and_verify(&cluster, &reader, "orders", &ledger, producers, at_kill + 1_000);
    if tokio::time::timeout(Duration::from_secs(120), verified).await.is_err() {
        panic!(
            "nodes 2 and 3 acknowledged fewer than 1,000 records in 2 minutes after node 1 went; logs:\n{}",
            cluster.log_tails()
        );
    }
}
