//! `freshet-broker`: runs one Freshet node.

use anyhow::Context;
use clap::Parser;
use freshet_broker::node::{Node, NodeConfig};
use freshet_broker::raft::RaftTiming;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// mimalloc's thread-local free lists suit the many small, short-lived allocations of
/// Raft messages and gRPC frames better than glibc malloc (measured: docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "freshet-broker", version, about = "Run one Freshet broker node")]
struct Args {
    /// This node's id: a positive integer, unique in the cluster and stable across restarts.
    #[arg(long, env = "FRESHET_NODE_ID", required_unless_present = "id_from_hostname")]
    id: Option<u64>,
    /// Take the id from the host name's ordinal suffix plus one (`demo-broker-0` is node 1),
    /// as a StatefulSet pod does: its identity is its ordinal.
    #[arg(long, env = "FRESHET_ID_FROM_HOSTNAME", conflicts_with = "id")]
    id_from_hostname: bool,
    /// Address to listen on for gRPC (clients and peers).
    #[arg(long, env = "FRESHET_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Address to serve the Kinesis Data Streams HTTP API on (AWS CLI, boto3, AWS SDKs).
    /// Not served when unset.
    #[arg(long, env = "FRESHET_KINESIS_LISTEN")]
    kinesis_listen: Option<SocketAddr>,
    /// A file of `ACCESS_KEY_ID SECRET_ACCESS_KEY` lines: the Kinesis API then accepts only
    /// requests signed (SigV4) by one of them. Without it any signature is accepted.
    #[arg(long, env = "FRESHET_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
    /// PEM certificate chain: the Kinesis API then speaks TLS (HTTP/2 or HTTP/1.1 by ALPN).
    #[arg(long, env = "FRESHET_KINESIS_TLS_CERT", requires = "kinesis_tls_key")]
    kinesis_tls_cert: Option<PathBuf>,
    /// PEM private key of --kinesis-tls-cert.
    #[arg(long, env = "FRESHET_KINESIS_TLS_KEY", requires = "kinesis_tls_cert")]
    kinesis_tls_key: Option<PathBuf>,
    /// Seconds a Kinesis API client has for its TLS handshake, then its headers, then its
    /// body; a slower one is cut off (RequestTimeoutException) and loses its connection.
    #[arg(long, env = "FRESHET_KINESIS_READ_TIMEOUT_SECS", default_value_t = 30)]
    kinesis_read_timeout_secs: u64,
    /// AWS region named in the stream ARNs the Kinesis API returns.
    #[arg(long, env = "FRESHET_REGION", default_value = "us-east-1")]
    region: String,
    /// Where this node keeps its RocksDB.
    #[arg(long, env = "FRESHET_DATA_DIR", default_value = "./data/node")]
    data_dir: PathBuf,
    /// Every node of the cluster as id=host:port, comma-separated, this one included.
    /// Default: a single-node cluster on --listen.
    #[arg(long, env = "FRESHET_PEERS")]
    peers: Option<String>,
    /// Raft heartbeat interval, ms.
    #[arg(long, env = "FRESHET_HEARTBEAT_MS", default_value_t = 250)]
    heartbeat_ms: u64,
    /// Raft election timeout, lower bound, ms (the upper bound is a third more). The upper
    /// bound is also openraft's leader lease, which a successor must wait out.
    #[arg(long, env = "FRESHET_ELECTION_TIMEOUT_MS", default_value_t = 750)]
    election_timeout_ms: u64,
    /// How long a busy node's group commit waits for more appends before its fsync, in
    /// microseconds (0, the default: sync at once; appends arriving during a sync share
    /// the next one anyway).
    #[arg(long, env = "FRESHET_SYNC_LINGER_US", default_value_t = freshet_broker::storage::flusher::DEFAULT_LINGER.as_micros() as u64)]
    sync_linger_us: u64,
    /// How long a busy shard leader may hold a piece of a PutRecords spread over several
    /// shards before proposing it, in microseconds, so that one Raft entry carries many
    /// requests (0: propose at once). Single-shard requests never wait.
    #[arg(long, env = "FRESHET_WRITE_LINGER_US", default_value_t = freshet_broker::shard::writer::DEFAULT_LINGER.as_micros() as u64)]
    write_linger_us: u64,
    /// Raft frames to and from other nodes over one long-lived stream per peer (true), or
    /// a call per batch as before 2026-12 (false; a node with streams falls back to calls
    /// with a peer that has none, so mixed versions keep replicating during an upgrade).
    #[arg(long, env = "FRESHET_PEER_STREAMS", default_value_t = true, action = clap::ArgAction::Set)]
    peer_streams: bool,
    /// Threads running the node's tasks (0, the default: one per CPU this process may use,
    /// cgroup quotas included, as in a pod). Nodes sharing a machine should split its cores:
    /// `make run` and the test clusters give each of their nodes cores / nodes, at least 1.
    /// Three nodes of two worker threads each on 2 cores cost single puts 15-20% of their
    /// throughput in paired runs (docs/benchmarks.md): every wake-up of a task on the other
    /// thread is a futex call and, in a VM, an interrupt between virtual CPUs.
    #[arg(long, env = "FRESHET_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,
    /// How often shard leaders enforce retention, in seconds.
    #[arg(long, env = "FRESHET_RETENTION_CHECK_SECS", default_value_t = 60)]
    retention_check_secs: u64,
    /// How long a shard of an ON_DEMAND stream must write more than half its capacity
    /// before it is split in two, in seconds (Kinesis takes up to 15 minutes; a minute
    /// keeps producers of a hot shard from being throttled for long).
    #[arg(long, env = "FRESHET_ON_DEMAND_SPLIT_AFTER_SECS", default_value_t = 60)]
    on_demand_split_after_secs: u64,
    /// Length of a retention hour in ms. Only tests change it.
    #[arg(long, env = "FRESHET_RETENTION_HOUR_MS", default_value_t = 3_600_000, hide = true)]
    retention_hour_ms: i64,
}

/// How long a stopping node waits for open calls, and then for its Raft groups, to finish.
const DRAIN: Duration = Duration::from_secs(4);

/// The StatefulSet ordinal at the end of a pod's host name, plus one (Raft ids start at 1).
fn id_from_hostname(hostname: &str) -> anyhow::Result<u64> {
    let ordinal = hostname.rsplit_once('-').map(|(_, n)| n).unwrap_or("");
    let ordinal: u64 = ordinal.parse().with_context(|| {
        format!("host name '{hostname}' does not end in -<ordinal>: pass --id instead of --id-from-hostname")
    })?;
    Ok(ordinal + 1)
}

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
    })
}

fn parse_peers(spec: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    spec.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (id, addr) = p
                .trim()
                .split_once('=')
                .with_context(|| format!("peer '{p}' must look like 2=127.0.0.1:50052"))?;
            let id: u64 = id.parse().with_context(|| format!("peer id '{id}' is not a number"))?;
            let port = addr.rsplit_once(':').map(|(host, port)| (host.is_empty(), port.parse::<u16>()));
            anyhow::ensure!(
                matches!(port, Some((false, Ok(_)))),
                "peer address '{addr}' must be host:port (a DNS name or an IP address)"
            );
            Ok((id, addr.to_string()))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.worker_threads > 0 {
        runtime.worker_threads(args.worker_threads);
    }
    runtime.enable_all().build().context("starting the async runtime")?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_target(false)
        .init();
    let id = match args.id {
        Some(id) => id,
        None => id_from_hostname(&hostname())?,
    };
    anyhow::ensure!(id > 0, "--id must be a positive integer");
    let peers = match &args.peers {
        Some(spec) => parse_peers(spec)?,
        None => BTreeMap::from([(id, args.listen.to_string())]),
    };
    let advertise = peers
        .get(&id)
        .cloned()
        .with_context(|| format!("--peers must include this node ({}={})", id, args.listen))?;
    let config = NodeConfig {
        id,
        advertise,
        data_dir: args.data_dir.clone(),
        peers,
        timing: RaftTiming {
            heartbeat_ms: args.heartbeat_ms,
            election_min_ms: args.election_timeout_ms,
            election_max_ms: args.election_timeout_ms + args.election_timeout_ms / 3,
        },
        retention_check: Duration::from_secs(args.retention_check_secs.max(1)),
        retention_hour_ms: args.retention_hour_ms.max(1),
        sync_linger: Duration::from_micros(args.sync_linger_us),
        write_linger: Duration::from_micros(args.write_linger_us),
        peer_streams: args.peer_streams,
        on_demand_split_after: Duration::from_secs(args.on_demand_split_after_secs),
    };
    let node = Node::start(config)
        .await
        .with_context(|| format!("starting node {} with data in {}", id, args.data_dir.display()))?;
    tracing::info!("node {} serving gRPC on {}", id, args.listen);
    let (stopping, stop) = tokio::sync::watch::channel(false);
    if let Some(addr) = args.kinesis_listen {
        let listener = freshet_broker::api::kinesis::bind(addr).await?;
        let credentials = match &args.credentials_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(anyhow::Error::from)
                    .and_then(|text| freshet_broker::api::kinesis::Credentials::parse(&text))
                    .with_context(|| format!("reading --credentials-file {}", path.display()))?,
            ),
            None => None,
        };
        let tls = match (&args.kinesis_tls_cert, &args.kinesis_tls_key) {
            (Some(cert), Some(key)) => Some(freshet_broker::api::kinesis::tls_acceptor(cert, key)?),
            _ => None,
        };
        let checked = if credentials.is_some() { "SigV4 checked" } else { "any signature accepted" };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("node {} serving the Kinesis API on {scheme}://{} ({checked})", id, addr);
        let mut stop = stop.clone();
        let options = freshet_broker::api::kinesis::Options {
            region: args.region.clone(),
            credentials,
            tls,
            read_timeout: Duration::from_secs(args.kinesis_read_timeout_secs.max(1)),
        };
        tokio::spawn(freshet_broker::api::kinesis::serve(node.clone(), listener, options, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    let leaving = node.clone();
    let shutdown = async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stopping.send(true);
        // Leaders hand their groups to caught-up followers while this node still serves
        // Raft traffic, so a rolling restart costs clients a leader change, not an election.
        let handed = leaving.hand_off_leadership(Duration::from_secs(5)).await;
        tracing::info!("shutting down (handed leadership of {handed} groups to other nodes)");
    };
    // After the signal, in-flight calls get a moment to finish; a client that keeps a call
    // open (a Subscribe, a slow peer) must not hold the exit past the pod's grace period.
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = drain_tx.send(());
    };
    let served = freshet_broker::api::serve(node.clone(), args.listen, shutdown);
    tokio::pin!(served);
    tokio::select! {
        r = &mut served => r?,
        _ = async {
            let _ = drain_rx.await;
            tokio::time::sleep(DRAIN).await;
        } => tracing::warn!("calls still open {} s after the signal: closing them", DRAIN.as_secs()),
    }
    if tokio::time::timeout(DRAIN, node.shutdown()).await.is_err() {
        tracing::warn!(
            "Raft groups did not stop within {} s; exiting (everything acknowledged is on disk)",
            DRAIN.as_secs()
        );
        return Ok(());
    }
    tracing::info!("stopped cleanly");
    Ok(())
}
