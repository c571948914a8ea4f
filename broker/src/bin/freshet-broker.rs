//! `freshet-broker`: runs one Freshet node.

use anyhow::Context;
use clap::Parser;
use freshet_broker::node::{Node, NodeConfig};
use freshet_broker::raft::RaftTiming;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "freshet-broker", version, about = "Run one Freshet broker node")]
struct Args {
    /// This node's id: a positive integer, unique in the cluster and stable across restarts.
    #[arg(long, env = "FRESHET_NODE_ID")]
    id: u64,
    /// Address to listen on for gRPC (clients and peers).
    #[arg(long, env = "FRESHET_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
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
    /// Raft election timeout, lower bound, ms (the upper bound is twice this).
    #[arg(long, env = "FRESHET_ELECTION_TIMEOUT_MS", default_value_t = 750)]
    election_timeout_ms: u64,
    /// How often shard leaders enforce retention, in seconds.
    #[arg(long, env = "FRESHET_RETENTION_CHECK_SECS", default_value_t = 60)]
    retention_check_secs: u64,
    /// Length of a retention hour in ms. Only tests change it.
    #[arg(long, env = "FRESHET_RETENTION_HOUR_MS", default_value_t = 3_600_000, hide = true)]
    retention_hour_ms: i64,
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
            addr.parse::<SocketAddr>().with_context(|| format!("peer address '{addr}' is not host:port"))?;
            Ok((id, addr.to_string()))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_target(false)
        .init();
    let args = Args::parse();
    anyhow::ensure!(args.id > 0, "--id must be a positive integer");
    let peers = match &args.peers {
        Some(spec) => parse_peers(spec)?,
        None => BTreeMap::from([(args.id, args.listen.to_string())]),
    };
    let advertise = peers
        .get(&args.id)
        .cloned()
        .with_context(|| format!("--peers must include this node ({}={})", args.id, args.listen))?;
    let config = NodeConfig {
        id: args.id,
        advertise,
        data_dir: args.data_dir.clone(),
        peers,
        timing: RaftTiming {
            heartbeat_ms: args.heartbeat_ms,
            election_min_ms: args.election_timeout_ms,
            election_max_ms: args.election_timeout_ms * 2,
        },
        retention_check: Duration::from_secs(args.retention_check_secs.max(1)),
        retention_hour_ms: args.retention_hour_ms.max(1),
    };
    let node = Node::start(config)
        .await
        .with_context(|| format!("starting node {} with data in {}", args.id, args.data_dir.display()))?;
    tracing::info!("node {} serving gRPC on {}", args.id, args.listen);
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    freshet_broker::api::serve(node.clone(), args.listen, shutdown).await?;
    node.shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
