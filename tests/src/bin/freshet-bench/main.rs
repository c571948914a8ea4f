//! `make bench`: the same workloads against a local 3-node Freshet cluster (over gRPC and
//! over the Kinesis HTTP API with the AWS SDK for Rust), a 3-node NATS JetStream cluster
//! (file storage, 3 replicas, fsync before ack) and kinesalite (the single-process Kinesis
//! emulator), measured in the same run on the same machine, reported side by side with
//! ratios.

use anyhow::Context;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use freshet_tests::freshet_broker::pb;
use freshet_tests::{unlimited, Cluster};
use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Concurrent producers per run; `--producers N` changes it (for latency studies).
static PRODUCERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(8);

/// `--via-any-node`: gRPC producers send to their one node, which forwards to the shard
/// leaders, instead of straight to the leaders (to measure what routing saves).
static VIA_ANY_NODE: AtomicBool = AtomicBool::new(false);

fn via_any_node() -> bool {
    VIA_ANY_NODE.load(Ordering::Relaxed)
}

fn producer_count() -> usize {
    PRODUCERS.load(Ordering::Relaxed)
}
const BATCH: usize = 100;
const RECORD: usize = 1024;
/// Shards of the benchmark streams: sized for the load (about 40 MiB/s at 1 MiB/s per shard).
const SHARDS: u32 = 64;

mod kinesalite;
mod nats;
mod operator;
use kinesalite::kinesis_comparison;
use nats::{nats_run, start_nats};
use operator::{operator_reconcile, operator_row};

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// A 1 KiB payload whose first 8 bytes carry the send time, for end-to-end latency.
fn payload() -> Vec<u8> {
    let mut v = vec![b'x'; RECORD];
    v[..8].copy_from_slice(&now_us().to_be_bytes());
    v
}

fn sent_at(data: &[u8]) -> Option<u64> {
    data.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap()))
}

#[derive(Clone)]
struct Recorder {
    records: Arc<AtomicU64>,
    put: Arc<Mutex<Histogram<u64>>>,
    e2e: Arc<Mutex<Histogram<u64>>>,
}

impl Recorder {
    fn new() -> Self {
        let h = || Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap()));
        Recorder { records: Arc::new(AtomicU64::new(0)), put: h(), e2e: h() }
    }
    fn put_done(&self, started: Instant, records: u64) {
        let us = started.elapsed().as_micros() as u64;
        self.put.lock().unwrap().saturating_record(us.max(1));
        self.records.fetch_add(records, Ordering::Relaxed);
    }
    fn received(&self, data: &[u8]) {
        if let Some(t) = sent_at(data) {
            self.e2e.lock().unwrap().saturating_record(now_us().saturating_sub(t).max(1));
        }
    }
}

struct Result {
    name: String,
    records_per_sec: f64,
    mib_per_sec: f64,
    put_p50_ms: f64,
    put_p99_ms: f64,
    e2e_p50_ms: f64,
    e2e_p99_ms: f64,
    /// Server CPU time per acknowledged record, all three servers together.
    cpu_us_per_record: f64,
}

impl Result {
    fn from(name: &str, r: &Recorder, elapsed: Duration, server_cpu_ms: u64) -> Result {
        let n = r.records.load(Ordering::Relaxed) as f64;
        let put = r.put.lock().unwrap();
        let e2e = r.e2e.lock().unwrap();
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                f64::NAN
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Result {
            name: name.into(),
            records_per_sec: n / elapsed.as_secs_f64(),
            mib_per_sec: n * RECORD as f64 / 1048576.0 / elapsed.as_secs_f64(),
            put_p50_ms: ms(&put, 0.5),
            put_p99_ms: ms(&put, 0.99),
            e2e_p50_ms: ms(&e2e, 0.5),
            e2e_p99_ms: ms(&e2e, 0.99),
            cpu_us_per_record: server_cpu_ms as f64 * 1000.0 / n.max(1.0),
        }
    }
}

// ---------------------------------------------------------------- Freshet

/// How producers reach a Kinesis-like service.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Freshet's native gRPC API, each record straight to its shard's leader.
    Grpc,
    /// The native gRPC API through the producer's one node, which forwards to the shard
    /// leaders as it does for an AWS SDK: the baseline the Kinesis API is compared with.
    GrpcAnyNode,
    /// The Kinesis HTTP API through the AWS SDK for Rust (JSON, HTTP/1.1, as the SDK
    /// sends by default).
    Kinesis,
}

/// One producer's connection.
enum Producer {
    /// The leader-aware producer of the native client library, as the `freshet` CLI uses.
    Grpc(freshet_tests::freshet_broker::producer::Producer),
    Kinesis(aws_sdk_kinesis::Client),
}

impl Producer {
    /// Writes `batch` records (a PutRecord when 1, else PutRecords); the acknowledged count.
    async fn put(&mut self, stream: &str, batch: usize, p: usize, i: &mut u64) -> anyhow::Result<u64> {
        let mut key = || {
            *i += 1;
            format!("p{p}-{i}")
        };
        match self {
            Producer::Grpc(api) if batch == 1 => {
                let req = pb::PutRecordRequest {
                    stream_name: stream.into(),
                    partition_key: key(),
                    data: payload(),
                    explicit_hash_key: None,
                };
                api.put_record(req).await?;
                Ok(1)
            }
            Producer::Grpc(api) => {
                let records = (0..batch)
                    .map(|_| pb::PutRecordsEntry {
                        partition_key: key(),
                        data: payload().into(),
                        explicit_hash_key: None,
                    })
                    .collect();
                let r =
                    api.put_records(pb::PutRecordsRequest { stream_name: stream.into(), records }).await?;
                Ok(r.records.len() as u64 - u64::from(r.failed_record_count))
            }
            Producer::Kinesis(k) if batch == 1 => {
                k.put_record()
                    .stream_name(stream)
                    .partition_key(key())
                    .data(Blob::new(payload()))
                    .send()
                    .await?;
                Ok(1)
            }
            Producer::Kinesis(k) => {
                let records = (0..batch)
                    .map(|_| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(key())
                            .data(Blob::new(payload()))
                            .build()
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let r = k.put_records().stream_name(stream).set_records(Some(records)).send().await?;
                Ok(r.records().len() as u64 - r.failed_record_count().unwrap_or(0) as u64)
            }
        }
    }
}

/// What a run writes to and measures.
struct Target<'a> {
    /// Shown in the results table.
    name: String,
    /// Producer `p`'s connection.
    producer: &'a (dyn Fn(usize) -> Producer + Sync),
    /// The Freshet cluster behind it, whose gRPC Subscribe measures end-to-end latency.
    cluster: Option<&'a Cluster>,
    /// The server processes whose CPU time is counted.
    pids: Vec<u32>,
}

async fn run(target: Target<'_>, stream: &str, batch: usize, duration: Duration) -> anyhow::Result<Result> {
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    if let Some(cluster) = target.cluster {
        // One subscriber per shard measures end-to-end latency (push, no polling).
        let shards = cluster.client(1).describe(stream).await?.shards;
        for (i, s) in shards.iter().enumerate() {
            let mut api = cluster.client(1 + (i as u64 % 3)).api.clone();
            let req = pb::SubscribeRequest {
                stream_name: stream.into(),
                shard_id: s.shard_id.clone(),
                iterator_type: pb::IteratorType::Latest as i32,
                starting_sequence_number: None,
                timestamp_ms: None,
                keep_alive_ms: None,
            };
            let rec = rec.clone();
            let stop = stop.clone();
            subs.push(tokio::spawn(async move {
                let events = api.subscribe(req).await?.into_inner();
                consume_until(events, &stop, |e| e.records.iter().for_each(|r| rec.received(&r.data))).await;
                anyhow::Ok(())
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = CpuWindow::start(target.pids.clone());
    let start = Instant::now();
    let mut producers = Vec::new();
    for p in 0..producer_count() {
        let mut producer = (target.producer)(p);
        let rec = rec.clone();
        let stream = stream.to_string();
        producers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < duration {
                let t = Instant::now();
                let acked = producer.put(&stream, batch, p, &mut i).await?;
                rec.put_done(t, acked);
            }
            anyhow::Ok(())
        }));
    }
    for p in producers {
        p.await??;
    }
    let elapsed = start.elapsed();
    let cpu_ms = cpu.elapsed_ms();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for s in subs {
        let _ = s.await;
    }
    let workload = if batch == 1 { "single puts" } else { "PutRecords x100" };
    Ok(Result::from(&format!("{}, {workload}", target.name), &rec, elapsed, cpu_ms))
}

/// A run against the local Freshet cluster over `protocol`, producers spread over its nodes.
async fn freshet_run(
    cluster: &Cluster,
    protocol: Protocol,
    stream: &str,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Result> {
    let producer = |p: usize| {
        let node = &cluster.brokers[p % cluster.brokers.len()];
        match protocol {
            Protocol::Grpc | Protocol::GrpcAnyNode => {
                let endpoint = format!("http://{}", node.addr);
                let producer = if via_any_node() || protocol == Protocol::GrpcAnyNode {
                    freshet_tests::freshet_broker::producer::Producer::through(&endpoint)
                } else {
                    freshet_tests::freshet_broker::producer::Producer::new(&endpoint)
                };
                Producer::Grpc(producer.expect("endpoint"))
            }
            Protocol::Kinesis => Producer::Kinesis(freshet_tests::kinesis_client(node.kinesis_endpoint())),
        }
    };
    let name = match protocol {
        Protocol::Grpc => "Freshet gRPC",
        Protocol::GrpcAnyNode => "Freshet gRPC through any node",
        Protocol::Kinesis => "Freshet Kinesis API (aws-sdk-kinesis)",
    };
    let pids = cluster.brokers.iter().filter_map(|b| b.pid()).collect();
    run(
        Target { name: name.into(), producer: &producer, cluster: Some(cluster), pids },
        stream,
        batch,
        duration,
    )
    .await
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields after ')' start at index 3 (state); utime = 14th, stime = 15th overall.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Feeds every item of a consumer's stream to `on_item` until `stop` is set or the stream
/// ends or fails (checking `stop` at least every 200 ms).
async fn consume_until<S, T, E>(mut items: S, stop: &AtomicBool, mut on_item: impl FnMut(T))
where
    S: futures::Stream<Item = std::result::Result<T, E>> + Unpin,
{
    use futures::StreamExt;
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), items.next()).await {
            Ok(Some(Ok(item))) => on_item(item),
            Ok(_) => break,
            Err(_) => {}
        }
    }
}

/// CPU time used by a set of server processes since `start`.
struct CpuWindow {
    pids: Vec<u32>,
    before: u64,
}

impl CpuWindow {
    fn start(pids: Vec<u32>) -> CpuWindow {
        let before = pids.iter().map(|p| cpu_ticks(*p)).sum();
        CpuWindow { pids, before }
    }

    /// Milliseconds of CPU (USER_HZ is 100 on Linux: one tick is 10 ms).
    fn elapsed_ms(&self) -> u64 {
        (self.pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>() - self.before) * 10
    }
}

/// Resident memory and idle CPU of a node holding 100 idle shard replicas.
async fn idle_footprint() -> anyhow::Result<(f64, f64)> {
    let cluster = Cluster::start(3).await;
    cluster.create_stream("idle", 100, unlimited()).await;
    cluster.wait_leaders("idle").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = cluster.brokers[0].pid().context("node 1 pid")?;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let t0 = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = (cpu_ticks(pid) - t0) as f64 / ticks_per_sec / 10.0 * 100.0;
    Ok((rss_kib(pid) as f64 / 1024.0, cpu))
}

/// Time from SIGKILL of a shard leader to the first acknowledged write on its successor.
async fn failover_times(rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("fo", 1, unlimited()).await;
    let mut out = Vec::new();
    for _ in 0..rounds {
        let leader = cluster.wait_leaders("fo").await["shardId-000000000000"];
        let other = (1..=3).find(|id| *id != leader).unwrap();
        let mut api = cluster.client(other).api.clone();
        api.put_record(pb::PutRecordRequest {
            stream_name: "fo".into(),
            partition_key: "k".into(),
            data: payload(),
            explicit_hash_key: None,
        })
        .await?;
        let t0 = Instant::now();
        cluster.kill(leader);
        loop {
            let req = pb::PutRecordRequest {
                stream_name: "fo".into(),
                partition_key: "k".into(),
                data: payload(),
                explicit_hash_key: None,
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), api.put_record(req)).await {
                break;
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "no successor within 30 s");
        }
        out.push(t0.elapsed());
        cluster.start_node(leader);
        cluster.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(out)
}

fn row(r: &Result) -> String {
    // A peer without a push API (kinesalite) has no end-to-end figures.
    let ms = |v: f64| if v.is_nan() { "-".to_string() } else { format!("{v:.2}") };
    format!(
        "| {} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {} | {:.0} |",
        r.name,
        r.records_per_sec,
        r.mib_per_sec,
        r.put_p50_ms,
        r.put_p99_ms,
        ms(r.e2e_p50_ms),
        ms(r.e2e_p99_ms),
        r.cpu_us_per_record
    )
}

/// The value after `name` on the command line, if it parses.
fn flag<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().skip_while(|a| *a != name).nth(1).and_then(|s| s.parse().ok())
}

/// Freshet's rows from a fresh 3-node cluster, in this order: PutRecords x100 on
/// `shards.0` shards (when `batched`), single puts on `shards.1`, and (when `one_shard`)
/// single puts on a 1-shard stream.
async fn freshet_rows(
    shards: (u32, u32),
    batched: bool,
    one_shard: bool,
    duration: Duration,
) -> anyhow::Result<Vec<Result>> {
    eprintln!(
        "==> Freshet: 3 nodes, streams of {} and {} shards, replication 3, fsync before ack",
        shards.0, shards.1
    );
    let cluster = Cluster::start(3).await;
    cluster.create_stream("batch", shards.0, unlimited()).await;
    cluster.create_stream("single", shards.1, unlimited()).await;
    let mut streams = vec!["batch", "single"];
    if one_shard {
        // One shard is one Raft group and one total order, as one NATS stream is.
        cluster.create_stream("single1", 1, unlimited()).await;
        streams.push("single1");
    }
    for stream in streams {
        cluster.wait_leaders(stream).await;
    }
    let mut rows = Vec::new();
    if batched {
        rows.push(freshet_run(&cluster, Protocol::Grpc, "batch", BATCH, duration).await?);
        eprintln!("{}", row(rows.last().unwrap()));
    }
    rows.push(freshet_run(&cluster, Protocol::Grpc, "single", 1, duration).await?);
    eprintln!("{}", row(rows.last().unwrap()));
    if one_shard {
        let mut one = freshet_run(&cluster, Protocol::Grpc, "single1", 1, duration).await?;
        one.name.push_str(", 1 shard");
        eprintln!("{}", row(&one));
        rows.push(one);
    }
    Ok(rows)
}

/// NATS' rows from a fresh 3-node cluster: batched and single publishes to one stream,
/// then (when `per_shard`) to `SHARDS` streams, the ordering guarantee Freshet gives (per
/// shard, not total), each stream its own Raft group in NATS.
async fn nats_rows(server: &Path, per_shard: bool, duration: Duration) -> anyhow::Result<Vec<Result>> {
    eprintln!(
        "==> NATS JetStream {}: 3 nodes, file storage, 3 replicas, sync_interval always",
        server.display()
    );
    let nats = start_nats(server)?;
    let mut runs = vec![("BATCH", BATCH, 1), ("SINGLE", 1, 1)];
    if per_shard {
        runs.extend([("PART", BATCH, SHARDS as usize), ("PSINGLE", 1, SHARDS as usize)]);
    }
    let mut rows = Vec::new();
    for (name, batch, streams) in runs {
        rows.push(nats_run(&nats, name, batch, streams, duration).await?);
        eprintln!("{}", row(rows.last().unwrap()));
    }
    Ok(rows)
}

/// One round of the goal workloads: (records/s, put p99 ms) of batched and single puts,
/// Freshet's on `SHARDS` shards and NATS' on one stream, and which of the two ran first.
struct Round {
    freshet_first: bool,
    freshet: [(f64, f64); 2],
    nats: [(f64, f64); 2],
}

impl Round {
    fn new(freshet_first: bool, freshet: &[Result], nats: &[Result]) -> Round {
        let figures = |r: &Result| (r.records_per_sec, r.put_p99_ms);
        Round {
            freshet_first,
            freshet: [figures(&freshet[0]), figures(&freshet[1])],
            nats: [figures(&nats[0]), figures(&nats[1])],
        }
    }

    /// Freshet / NATS throughput of workload `w` (0 batched, 1 single).
    fn throughput_ratio(&self, w: usize) -> f64 {
        self.freshet[w].0 / self.nats[w].0
    }

    /// Freshet / NATS put p99 of workload `w`.
    fn p99_ratio(&self, w: usize) -> f64 {
        self.freshet[w].1 / self.nats[w].1
    }
}

/// Runs rounds of the goal workloads until there are `rounds`, alternating which system
/// goes first (the first round of a full run is the caller's, with its extra rows).
async fn run_rounds(
    goal: &mut Vec<Round>,
    rounds: usize,
    shards: (u32, u32),
    nats_server: &Path,
    duration: Duration,
) -> anyhow::Result<()> {
    for round in goal.len()..rounds {
        eprintln!("==> Goal workloads, round {} of {rounds}", round + 1);
        let freshet_first = round % 2 == 0;
        let (f, n) = if freshet_first {
            let f = freshet_rows(shards, true, false, duration).await?;
            (f, nats_rows(nats_server, false, duration).await?)
        } else {
            let n = nats_rows(nats_server, false, duration).await?;
            (freshet_rows(shards, true, false, duration).await?, n)
        };
        goal.push(Round::new(freshet_first, &f, &n));
    }
    Ok(())
}

/// The rounds' table and the medians of their ratios, on which the goal is judged.
fn print_rounds(goal: &[Round], (batched, single): (u32, u32)) {
    println!(
        "\nGoal workloads by round (batched on {batched} shards, single puts on {single}, against one NATS stream), records/s and Freshet / NATS:"
    );
    println!("| round | first | Freshet batched | NATS batched | ratio | put p99 ratio | Freshet single | NATS single | ratio | put p99 ratio |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, r) in goal.iter().enumerate() {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}x | {:.2}x | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            i + 1,
            if r.freshet_first { "Freshet" } else { "NATS" },
            r.freshet[0].0,
            r.nats[0].0,
            r.throughput_ratio(0),
            r.p99_ratio(0),
            r.freshet[1].0,
            r.nats[1].0,
            r.throughput_ratio(1),
            r.p99_ratio(1)
        );
    }
    let throughput = |w| median(goal.iter().map(|r| r.throughput_ratio(w)).collect());
    let p99 = |w| median(goal.iter().map(|r| r.p99_ratio(w)).collect());
    let n = goal.len();
    println!(
        "Freshet / NATS throughput (median of {n} rounds): batched {:.2}x, single {:.2}x",
        throughput(0),
        throughput(1)
    );
    println!("Freshet / NATS put p99 (median of {n} rounds): batched {:.2}x, single {:.2}x", p99(0), p99(1));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let nats_server =
        PathBuf::from(flag(&args, "--nats-server").unwrap_or_else(|| "nats-server".to_string()));
    let secs: u64 = flag(&args, "--seconds").unwrap_or(15);
    let duration = Duration::from_secs(secs);
    // `--only goal|freshet|single|nats|kinesis|footprint|operator` runs just that part.
    let only: Option<String> = flag(&args, "--only");
    let kinesalite = PathBuf::from(flag(&args, "--kinesalite").unwrap_or_else(|| "kinesalite".to_string()));
    if let Some(n) = flag(&args, "--producers") {
        PRODUCERS.store(n, Ordering::Relaxed);
    }
    VIA_ANY_NODE.store(args.iter().any(|a| a == "--via-any-node"), Ordering::Relaxed);
    // This machine's speed drifts by a third within an hour, so the goal workloads run
    // `--rounds` times, alternating which system goes first; ratios are taken per round.
    let rounds: usize = flag(&args, "--rounds").unwrap_or(1).max(1);
    let shards =
        (flag(&args, "--batch-shards").unwrap_or(SHARDS), flag(&args, "--single-shards").unwrap_or(SHARDS));
    eprintln!("==> {} producers, {RECORD}-byte records, {secs} s per run", producer_count());

    match only.as_deref() {
        Some("operator") => {
            println!(
                "{}",
                operator_row(&operator_reconcile(flag(&args, "--streams").unwrap_or(1000)).await?)
            );
            return Ok(());
        }
        Some("footprint") => {
            let (rss_mib, idle_cpu) = idle_footprint().await?;
            let mut fo = failover_times(5).await?;
            fo.sort();
            println!("idle: {rss_mib:.0} MiB, {idle_cpu:.1}% of a core; failover: {fo:?}");
            return Ok(());
        }
        // `single` runs just Freshet's single puts (for profiling them alone).
        Some(part @ ("freshet" | "single")) => {
            freshet_rows(shards, part == "freshet", true, duration).await?;
            return Ok(());
        }
        Some("nats") => {
            nats_rows(&nats_server, true, duration).await?;
            return Ok(());
        }
        // `goal` runs just the goal workloads, `--rounds` times (for judging a change).
        Some("goal") => {
            let mut goal = Vec::new();
            run_rounds(&mut goal, rounds, shards, &nats_server, duration).await?;
            print_rounds(&goal, shards);
            return Ok(());
        }
        Some("kinesis") => {
            let (_, lines) = kinesis_comparison(&kinesalite, duration).await?;
            lines.iter().for_each(|l| println!("{l}"));
            return Ok(());
        }
        Some(other) => {
            anyhow::bail!(
                "unknown --only {other}: goal, freshet, single, nats, kinesis, footprint or operator"
            )
        }
        None => {}
    }

    let freshet = freshet_rows(shards, true, true, duration).await?;
    let nats = nats_rows(&nats_server, true, duration).await?;
    let mut goal = vec![Round::new(true, &freshet, &nats)];
    run_rounds(&mut goal, rounds, shards, &nats_server, duration).await?;
    let (kinesis_rows, kinesis_lines) = kinesis_comparison(&kinesalite, duration).await?;
    eprintln!("==> Freshet: idle footprint of a node holding 100 shard replicas");
    let (rss_mib, idle_cpu) = idle_footprint().await?;
    eprintln!("==> Freshet: failover, SIGKILL of a shard leader to the first acknowledged write");
    let mut fo = failover_times(3).await?;
    fo.sort();
    let streams = flag(&args, "--streams").unwrap_or(1000);
    eprintln!("==> Operator: reconcile {streams} Streams against the in-memory Kubernetes API");
    let operator = operator_reconcile(streams).await?;

    println!("\n| workload | records/s | MiB/s | put p50 ms | put p99 ms | end-to-end p50 ms | end-to-end p99 ms | server CPU-us/record |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in freshet.iter().chain(&nats).chain(&kinesis_rows) {
        println!("{}", row(r));
    }
    println!();
    kinesis_lines.iter().for_each(|l| println!("{l}"));
    print_rounds(&goal, shards);
    let ratio = |a: &Result, b: &Result| a.records_per_sec / b.records_per_sec;
    let one = &freshet[2];
    println!(
        "Freshet 1 shard / NATS one stream (one Raft group each), single puts: throughput {:.2}x, put p99 {:.2}x",
        ratio(one, &nats[1]),
        one.put_p99_ms / nats[1].put_p99_ms
    );
    println!(
        "Freshet / NATS with {SHARDS} streams (per-shard order on both sides): throughput batched {:.2}x, single {:.2}x; put p99 batched {:.2}x, single {:.2}x",
        ratio(&freshet[0], &nats[2]),
        ratio(&freshet[1], &nats[3]),
        freshet[0].put_p99_ms / nats[2].put_p99_ms,
        freshet[1].put_p99_ms / nats[3].put_p99_ms
    );
    println!("Node with 100 idle shard replicas: {rss_mib:.0} MiB resident, {idle_cpu:.1}% of one core");
    println!(
        "Leader SIGKILL to first acknowledged write: {}",
        fo.iter().map(|d| format!("{:.2} s", d.as_secs_f64())).collect::<Vec<_>>().join(", ")
    );
    println!("{}", operator_row(&operator));
    Ok(())
}
