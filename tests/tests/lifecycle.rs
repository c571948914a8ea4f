//! What Kubernetes relies on when it runs brokers: a readiness answer that means "joined",
//! and a SIGTERM that hands leadership away before the node exits.

use freshet_broker::api::READINESS_SERVICE;
use freshet_broker::pb;
use freshet_tests::{put_request, read_all, unlimited, Cluster};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn health(cluster: &Cluster, id: u64, service: &str) -> Option<ServingStatus> {
    let b = cluster.brokers.iter().find(|b| b.id == id)?;
    let channel = tonic::transport::Channel::from_shared(b.endpoint()).ok()?.connect().await.ok()?;
    let mut client = HealthClient::new(channel);
    let reply = client.check(HealthCheckRequest { service: service.into() }).await.ok()?;
    Some(reply.into_inner().status())
}

/// Polls until node `id` reports `want` for `service` (a state, not a timing, is asserted).
async fn wait_health(cluster: &Cluster, id: u64, service: &str, want: ServingStatus) {
    let start = Instant::now();
    loop {
        let got = health(cluster, id, service).await;
        if got == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node {id} health({service:?}) is {got:?}, want {want:?}\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_membership_of_a_working_cluster() {
    let mut cluster = Cluster::start(3).await;
    for id in 1..=3 {
        wait_health(&cluster, id, READINESS_SERVICE, ServingStatus::Serving).await;
        wait_health(&cluster, id, "", ServingStatus::Serving).await;
    }
    // Alone, node 3 cannot know a metadata leader: alive, but not ready.
    cluster.kill(1);
    cluster.kill(2);
    wait_health(&cluster, 3, READINESS_SERVICE, ServingStatus::NotServing).await;
    wait_health(&cluster, 3, "", ServingStatus::Serving).await;
    cluster.start_node(1);
    cluster.start_node(2);
    for id in 1..=3 {
        wait_health(&cluster, id, READINESS_SERVICE, ServingStatus::Serving).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_to_a_follower_before_exit() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("handoff", 6, unlimited()).await;
    let mut api = cluster.any_client().api;
    for i in 0..60 {
        let put = put_request("handoff", &format!("key-{i}"), format!("record {i}"));
        api.put_record(put).await.unwrap();
    }
    let leaders = cluster.wait_leaders("handoff").await;
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for node in leaders.values() {
        *led.entry(*node).or_default() += 1;
    }
    let (&victim, &count) = led.iter().max_by_key(|(_, n)| **n).unwrap();

    cluster.stop(victim);
    let log = cluster.log(victim);
    let handed: usize = log
        .lines()
        .find_map(|l| l.split("handed leadership of ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("node {victim} did not report a handoff:\n{log}"));
    assert!(handed >= count, "node {victim} led {count} shards but handed {handed} groups away:\n{log}");

    let after = cluster.wait_leaders("handoff").await;
    assert!(after.values().all(|n| *n != victim), "a stopped node still leads: {after:?}");
    let read = read_all(&cluster.any_client(), "handoff").await;
    assert_eq!(read.values().map(Vec::len).sum::<usize>(), 60, "every record is still readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_joins_a_running_cluster_and_hosts_new_streams() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("before", 2, unlimited()).await;
    let new = cluster.add_node();
    wait_health(&cluster, new, READINESS_SERVICE, ServingStatus::Serving).await;

    // Every node sees it, though nodes 1-3 were started without it in their peer list.
    let status = cluster.client(1).api.clone().cluster_status(pb::ClusterStatusRequest {}).await.unwrap();
    let node = status.into_inner().nodes.into_iter().find(|n| n.id == new).expect("node 4 is listed");
    assert!(node.reachable);

    // New streams place replicas on it, and it serves them.
    cluster.create_stream("after", 8, unlimited()).await;
    let described = cluster.client(1).describe("after").await.unwrap();
    assert!(described.shards.iter().any(|s| s.replicas.contains(&new)), "{:?}", described.shards);
    cluster.wait_leaders("after").await;
    let mut api = cluster.client(new).api;
    for i in 0..20 {
        let put = put_request("after", &format!("k{i}"), vec![1, 2, 3]);
        api.put_record(put).await.unwrap();
    }
    assert_eq!(read_all(&cluster.client(new), "after").await.values().map(Vec::len).sum::<usize>(), 20);

    // It stays a member across a crash.
    cluster.kill(new);
    cluster.start_node(new);
    wait_health(&cluster, new, READINESS_SERVICE, ServingStatus::Serving).await;
    let joined = format!("node {new} (");
    assert!((1..=3).any(|id| cluster.log(id).contains(&joined)), "the metadata leader logged the join");
}
