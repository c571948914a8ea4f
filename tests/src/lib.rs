//! Test harness: real `freshet-broker` processes on 127.0.0.1, each with its own data
//! directory, that tests can SIGKILL and restart.
//!
//! Binaries come from the profile `make test` built (`FRESHET_BIN`, or the directory
//! above this test executable); tests never invoke cargo.

pub mod kube_api;

use freshet_broker::client::Client;
use freshet_broker::pb;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use freshet_broker;

/// Directory holding `freshet-broker` and `freshet`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FRESHET_BIN") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test> -> target/<profile>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|p| p.parent()).expect("target/<profile>").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests through `make test`, which builds it",
        path.display()
    );
    path
}

/// A free port below the kernel's ephemeral range: a node restarted later must get its
/// port back, and a port from the ephemeral range may meanwhile be the local end of some
/// outgoing connection ("address already in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (low, span) = (10_000u16, ephemeral_low.saturating_sub(10_000).max(1000));
    // Each test process walks the range from its own random start, so concurrent test
    // binaries rarely try the same ports; a port taken by anyone is skipped.
    let _ = NEXT.compare_exchange(0, 1 + rand_u16() % span, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let port = low + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn rand_u16() -> u16 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) as u16
}

pub struct Broker {
    pub id: u64,
    pub addr: String,
    /// Where this node serves the Kinesis HTTP API.
    pub kinesis_addr: String,
    pub data: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn kinesis_endpoint(&self) -> String {
        format!("http://{}", self.kinesis_addr)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// Worker threads for each of `nodes` nodes sharing this machine: its cores split between
/// them, at least one each (as `make run` does).
pub fn worker_threads(nodes: u64) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / nodes.max(1) as usize).max(1)
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub brokers: Vec<Broker>,
    peers: String,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `n` nodes and waits until the metadata group has a leader.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, &[]).await
    }

    pub async fn start_with(n: u64, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        let peers = ports.iter().map(|(id, p)| format!("{id}=127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let brokers = ports
            .iter()
            .map(|(id, port)| Broker {
                id: *id,
                addr: format!("127.0.0.1:{port}"),
                kinesis_addr: format!("127.0.0.1:{}", free_port()),
                data: dir.path().join(format!("node{id}")),
                child: None,
            })
            .collect();
        let mut env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if std::env::var_os("FRESHET_WORKER_THREADS").is_none()
            && !env.iter().any(|(k, _)| k == "FRESHET_WORKER_THREADS")
        {
            env.push(("FRESHET_WORKER_THREADS".into(), worker_threads(n).to_string()));
        }
        let mut c = Cluster { dir, brokers, peers, env };
        for id in 1..=n {
            c.start_node(id);
        }
        c.wait_ready().await;
        c
    }

    /// Starts one more node (the next id) whose peers include every node so far; the
    /// running nodes keep their old peer list, as pods do until they are rolled.
    pub fn add_node(&mut self) -> u64 {
        let id = self.brokers.iter().map(|b| b.id).max().unwrap_or(0) + 1;
        let port = free_port();
        self.peers = format!("{},{id}=127.0.0.1:{port}", self.peers);
        self.brokers.push(Broker {
            id,
            addr: format!("127.0.0.1:{port}"),
            kinesis_addr: format!("127.0.0.1:{}", free_port()),
            data: self.dir.path().join(format!("node{id}")),
            child: None,
        });
        self.start_node(id);
        id
    }

    fn broker(&mut self, id: u64) -> &mut Broker {
        self.brokers.iter_mut().find(|b| b.id == id).expect("node id")
    }

    pub fn start_node(&mut self, id: u64) {
        self.start_node_with(id, &[]);
    }

    /// Starts node `id` with `extra` environment on top of the cluster's: a node configured
    /// differently, or standing in for an older version.
    pub fn start_node_with(&mut self, id: u64, extra: &[(&str, &str)]) {
        let peers = self.peers.clone();
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log_path = self.dir.path().join(format!("node{id}.log"));
        let b = self.broker(id);
        assert!(b.child.is_none(), "node {id} already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
        let child = Command::new(bin("freshet-broker"))
            .args(["--id", &id.to_string(), "--listen", &b.addr, "--peers", &peers])
            .args(["--kinesis-listen", &b.kinesis_addr])
            .arg("--data-dir")
            .arg(&b.data)
            .envs(env)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn freshet-broker");
        b.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs, unsynced writes are lost.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.broker(id).child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut child) = self.broker(id).child.take() {
            unsafe_sigterm(child.id());
            let start = Instant::now();
            loop {
                if child.try_wait().expect("wait").is_some() {
                    return;
                }
                if start.elapsed() > Duration::from_secs(15) {
                    child.kill().ok();
                    child.wait().ok();
                    panic!("node {id} did not stop within 15 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.start_node(id);
    }

    pub fn client(&self, id: u64) -> Client {
        let b = self.brokers.iter().find(|b| b.id == id).expect("node id");
        Client::new(&b.endpoint()).expect("client")
    }

    /// A client for some running node.
    pub fn any_client(&self) -> Client {
        let b = self.brokers.iter().find(|b| b.is_running()).expect("a running node");
        Client::new(&b.endpoint()).expect("client")
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }

    /// The last lines of every node's log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.brokers
            .iter()
            .map(|b| {
                let log = self.log(b.id);
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "--- node {} log (last 15 lines)\n{}",
                    b.id,
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every running node answers and the metadata group has a leader.
    pub async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(s) = self.any_client().api.clone().cluster_status(pb::ClusterStatusRequest {}).await {
                let s = s.into_inner();
                let running: Vec<u64> =
                    self.brokers.iter().filter(|b| b.is_running()).map(|b| b.id).collect();
                let up = s.nodes.iter().filter(|n| n.reachable && running.contains(&n.id)).count();
                let meta = s.groups.iter().find(|g| g.group_id == 0).and_then(|g| g.leader);
                if up == running.len() && meta.is_some() {
                    return;
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "cluster not ready within 60 s
{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every shard of `stream` has a leader that every running replica agrees on.
    pub async fn wait_leaders(&self, stream: &str) -> BTreeMap<String, u64> {
        let start = Instant::now();
        loop {
            if let Ok(s) = self.any_client().api.clone().cluster_status(pb::ClusterStatusRequest {}).await {
                let groups: Vec<_> =
                    s.into_inner().groups.into_iter().filter(|g| g.stream_name == stream).collect();
                let leaders: BTreeMap<String, u64> = groups
                    .iter()
                    .filter_map(|g| {
                        let leader = g.leader?;
                        let leader_says = g.replicas.iter().any(|r| r.node == leader && r.state == "Leader");
                        leader_says.then(|| (g.shard_id.clone(), leader))
                    })
                    .collect();
                if !groups.is_empty() && leaders.len() == groups.len() {
                    return leaders;
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "shards of {stream} without a leader after 60 s
{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a stream and waits until it is ACTIVE.
    pub async fn create_stream(&self, name: &str, shards: u32, limits: Option<pb::ShardLimits>) {
        self.any_client()
            .api
            .clone()
            .create_stream(pb::CreateStreamRequest {
                stream_name: name.into(),
                shard_count: shards,
                retention_hours: None,
                replication_factor: None,
                limits,
                ..Default::default()
            })
            .await
            .expect("create stream");
        let start = Instant::now();
        while self.any_client().describe(name).await.expect("describe").status != "ACTIVE" {
            assert!(start.elapsed() < Duration::from_secs(60), "{name} not ACTIVE after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// No write limits: tests that count records must not be throttled.
pub fn unlimited() -> Option<pb::ShardLimits> {
    Some(pb::ShardLimits { enforce: false, write_bytes_per_second: 0, write_records_per_second: 0 })
}

/// A PutRecord of `data` under `key`, its shard chosen by the key's MD5 as Kinesis does.
pub fn put_request(stream: &str, key: &str, data: impl Into<Vec<u8>>) -> pb::PutRecordRequest {
    pb::PutRecordRequest {
        stream_name: stream.into(),
        partition_key: key.into(),
        data: data.into(),
        explicit_hash_key: None,
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for b in &mut self.brokers {
            if let Some(mut c) = b.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Post-mortem: FRESHET_KEEP_FAILED=1 keeps a failed test's data directories
        // (node logs and RocksDB) and prints where they are.
        if std::thread::panicking() && std::env::var_os("FRESHET_KEEP_FAILED").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("kept the failed cluster's data in {}", dir.keep().display());
        }
    }
}

/// Reads every record of every shard from TRIM_HORIZON: shard id -> records in order.
pub async fn read_all(client: &Client, stream: &str) -> BTreeMap<String, Vec<pb::Record>> {
    let mut out = BTreeMap::new();
    for shard in client.describe(stream).await.expect("describe").shards {
        let it = client
            .shard_iterator(stream, &shard.shard_id, pb::IteratorType::TrimHorizon, None, None)
            .await
            .expect("iterator");
        out.insert(shard.shard_id.clone(), client.read_to_end(it).await.expect("read shard"));
    }
    out
}

/// A producer workload that remembers what was acknowledged, for checking afterwards
/// that no acknowledged record was lost, duplicated or reordered.
pub mod workload {
    use super::*;
    use std::collections::{BTreeSet, HashMap};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// A record the cluster acknowledged: `key`'s `n`th record at `(shard, seq)`.
    #[derive(Debug, Clone)]
    pub struct Ack {
        pub key: String,
        pub n: u64,
        pub shard: String,
        pub seq: String,
    }

    #[derive(Default)]
    pub struct Ledger {
        pub acks: Mutex<Vec<Ack>>,
        /// Records sent again after an attempt whose outcome was never learned
        /// (these alone may appear twice).
        pub retried: Mutex<BTreeSet<String>>,
        pub acked: AtomicUsize,
        pub stop: AtomicBool,
    }

    pub fn data(key: &str, n: u64) -> String {
        format!("{key}:{n}")
    }

    /// One producer: `keys` partition keys, at most one in-flight record per key, so each
    /// key's records are acknowledged in order. Stops when `ledger.stop` is set or after
    /// `max_records` acknowledgements of its own.
    pub async fn produce(
        endpoints: Vec<String>,
        stream: String,
        producer: usize,
        keys: usize,
        max_records: usize,
        ledger: Arc<Ledger>,
    ) {
        let keys: Vec<String> = (0..keys).map(|k| format!("p{producer}-k{k}")).collect();
        let mut next: HashMap<String, u64> = keys.iter().map(|k| (k.clone(), 0)).collect();
        let mut mine = 0usize;
        let mut node = producer % endpoints.len();
        let mut client = Client::new(&endpoints[node]).unwrap();
        while !ledger.stop.load(Ordering::Relaxed) && mine < max_records {
            let batch: Vec<(String, u64)> = keys.iter().map(|k| (k.clone(), next[k])).collect();
            let req = pb::PutRecordsRequest {
                stream_name: stream.clone(),
                records: batch
                    .iter()
                    .map(|(k, n)| pb::PutRecordsEntry {
                        partition_key: k.clone(),
                        data: data(k, *n).into_bytes().into(),
                        explicit_hash_key: None,
                    })
                    .collect(),
            };
            match client.api.clone().put_records(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    assert_eq!(resp.records.len(), batch.len(), "one result per record");
                    for ((k, n), r) in batch.iter().zip(resp.records) {
                        if r.error_code.is_empty() {
                            ledger.acks.lock().unwrap().push(Ack {
                                key: k.clone(),
                                n: *n,
                                shard: r.shard_id,
                                seq: r.sequence_number,
                            });
                            *next.get_mut(k).unwrap() += 1;
                            mine += 1;
                            ledger.acked.fetch_add(1, Ordering::Relaxed);
                        } else if r.error_code != "ProvisionedThroughputExceededException" {
                            // Failed for a reason whose outcome we cannot be sure of.
                            ledger.retried.lock().unwrap().insert(data(k, *n));
                        }
                    }
                }
                Err(_) => {
                    // Outcome unknown for every record of the request: retry them all,
                    // through another node.
                    for (k, n) in &batch {
                        ledger.retried.lock().unwrap().insert(data(k, *n));
                    }
                    node = (node + 1) % endpoints.len();
                    client = Client::new(&endpoints[node]).unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Lets the producers reach `at_least` acknowledgements, stops them, and checks that
    /// `stream`, read through `client` once every shard has a leader, holds what they were
    /// told (`verify`).
    pub async fn stop_and_verify(
        cluster: &Cluster,
        client: &Client,
        stream: &str,
        ledger: &Ledger,
        producers: Vec<tokio::task::JoinHandle<()>>,
        at_least: usize,
    ) {
        while ledger.acked.load(Ordering::Relaxed) < at_least {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ledger.stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.await.unwrap();
        }
        cluster.wait_leaders(stream).await;
        verify(ledger, &read_all(client, stream).await);
    }

    /// Checks what was read back against what was acknowledged.
    pub fn verify(ledger: &Ledger, read: &BTreeMap<String, Vec<pb::Record>>) {
        let acks = ledger.acks.lock().unwrap();
        let retried = ledger.retried.lock().unwrap();
        let mut seen: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
        for (shard, records) in read {
            for w in records.windows(2) {
                assert!(
                    w[0].sequence_number < w[1].sequence_number,
                    "{shard}: sequence numbers out of order: {} then {}",
                    w[0].sequence_number,
                    w[1].sequence_number
                );
            }
            for r in records {
                let text = String::from_utf8(r.data.to_vec()).expect("utf-8 data");
                let (key, n) = text.rsplit_once(':').expect("key:n");
                assert_eq!(key, r.partition_key, "partition key travels with the record");
                per_key.entry(key.to_string()).or_default().push(n.parse().unwrap());
                seen.entry(text.clone()).or_default().push((shard.clone(), r.sequence_number.clone()));
            }
        }
        // Every lost record at once, with what the read holds around each: the evidence a
        // durability bug needs.
        let lost: Vec<String> = acks
            .iter()
            .filter(|a| !seen.contains_key(&data(&a.key, a.n)))
            .map(|a| {
                let around: Vec<&str> = read
                    .get(&a.shard)
                    .map(|rs| {
                        let at = rs.partition_point(|r| r.sequence_number < a.seq);
                        rs[at.saturating_sub(2)..(at + 2).min(rs.len())]
                            .iter()
                            .map(|r| r.sequence_number.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{} at {} {} (read holds {around:?} around it)", data(&a.key, a.n), a.shard, a.seq)
            })
            .collect();
        assert!(lost.is_empty(), "{} acknowledged records were lost:\n{}", lost.len(), lost.join("\n"));
        for a in acks.iter() {
            let d = data(&a.key, a.n);
            let copies = seen.get(&d).map(|v| v.as_slice()).unwrap_or(&[]);
            assert!(!copies.is_empty(), "acknowledged record {d} ({} {}) was lost", a.shard, a.seq);
            assert!(
                copies.contains(&(a.shard.clone(), a.seq.clone())),
                "acknowledged record {d} is not at its acknowledged position {} {}: found {copies:?}",
                a.shard,
                a.seq
            );
            if !retried.contains(&d) {
                assert_eq!(
                    copies.len(),
                    1,
                    "record {d} was never retried but appears {} times",
                    copies.len()
                );
            }
        }
        for (key, ns) in &per_key {
            let mut firsts: Vec<u64> = Vec::new();
            for n in ns {
                if !firsts.contains(n) {
                    firsts.push(*n);
                }
            }
            assert!(firsts.windows(2).all(|w| w[0] < w[1]), "records of key {key} out of order: {ns:?}");
        }
    }
}

/// The AWS SDK for Rust's Kinesis client for `endpoint`, with fixed test credentials (any
/// signature is accepted unless the nodes were given a credentials file) and rustls with
/// ring for TLS.
pub fn kinesis_client(endpoint: String) -> aws_sdk_kinesis::Client {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    kinesis_client_with(endpoint, http)
}

/// A Kinesis client of `endpoint` over the given HTTP client (TLS settings, for one).
pub fn kinesis_client_with(
    endpoint: String,
    http: aws_sdk_kinesis::config::SharedHttpClient,
) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"))
        .http_client(http)
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}
