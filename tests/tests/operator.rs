//! The operator against an in-memory Kubernetes API (`freshet_tests::kube_api`) while it
//! drives a real broker cluster (processes on loopback) through the admin API.

use freshet_crds::{Stream, StreamSpec};
use freshet_operator::controller::{Context, SKIP_TEARDOWN_ANNOTATION};
use freshet_operator::desired::{Plan, Settings};
use freshet_operator::run;
use freshet_tests::freshet_broker::pb::ClusterStatusRequest;
use freshet_tests::kube_api::rbac::rules_from_chart;
use freshet_tests::kube_api::FakeApi;
use freshet_tests::Cluster;
use http::Method;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "analytics";

struct Harness {
    ctx: Arc<Context>,
    controller: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

/// The operator's view of `fake`: only what the Helm chart's RBAC grants it.
fn as_operator(fake: &FakeApi) -> FakeApi {
    // Relative to the package, where cargo runs tests.
    let template = "../charts/freshet/templates/rbac.yaml";
    let rules = rules_from_chart(&std::fs::read_to_string(template).unwrap());
    assert!(rules.len() >= 8, "the chart's rules were read: {rules:?}");
    fake.bound_to(rules)
}

/// The operator, talking to `fake` with the chart's RBAC, finding every stream's brokers
/// at `endpoint`.
fn operator(fake: &FakeApi, endpoint: String, settings: Settings) -> Harness {
    let locate = Arc::new(move |_: &Plan| endpoint.clone());
    let ctx = Arc::new(Context::new(as_operator(fake).client(), settings, locate));
    let controller = tokio::spawn(run::controller(ctx.clone(), Some(NS.into()), std::future::pending()));
    Harness { ctx, controller }
}

async fn create_stream(fake: &FakeApi, name: &str, spec: Value, annotations: Value) {
    let api: Api<Stream> = Api::namespaced(fake.client(), NS);
    let spec: StreamSpec = serde_json::from_value(spec).unwrap();
    let mut s = Stream::new(name, spec);
    s.metadata.annotations = serde_json::from_value(annotations).unwrap();
    api.create(&PostParams::default(), &s).await.unwrap();
}

/// Polls `check` until it returns Some; fails with `what` and the last value after 60 s.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition(stream: &Value, type_: &str) -> Option<(String, String)> {
    stream["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (c["status"].as_str().unwrap_or("").to_string(), c["reason"].as_str().unwrap_or("").to_string())
    })
}

fn stream_obj(fake: &FakeApi, name: &str) -> Option<Value> {
    fake.get("freshet.dev/streams", NS, name)
}

/// Event reasons in the order first seen, each repeated as often as it occurred (the
/// recorder folds repeats into one Event with a `series.count`).
fn event_reasons(fake: &FakeApi) -> Vec<String> {
    let mut events = fake.list("events.k8s.io/events", NS);
    events.sort_by_key(|e| e["metadata"]["uid"].as_str().unwrap_or("").to_string());
    events
        .iter()
        .flat_map(|e| {
            let n = e["series"]["count"].as_u64().unwrap_or(1) as usize;
            std::iter::repeat_n(e["reason"].as_str().unwrap_or("").to_string(), n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_gets_its_objects_then_its_brokers_create_it_and_it_turns_ready() {
    let cluster = Cluster::start(3).await;
    let fake = FakeApi::new();
    let h = operator(&fake, cluster.brokers[0].endpoint(), Settings::default());
    create_stream(&fake, "clicks", json!({"throughput": {"writeMiBPerSecond": 3.5}}), json!({})).await;

    // The objects appear, owned by the Stream, and status says the brokers are starting.
    let sts = eventually("the StatefulSet", || fake.get("apps/statefulsets", NS, "clicks-broker")).await;
    assert_eq!(sts["spec"]["replicas"], 3);
    for (kind, name) in [
        ("/configmaps", "clicks-broker-config"),
        ("/services", "clicks-broker-peers"),
        ("/services", "clicks"),
        ("policy/poddisruptionbudgets", "clicks-broker"),
    ] {
        let obj = fake.get(kind, NS, name).unwrap_or_else(|| panic!("{kind} {name} missing"));
        assert_eq!(obj["metadata"]["ownerReferences"][0]["kind"], "Stream", "{name} is owned by its Stream");
    }
    let starting = eventually("status BrokersStarting", || {
        let s = stream_obj(&fake, "clicks")?;
        (condition(&s, "Progressing")? == ("True".into(), "BrokersStarting".into())).then_some(s)
    })
    .await;
    assert_eq!(starting["status"]["brokers"]["summary"], "0/3");
    assert_eq!(starting["metadata"]["finalizers"][0], "freshet.dev/teardown");
    assert!(cluster.any_client().describe("clicks").await.is_err(), "no stream before the brokers are ready");

    // Pods come up: the operator creates the stream on the real brokers and reports Ready.
    fake.set_statefulsets_ready(true);
    let ready = eventually("Ready", || {
        let s = stream_obj(&fake, "clicks")?;
        (condition(&s, "Ready")? == ("True".into(), "StreamActive".into())).then_some(s)
    })
    .await;
    let described = cluster.any_client().describe("clicks").await.expect("the stream exists on the brokers");
    assert_eq!(described.shards.len(), 4, "3.5 MiB/s of writes needs 4 shards");
    assert_eq!(described.replication_factor, 3);
    assert_eq!(ready["status"]["shards"], 4);
    assert_eq!(ready["status"]["brokers"]["summary"], "3/3");
    assert_eq!(ready["status"]["observedGeneration"], ready["metadata"]["generation"]);
    assert_eq!(ready["status"]["endpoints"]["kinesis"], "http://clicks.analytics.svc.cluster.local:4567");
    assert_eq!(
        ready["status"]["selector"],
        "app.kubernetes.io/instance=clicks,app.kubernetes.io/name=freshet-broker"
    );
    let reasons = event_reasons(&fake);
    assert!(
        reasons.contains(&"BrokersCreated".to_string()) && reasons.contains(&"StreamCreated".to_string()),
        "{reasons:?}"
    );
    assert!(h.ctx.metrics.reconciles() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_declared_throughput_grows_the_brokers_and_bigger_storage_grows_the_volumes() {
    let cluster = Cluster::start(3).await;
    let fake = FakeApi::new();
    fake.set_statefulsets_ready(true);
    let settings = Settings { replicas_per_broker: 6, ..Settings::default() };
    let _h = operator(&fake, cluster.brokers[0].endpoint(), settings);
    create_stream(&fake, "orders", json!({"shards": 2}), json!({})).await;
    eventually("Ready", || condition(&stream_obj(&fake, "orders")?, "Ready").filter(|c| c.0 == "True")).await;
    // The StatefulSet made one claim per pod (no StatefulSet controller here: the test does).
    for i in 0..3 {
        fake.insert("/persistentvolumeclaims", json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("data-orders-broker-{i}"), "namespace": NS,
                         "labels": {"app.kubernetes.io/name": "freshet-broker", "app.kubernetes.io/instance": "orders"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
        }));
    }

    let api: Api<Stream> = Api::namespaced(fake.client(), NS);
    let patch = json!({"spec": {"shards": 8, "storage": {"size": "20Gi"}}});
    api.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    // 8 shards x 3 replicas at 6 per broker: 4 brokers.
    eventually("4 brokers", || {
        fake.get("apps/statefulsets", NS, "orders-broker").filter(|s| s["spec"]["replicas"] == 4)
    })
    .await;
    let peers = fake.get("/configmaps", NS, "orders-broker-config").unwrap()["data"]["FRESHET_PEERS"].clone();
    assert_eq!(peers.as_str().unwrap().split(',').count(), 4, "every broker learns the new peer");
    for i in 0..3 {
        let name = format!("data-orders-broker-{i}");
        eventually("grown volumes", || {
            fake.get("/persistentvolumeclaims", NS, &name)
                .filter(|p| p["spec"]["resources"]["requests"]["storage"] == "20Gi")
        })
        .await;
    }
    let sts = fake.get("apps/statefulsets", NS, "orders-broker").unwrap();
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "10Gi",
        "the StatefulSet's claim template is immutable and left alone"
    );
    // Shrinking the volume is never done.
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"storage": {"size": "5Gi"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pvc = fake.get("/persistentvolumeclaims", NS, "data-orders-broker-0").unwrap();
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "20Gi");
    // The shard count follows through the brokers' UpdateShardCount, at most doubling per
    // call: 2 -> 4 -> 8 open shards, 6 splits in all, with Kinesis' even ranges at the end.
    // Ready with 8 open shards (mid-merge, one parent may close before the other: not Ready).
    eventually("Ready with 8 open shards", || {
        let s = stream_obj(&fake, "orders")?;
        let ready = condition(&s, "Ready").is_some_and(|c| c.0 == "True");
        s["status"]["shards"].as_u64().filter(|n| *n == 8 && ready)
    })
    .await;
    let d = cluster.any_client().describe("orders").await.unwrap();
    let open: Vec<_> = d.shards.iter().filter(|s| s.ending_sequence_number.is_none()).collect();
    assert_eq!((open.len(), d.shards.len()), (8, 14), "6 parents closed, 8 children open");
    let mut ranges: Vec<(u128, u128)> = open
        .iter()
        .map(|s| (s.starting_hash_key.parse().unwrap(), s.ending_hash_key.parse().unwrap()))
        .collect();
    ranges.sort();
    let even: Vec<(u128, u128)> = freshet_broker::hashkey::HashKeyRange::split_evenly(8)
        .into_iter()
        .map(|r| (r.start, r.end))
        .collect();
    assert_eq!(ranges, even);
    let reasons = event_reasons(&fake);
    assert_eq!(reasons.iter().filter(|r| *r == "ShardCountUpdating").count(), 2, "{reasons:?}");

    // Retention and write limits of the existing stream follow the spec.
    let patch = json!({"spec": {"retentionHours": 72, "shardLimits": "Off"}});
    api.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let client = cluster.any_client();
    let mut d = client.describe("orders").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (d.retention_hours, d.limits.as_ref().map(|l| l.enforce)) != (72, Some(false)) {
        assert!(std::time::Instant::now() < deadline, "settings never reached the brokers: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        d = client.describe("orders").await.unwrap();
    }
    assert!(event_reasons(&fake).iter().any(|r| r == "StreamSettingsChanged"));
    eventually("Ready again", || condition(&stream_obj(&fake, "orders")?, "Ready").filter(|c| c.0 == "True"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_declared_shards_merge_after_the_stabilization_window() {
    let cluster = Cluster::start(3).await;
    let fake = FakeApi::new();
    fake.set_statefulsets_ready(true);
    let settings = Settings { merge_stabilization: Duration::from_secs(2), ..Settings::default() };
    let _h = operator(&fake, cluster.brokers[0].endpoint(), settings);
    create_stream(&fake, "orders", json!({"shards": 4}), json!({})).await;
    eventually("Ready", || condition(&stream_obj(&fake, "orders")?, "Ready").filter(|c| c.0 == "True")).await;

    let api: Api<Stream> = Api::namespaced(fake.client(), NS);
    api.patch("orders", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"shards": 2}})))
        .await
        .unwrap();
    // Nothing merges before the window has passed, and the status says when it will.
    let waiting = Instant::now();
    eventually("MergeStabilizing", || {
        condition(&stream_obj(&fake, "orders")?, "Progressing").filter(|c| c.1 == "MergeStabilizing")
    })
    .await;
    // Ready with 2 open shards (mid-merge, one parent may close before the other: not Ready).
    eventually("Ready with 2 open shards", || {
        let s = stream_obj(&fake, "orders")?;
        let ready = condition(&s, "Ready").is_some_and(|c| c.0 == "True");
        s["status"]["shards"].as_u64().filter(|n| *n == 2 && ready)
    })
    .await;
    assert!(waiting.elapsed() >= Duration::from_secs(2), "merged before the stabilization window");
    let d = cluster.any_client().describe("orders").await.unwrap();
    let open: Vec<_> = d.shards.iter().filter(|s| s.ending_sequence_number.is_none()).collect();
    assert_eq!((open.len(), d.shards.len()), (2, 6), "two merges: four parents closed");
    assert!(open.iter().all(|s| s.adjacent_parent_shard_id.is_some()), "each open shard is a merge's child");
    assert!(event_reasons(&fake).iter().any(|r| r == "ShardCountUpdating"));
    eventually("Ready", || condition(&stream_obj(&fake, "orders")?, "Ready").filter(|c| c.0 == "True")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_stream_tears_down_data_then_brokers_then_volumes() {
    let cluster = Cluster::start(3).await;
    let fake = FakeApi::new();
    fake.set_statefulsets_ready(true);
    let _h = operator(&fake, cluster.brokers[0].endpoint(), Settings::default());
    create_stream(&fake, "audit", json!({"shards": 2, "deletionPolicy": "Delete"}), json!({})).await;
    eventually("Ready", || condition(&stream_obj(&fake, "audit")?, "Ready").filter(|c| c.0 == "True")).await;
    fake.insert("/persistentvolumeclaims", json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-audit-broker-0", "namespace": NS,
                     "labels": {"app.kubernetes.io/name": "freshet-broker", "app.kubernetes.io/instance": "audit"}},
        "spec": {"resources": {"requests": {"storage": "10Gi"}}}
    }));
    assert!(cluster.any_client().describe("audit").await.is_ok());

    let api: Api<Stream> = Api::namespaced(fake.client(), NS);
    api.delete("audit", &DeleteParams::default()).await.unwrap();
    eventually("the Stream gone", || stream_obj(&fake, "audit").is_none().then_some(())).await;

    let err = cluster.any_client().describe("audit").await.expect_err("the stream's data is deleted");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(fake.get("apps/statefulsets", NS, "audit-broker").is_none());
    assert!(
        fake.get("/persistentvolumeclaims", NS, "data-audit-broker-0").is_none(),
        "deletionPolicy Delete"
    );
    assert!(fake.get("/services", NS, "audit").is_none(), "owned objects are collected");
    assert!(fake.get("/configmaps", NS, "audit-broker-config").is_none());
    let reasons = event_reasons(&fake);
    let at =
        |r: &str| reasons.iter().position(|x| x == r).unwrap_or_else(|| panic!("no {r} event: {reasons:?}"));
    assert!(at("StreamDeleted") < at("BrokersStopping") && at("BrokersStopping") < at("TeardownComplete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_data_and_the_escape_hatch() {
    let fake = FakeApi::new();
    fake.set_statefulsets_ready(true);
    // No brokers answer at this address: a stuck teardown unless the hatch is used.
    let _h = operator(&fake, "http://127.0.0.1:1".into(), Settings::default());
    create_stream(&fake, "kept", json!({"shards": 1}), json!({})).await;
    create_stream(&fake, "stuck", json!({"shards": 1, "deletionPolicy": "Delete"}), json!({})).await;
    for name in ["kept", "stuck"] {
        eventually("finalizer", || stream_obj(&fake, name)?["metadata"]["finalizers"].as_array().map(|_| ()))
            .await;
        fake.insert("/persistentvolumeclaims", json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("data-{name}-broker-0"), "namespace": NS,
                         "labels": {"app.kubernetes.io/name": "freshet-broker", "app.kubernetes.io/instance": name}},
            "spec": {"resources": {"requests": {"storage": "10Gi"}}}
        }));
    }
    let api: Api<Stream> = Api::namespaced(fake.client(), NS);

    // Retain (the default): brokers go, volumes stay, no broker call needed.
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    eventually("kept gone", || stream_obj(&fake, "kept").is_none().then_some(())).await;
    assert!(fake.get("/persistentvolumeclaims", NS, "data-kept-broker-0").is_some(), "Retain keeps volumes");

    // Delete with unreachable brokers blocks, visibly, until the annotation is set.
    api.delete("stuck", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stream_obj(&fake, "stuck").is_some(), "the teardown waits for the brokers");
    let hatch = json!({"metadata": {"annotations": {SKIP_TEARDOWN_ANNOTATION: "true"}}});
    api.patch("stuck", &PatchParams::default(), &Patch::Merge(&hatch)).await.unwrap();
    eventually("stuck gone", || stream_obj(&fake, "stuck").is_none().then_some(())).await;
    assert!(event_reasons(&fake).contains(&"TeardownSkipped".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_api_errors_are_retried_and_shown_as_degraded() {
    let cluster = Cluster::start(3).await;
    let fake = FakeApi::new();
    fake.set_statefulsets_ready(true);
    fake.fail_next(Method::PATCH, "/statefulsets/", 409, "Conflict", 2);
    fake.fail_next(Method::PATCH, "/configmaps/", 500, "InternalError", 1);
    let h = operator(&fake, cluster.brokers[0].endpoint(), Settings::default());
    create_stream(&fake, "flaky", json!({"shards": 2}), json!({})).await;
    eventually("Ready despite the failures", || {
        condition(&stream_obj(&fake, "flaky")?, "Ready").filter(|c| c.0 == "True")
    })
    .await;
    let degraded: Vec<String> = fake
        .history("freshet.dev/streams", NS, "flaky")
        .iter()
        .filter_map(|s| condition(s, "Degraded").filter(|c| c.0 == "True").map(|c| c.1))
        .collect();
    assert!(
        degraded.contains(&"Conflict".to_string()),
        "Degraded with reason Conflict was shown: {degraded:?}"
    );
    assert!(degraded.contains(&"InternalError".to_string()), "{degraded:?}");
    assert_eq!(h.ctx.metrics.errors("Conflict"), 2);
    assert_eq!(h.ctx.metrics.errors("InternalError"), 1);
    assert!(cluster.any_client().describe("flaky").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_the_brokers_cannot_honour_is_degraded_without_creating_anything() {
    let fake = FakeApi::new();
    let _h = operator(&fake, "http://127.0.0.1:1".into(), Settings::default());
    create_stream(&fake, "huge", json!({"throughput": {"writeMiBPerSecond": 600}}), json!({})).await;
    let s = eventually("Degraded", || {
        let s = stream_obj(&fake, "huge")?;
        condition(&s, "Degraded").filter(|c| c.0 == "True").map(|_| s)
    })
    .await;
    assert_eq!(condition(&s, "Degraded").unwrap().1, "InvalidSpec");
    let message = s["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("600 shards") && message.contains("at most 500"), "{message}");
    assert!(fake.get("apps/statefulsets", NS, "huge-broker").is_none());
}

/// A spec change that alters the pod template rolls the brokers: one pod at a time,
/// highest ordinal first, each only after the one before is back and ready, while
/// producers keep writing to the real brokers, and no acknowledged record is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_rolls_the_brokers_one_at_a_time_without_losing_a_record() {
    use freshet_tests::workload::{produce, stop_and_verify, Ledger};
    use std::sync::Mutex;

    let mut cluster = Cluster::start(3).await;
    let fake = FakeApi::new();
    fake.set_statefulsets_ready(true);
    // The client Service routes to ready pods only: so does this locator.
    let serving: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(cluster.brokers.iter().map(|b| b.endpoint()).collect()));
    let s = serving.clone();
    let locate = Arc::new(move |_: &Plan| s.lock().unwrap()[0].clone());
    let ctx = Arc::new(Context::new(as_operator(&fake).client(), Settings::default(), locate));
    let _h = Harness {
        ctx: ctx.clone(),
        controller: tokio::spawn(run::controller(ctx, Some(NS.into()), std::future::pending())),
    };
    create_stream(&fake, "rolled", json!({"shards": 4, "shardLimits": "Off"}), json!({})).await;
    eventually("Ready", || condition(&stream_obj(&fake, "rolled")?, "Ready").filter(|c| c.0 == "True")).await;

    let ledger = Arc::new(Ledger::default());
    let endpoints: Vec<String> = cluster.brokers.iter().map(|b| b.endpoint()).collect();
    let producers: Vec<_> = (0..3)
        .map(|p| tokio::spawn(produce(endpoints.clone(), "rolled".into(), p, 20, usize::MAX, ledger.clone())))
        .collect();

    // From now on a recreated pod starts NotReady until its broker is back (the test is the kubelet).
    fake.set_new_pods_ready(false);
    let revision_of = |fake: &FakeApi| {
        fake.get("apps/statefulsets", NS, "rolled-broker").unwrap()["status"]["updateRevision"].clone()
    };
    let before = revision_of(&fake);
    let api: Api<Stream> = Api::namespaced(fake.client(), NS);
    let patch = json!({"spec": {"brokers": {"image": "registry.example.com/freshet/broker:v2"}}});
    api.patch("rolled", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("a new StatefulSet revision", || (revision_of(&fake) != before).then_some(())).await;

    let mut restarted = Vec::new();
    let mut most_unready = 0;
    let start = Instant::now();
    loop {
        let pods = fake.list("/pods", NS);
        let revision =
            fake.get("apps/statefulsets", NS, "rolled-broker").unwrap()["status"]["updateRevision"].clone();
        let unready: Vec<Value> = pods
            .iter()
            .filter(|p| !p["status"]["conditions"].as_array().unwrap().iter().any(|c| c["status"] == "True"))
            .cloned()
            .collect();
        most_unready = most_unready.max(unready.len());
        if unready.is_empty()
            && pods.len() == 3
            && pods.iter().all(|p| p["metadata"]["labels"]["controller-revision-hash"] == revision)
        {
            break;
        }
        for pod in unready {
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            let node: u64 = name.rsplit('-').next().unwrap().parse::<u64>().unwrap() + 1;
            let endpoint = cluster.brokers.iter().find(|b| b.id == node).unwrap().endpoint();
            // The operator deleted the pod only after its broker had handed every leadership away.
            let other = if node == 1 { 2 } else { 1 };
            let status =
                cluster.client(other).api.clone().cluster_status(ClusterStatusRequest {}).await.unwrap();
            let led: Vec<String> = status
                .into_inner()
                .groups
                .iter()
                .filter(|g| g.leader == Some(node))
                .map(|g| format!("{} {}", g.stream_name, g.shard_id))
                .collect();
            assert!(led.is_empty(), "{name} was deleted while its broker led {led:?}");
            serving.lock().unwrap().retain(|e| *e != endpoint);
            cluster.stop(node); // SIGTERM: the broker hands its leaderships away first
            cluster.start_node(node);
            cluster.wait_ready().await;
            serving.lock().unwrap().push(endpoint);
            fake.set_pod_ready(NS, &name, true);
            restarted.push(node);
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the roll did not finish: restarted {restarted:?}\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(restarted, vec![3, 2, 1], "one broker at a time, highest ordinal first");
    assert_eq!(most_unready, 1, "never two brokers down at once");
    eventually("Ready after the roll", || {
        condition(&stream_obj(&fake, "rolled")?, "Ready").filter(|c| c.0 == "True")
    })
    .await;

    stop_and_verify(&cluster, &cluster.any_client(), "rolled", &ledger, producers, 2_000).await;
    let reasons = event_reasons(&fake);
    assert_eq!(reasons.iter().filter(|r| *r == "BrokerRestarted").count(), 3, "{reasons:?}");
}

/// Two `freshet-operator` processes against the same API: one holds the Lease and
/// reconciles, the other waits; when the leader dies, the standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_elect_one_leader_and_the_standby_takes_over() {
    use std::process::{Child, Command, Stdio};
    let fake = FakeApi::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(as_operator(&fake).serve(listener));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, FakeApi::kubeconfig(addr)).unwrap();
    /// Kills the process when the test ends, pass or fail.
    struct Operator(Child);
    impl Drop for Operator {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let start = |identity: &str| -> (Operator, u16) {
        let port = freshet_tests::free_port();
        let log = std::fs::File::create(dir.path().join(format!("{identity}.log"))).unwrap();
        let child = Command::new(freshet_tests::bin("freshet-operator"))
            .arg("run")
            .env("KUBECONFIG", &kubeconfig)
            .env("FRESHET_WATCH_NAMESPACE", NS)
            .env("FRESHET_LEADER_ELECTION", "true")
            .env("FRESHET_LEASE_DURATION_SECS", "3")
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", "freshet-system")
            .env("FRESHET_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        (Operator(child), port)
    };
    let holder = |fake: &FakeApi| {
        fake.get("coordination.k8s.io/leases", "freshet-system", "freshet-operator")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    let reconciles = |port: u16| -> u64 {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        sock.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("freshet_operator_reconciles_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };

    let (a, port_a) = start("operator-a");
    eventually("operator-a to hold the lease", || (holder(&fake)? == "operator-a").then_some(())).await;
    let (_b, port_b) = start("operator-b");
    create_stream(&fake, "first", json!({"shards": 1}), json!({})).await;
    eventually("the leader to reconcile", || fake.get("apps/statefulsets", NS, "first-broker")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(reconciles(port_a) > 0);
    assert_eq!(reconciles(port_b), 0, "the standby does not reconcile");
    assert_eq!(holder(&fake).as_deref(), Some("operator-a"));

    drop(a);
    eventually("operator-b to take the lease", || (holder(&fake)? == "operator-b").then_some(())).await;
    create_stream(&fake, "second", json!({"shards": 1}), json!({})).await;
    eventually("the new leader to reconcile", || fake.get("apps/statefulsets", NS, "second-broker")).await;
    assert!(reconciles(port_b) > 0);
}

/// Fewer brokers suffice (here: the chart's capacity per broker was raised): the operator
/// drains the highest ordinal through the brokers' admin API, every replica moves while
/// producers write, the broker leaves the cluster, and only then does the set shrink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_brokers_are_reached_by_draining_the_highest_ordinal_first() {
    use freshet_tests::workload::{produce, stop_and_verify, Ledger};
    let mut cluster = Cluster::start(4).await;
    let fake = FakeApi::new();
    fake.set_statefulsets_ready(true);
    let endpoint = cluster.brokers[0].endpoint();
    let small = Settings { replicas_per_broker: 6, ..Settings::default() };
    let first = operator(&fake, endpoint.clone(), small);
    create_stream(&fake, "shrink", json!({"shards": 8, "shardLimits": "Off"}), json!({})).await;
    eventually("Ready on 4 brokers", || {
        let s = stream_obj(&fake, "shrink")?;
        (condition(&s, "Ready")?.0 == "True" && s["status"]["brokers"]["desired"] == 4).then_some(())
    })
    .await;
    let described = cluster.client(1).describe("shrink").await.unwrap();
    assert!(described.shards.iter().any(|s| s.replicas.contains(&4)));
    let ledger = Arc::new(Ledger::default());
    let endpoints: Vec<String> = cluster.brokers.iter().filter(|b| b.id != 4).map(|b| b.endpoint()).collect();
    let producers: Vec<_> = (0..3)
        .map(|p| tokio::spawn(produce(endpoints.clone(), "shrink".into(), p, 20, usize::MAX, ledger.clone())))
        .collect();

    // The operator restarts with 100 replicas per broker: 8 x 3 replicas need 3 brokers.
    drop(first);
    let _second = operator(&fake, endpoint, Settings::default());
    eventually("3 brokers", || {
        fake.get("apps/statefulsets", NS, "shrink-broker").filter(|s| s["spec"]["replicas"] == 3)
    })
    .await;
    let described = cluster.client(1).describe("shrink").await.unwrap();
    assert!(
        described.shards.iter().all(|s| !s.replicas.contains(&4) && s.replicas.len() == 3),
        "the set shrank only after every replica left node 4: {:?}",
        described.shards
    );
    cluster.stop(4); // the StatefulSet controller deletes pod 3
    let reasons = event_reasons(&fake);
    assert!(reasons.contains(&"BrokersRemoved".to_string()), "{reasons:?}");
    let peers = fake.get("/configmaps", NS, "shrink-broker-config").unwrap()["data"]["FRESHET_PEERS"].clone();
    assert_eq!(peers.as_str().unwrap().split(',').count(), 3, "the peer list shrinks too");

    stop_and_verify(&cluster, &cluster.client(1), "shrink", &ledger, producers, 2_000).await;
}
