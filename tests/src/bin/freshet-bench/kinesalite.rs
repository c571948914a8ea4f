//! The Kinesis HTTP API measured against gRPC on the same cluster, and against
//! kinesalite, the single-process Kinesis emulator.

use super::*;

/// kinesalite, the single-process Kinesis emulator users run locally (in memory, no
/// replication, no fsync), on a port of its own.
struct Kinesalite {
    child: Child,
    endpoint: String,
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_kinesalite(bin: &Path) -> anyhow::Result<Kinesalite> {
    let port = freshet_tests::free_port();
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--shardLimit", "1000", "--createStreamMs", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (make bench installs it with npm)", bin.display()))?;
    let k = Kinesalite { child, endpoint: format!("http://127.0.0.1:{port}") };
    let client = freshet_tests::kinesis_client(k.endpoint.clone());
    let start = Instant::now();
    while client.list_streams().send().await.is_err() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "kinesalite did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(k)
}

async fn kinesalite_run(
    k: &Kinesalite,
    stream: &str,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Result> {
    let client = freshet_tests::kinesis_client(k.endpoint.clone());
    client.create_stream().stream_name(stream).shard_count(SHARDS as i32).send().await?;
    loop {
        let d = client.describe_stream_summary().stream_name(stream).send().await?;
        if d.stream_description_summary().is_some_and(|s| s.stream_status() == &StreamStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer = |_| Producer::Kinesis(freshet_tests::kinesis_client(k.endpoint.clone()));
    let target = Target {
        name: "kinesalite 3.3.3".into(),
        producer: &producer,
        cluster: None,
        pids: vec![k.child.id()],
    };
    run(target, stream, batch, duration).await
}

/// The Kinesis HTTP API against Freshet's gRPC path (same cluster, same workloads; gRPC
/// producers too send through their one node, as an AWS SDK does, so the ratio measures
/// the API layer alone) and against kinesalite: the four Kinesis rows and the ratios.
pub(super) async fn kinesis_comparison(
    kinesalite: &Path,
    duration: Duration,
) -> anyhow::Result<(Vec<Result>, Vec<String>)> {
    eprintln!("==> Freshet over gRPC and over the Kinesis API: 3 nodes, {SHARDS} shards, replication 3, fsync before ack");
    let mut freshet = Vec::new();
    for (protocol, stream, batch) in [
        (Protocol::GrpcAnyNode, "g-batch", BATCH),
        (Protocol::Kinesis, "k-batch", BATCH),
        (Protocol::GrpcAnyNode, "g-single", 1),
        (Protocol::Kinesis, "k-single", 1),
    ] {
        // A fresh cluster each time: a run must not pay for the compactions of the
        // previous run's data.
        let cluster = Cluster::start(3).await;
        cluster.create_stream(stream, SHARDS, unlimited()).await;
        cluster.wait_leaders(stream).await;
        freshet.push(freshet_run(&cluster, protocol, stream, batch, duration).await?);
        eprintln!("{}", row(freshet.last().unwrap()));
    }
    eprintln!("==> kinesalite {}: 1 process, in memory, {SHARDS} shards", kinesalite.display());
    let k = start_kinesalite(kinesalite).await?;
    let lite_batch = kinesalite_run(&k, "batch", BATCH, duration).await?;
    eprintln!("{}", row(&lite_batch));
    let lite_single = kinesalite_run(&k, "single", 1, duration).await?;
    eprintln!("{}", row(&lite_single));
    drop(k);
    let ratio = |a: &Result, b: &Result| a.records_per_sec / b.records_per_sec;
    let lines = vec![
        format!(
            "Kinesis API / gRPC through any node throughput (same build, a fresh cluster each): batched {:.2}x, single {:.2}x; server CPU per record batched {:.2}x, single {:.2}x",
            ratio(&freshet[1], &freshet[0]),
            ratio(&freshet[3], &freshet[2]),
            freshet[1].cpu_us_per_record / freshet[0].cpu_us_per_record,
            freshet[3].cpu_us_per_record / freshet[2].cpu_us_per_record,
        ),
        format!(
            "Freshet Kinesis API (3 replicas, fsync) / kinesalite (1 process, memory) throughput: batched {:.2}x, single {:.2}x",
            ratio(&freshet[1], &lite_batch),
            ratio(&freshet[3], &lite_single),
        ),
    ];
    let [_, k_batch, _, k_single] =
        <[Result; 4]>::try_from(freshet).map_err(|_| anyhow::anyhow!("four runs"))?;
    Ok((vec![k_batch, k_single, lite_batch, lite_single], lines))
}
