//! Reconcile throughput of the operator against the in-memory Kubernetes API.

use super::*;

/// What `operator_reconcile` measured.
pub(super) struct OperatorRun {
    streams: usize,
    took: Duration,
    reconciles: u64,
    api_requests: u64,
    rss_mib: f64,
    peak_mib: f64,
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Reconcile throughput: the `freshet-operator` binary, as its own process, against the
/// in-memory Kubernetes API (served over HTTP) holding `n` Streams and no brokers: the
/// time until every Stream has its five objects and a status, and the operator's memory.
pub(super) async fn operator_reconcile(n: usize) -> anyhow::Result<OperatorRun> {
    use freshet_tests::kube_api::FakeApi;
    let fake = FakeApi::new();
    for i in 0..n {
        fake.insert(
            "freshet.dev/streams",
            serde_json::json!({"apiVersion": "freshet.dev/v1alpha1", "kind": "Stream",
                "metadata": {"name": format!("s{i:04}"), "namespace": "bench", "generation": 1},
                "spec": {"shards": 4}}),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(fake.clone().serve(listener));
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, FakeApi::kubeconfig(addr))?;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let requests_before = fake.requests();
    let start = Instant::now();
    let mut child = Command::new(freshet_tests::bin("freshet-operator"))
        .arg("run")
        .env("KUBECONFIG", &kubeconfig)
        .env("FRESHET_LEADER_ELECTION", "false")
        .env("FRESHET_WATCH_NAMESPACE", "bench")
        .env("FRESHET_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting freshet-operator")?;
    let pid = child.id();
    let done = |fake: &FakeApi| {
        fake.list("apps/statefulsets", "bench").len() == n
            && fake.list("freshet.dev/streams", "bench").iter().all(|s| s["status"]["conditions"].is_array())
    };
    while !done(&fake) {
        if start.elapsed() > Duration::from_secs(600) {
            child.kill().ok();
            anyhow::bail!("the operator did not reconcile {n} Streams within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let rss_mib = proc_status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let peak_mib = proc_status_kib(pid, "VmHWM:") as f64 / 1024.0;
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port)).await?;
        sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await?;
        let mut text = String::new();
        sock.read_to_string(&mut text).await?;
        text
    };
    let reconciles = metrics
        .lines()
        .find_map(|l| l.strip_prefix("freshet_operator_reconciles_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    child.kill().ok();
    child.wait().ok();
    Ok(OperatorRun {
        streams: n,
        took,
        reconciles,
        api_requests: fake.requests() - requests_before,
        rss_mib,
        peak_mib,
    })
}

pub(super) fn operator_row(r: &OperatorRun) -> String {
    format!(
        "Operator: {} Streams to their desired objects and status in {:.2} s ({:.0} Streams/s; {} reconciles, {} API requests); operator resident {:.0} MiB (peak {:.0} MiB)",
        r.streams,
        r.took.as_secs_f64(),
        r.streams as f64 / r.took.as_secs_f64(),
        r.reconciles,
        r.api_requests,
        r.rss_mib,
        r.peak_mib
    )
}
