//! `freshet`: the command-line client for a Freshet cluster.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use freshet_broker::client::Client;
use freshet_broker::pb;
use freshet_broker::producer::Producer;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "freshet", version, about = "Freshet: streams of records, replicated by Raft")]
struct Cli {
    /// Any node of the cluster (it forwards to the shard leaders).
    #[arg(long, env = "FRESHET_ENDPOINT", default_value = "http://127.0.0.1:50051", global = true)]
    endpoint: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete streams.
    #[command(subcommand)]
    Stream(StreamCmd),
    /// Write records: one given on the command line, or one per line of stdin.
    Put {
        stream: String,
        /// The record's data; omit to read one record per stdin line.
        data: Option<String>,
        /// Partition key (default: a random key per record).
        #[arg(long, short = 'k')]
        partition_key: Option<String>,
        /// Records per PutRecords call when reading stdin (1-500).
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Read records, one per line.
    Read {
        stream: String,
        /// trim-horizon | latest | at:<sequence> | after:<sequence> | time:<epoch ms>
        #[arg(long, default_value = "trim-horizon")]
        from: String,
        /// Only this shard (default: every shard).
        #[arg(long)]
        shard: Option<String>,
        /// Keep reading: records are pushed as they commit (Subscribe).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Prefix each line with shard, sequence number and partition key.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Cluster health: nodes and which node leads each shard.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Subcommand)]
enum StreamCmd {
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// 24 to 8760.
        #[arg(long)]
        retention_hours: Option<u32>,
        /// Replicas per shard, 1 to 5 (default 3).
        #[arg(long)]
        replication: Option<u32>,
        /// Switch off the per-shard write limits (1 MiB/s, 1,000 records/s).
        #[arg(long)]
        no_limits: bool,
        /// Per-shard write limit in bytes per second.
        #[arg(long)]
        write_bytes_per_second: Option<u64>,
        /// Per-shard write limit in records per second.
        #[arg(long)]
        write_records_per_second: Option<u64>,
        /// Wait until the stream is ACTIVE.
        #[arg(long)]
        wait: bool,
    },
    List,
    Describe {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Change an existing stream's retention or per-shard write limits.
    Update {
        name: String,
        /// 24 to 8760 (shorter or longer).
        #[arg(long)]
        retention_hours: Option<u32>,
        /// Switch the per-shard write limits off.
        #[arg(long, conflicts_with_all = ["write_bytes_per_second", "write_records_per_second"])]
        no_limits: bool,
        /// Enforce this per-shard write limit in bytes per second (default 1 MiB/s).
        #[arg(long)]
        write_bytes_per_second: Option<u64>,
        /// Enforce this per-shard write limit in records per second (default 1,000).
        #[arg(long)]
        write_records_per_second: Option<u64>,
    },
    /// Split a shard in two (the stream stays readable and writable meanwhile).
    Split {
        name: String,
        /// e.g. shardId-000000000000
        shard: String,
        /// Where the second child starts (decimal hash key); default: the middle of the
        /// shard's range.
        #[arg(long)]
        at: Option<String>,
    },
    /// Change the number of open shards (Kinesis' UpdateShardCount, UNIFORM_SCALING): from
    /// half to twice the current count per call; the result has even hash-key ranges.
    Scale {
        name: String,
        /// The open shards wanted.
        count: u32,
        /// Return at once instead of waiting for the stream to be ACTIVE again.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    Status,
    /// Wait until every node answers and the metadata group has a leader.
    Wait {
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        match e.downcast_ref::<tonic::Status>() {
            Some(s) => {
                let kind = s
                    .metadata()
                    .get(freshet_broker::error::ERROR_TYPE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("error");
                eprintln!("freshet: {kind}: {}", s.message());
                if s.code() == tonic::Code::Unavailable {
                    eprintln!("hint: is the cluster running? start one with `make run`, or pass --endpoint");
                }
            }
            None => eprintln!("freshet: {e:#}"),
        }
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.endpoint)?;
    match cli.command {
        Command::Stream(cmd) => stream(&client, cmd).await,
        Command::Put { stream, data, partition_key, batch } => {
            // Straight to each shard's leader; any node would forward, at a cost.
            let producer = Producer::new(&cli.endpoint)?;
            match data {
                Some(data) => put_one(&producer, &stream, data, partition_key).await,
                None => put_lines(&producer, &stream, partition_key, batch.clamp(1, 500)).await,
            }
        }
        Command::Read { stream, from, shard, follow, verbose } => {
            read(&client, &stream, &from, shard, follow, verbose).await
        }
        Command::Cluster(ClusterCmd::Status) => cluster_status(&client).await,
        Command::Cluster(ClusterCmd::Wait { timeout_secs }) => cluster_wait(&client, timeout_secs).await,
    }
}

async fn stream(client: &Client, cmd: StreamCmd) -> anyhow::Result<()> {
    let mut api = client.api.clone();
    match cmd {
        StreamCmd::Update {
            name,
            retention_hours,
            no_limits,
            write_bytes_per_second,
            write_records_per_second,
        } => {
            let defaults = freshet_broker::limits::ShardLimits::default();
            let limits = (no_limits
                || write_bytes_per_second.is_some()
                || write_records_per_second.is_some())
            .then(|| pb::ShardLimits {
                enforce: !no_limits,
                write_bytes_per_second: write_bytes_per_second.unwrap_or(defaults.write_bytes_per_second),
                write_records_per_second: write_records_per_second
                    .unwrap_or(defaults.write_records_per_second),
            });
            if retention_hours.is_none() && limits.is_none() {
                bail!(
                    "nothing to change: give --retention-hours, --no-limits or a --write-*-per-second limit"
                );
            }
            api.update_stream_settings(pb::UpdateStreamSettingsRequest {
                stream_name: name.clone(),
                retention_hours,
                limits,
            })
            .await?;
            let d = client.describe(&name).await?;
            let l = d.limits.unwrap_or_default();
            let limits = if l.enforce {
                format!(
                    "{} bytes/s and {} records/s per shard",
                    l.write_bytes_per_second, l.write_records_per_second
                )
            } else {
                "off".to_string()
            };
            eprintln!("stream {name}: retention {} h, write limits {limits}", d.retention_hours);
        }
        StreamCmd::Create {
            name,
            shards,
            retention_hours,
            replication,
            no_limits,
            write_bytes_per_second,
            write_records_per_second,
            wait,
        } => {
            let defaults = freshet_broker::limits::ShardLimits::default();
            let limits = pb::ShardLimits {
                enforce: !no_limits,
                write_bytes_per_second: write_bytes_per_second.unwrap_or(defaults.write_bytes_per_second),
                write_records_per_second: write_records_per_second
                    .unwrap_or(defaults.write_records_per_second),
            };
            api.create_stream(pb::CreateStreamRequest {
                stream_name: name.clone(),
                shard_count: shards,
                retention_hours,
                replication_factor: replication,
                limits: Some(limits),
                ..Default::default()
            })
            .await?;
            eprintln!("created stream {name} with {shards} shard(s)");
            if wait {
                let start = Instant::now();
                loop {
                    let d = client.describe(&name).await?;
                    if d.status == "ACTIVE" {
                        eprintln!("stream {name} is ACTIVE after {:.1}s", start.elapsed().as_secs_f64());
                        break;
                    }
                    if start.elapsed() > Duration::from_secs(120) {
                        bail!("stream {name} still {} after 120s; see `freshet cluster status`", d.status);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        StreamCmd::List => {
            for name in api.list_streams(pb::ListStreamsRequest {}).await?.into_inner().stream_names {
                println!("{name}");
            }
        }
        StreamCmd::Describe { name } => {
            let d = client.describe(&name).await?;
            println!(
                "stream {}  status {}  retention {}h  replication {}  limits {}",
                d.stream_name,
                d.status,
                d.retention_hours,
                d.replication_factor,
                match &d.limits {
                    Some(l) if l.enforce => format!(
                        "{} B/s, {} records/s per shard",
                        l.write_bytes_per_second, l.write_records_per_second
                    ),
                    _ => "off".to_string(),
                }
            );
            println!(
                "{:<22} {:<7} {:<8} {:<10} {:<22} {:<41} {:<41}",
                "SHARD", "STATE", "LEADER", "REPLICAS", "PARENT", "STARTING HASH KEY", "ENDING HASH KEY"
            );
            for s in d.shards {
                let replicas: Vec<String> = s.replicas.iter().map(|r| r.to_string()).collect();
                let parents: Vec<String> =
                    s.parent_shard_id.iter().chain(s.adjacent_parent_shard_id.iter()).cloned().collect();
                println!(
                    "{:<22} {:<7} {:<8} {:<10} {:<22} {:<41} {:<41}",
                    s.shard_id,
                    if s.ending_sequence_number.is_some() { "CLOSED" } else { "OPEN" },
                    s.leader.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                    replicas.join(","),
                    if parents.is_empty() { "-".to_string() } else { parents.join("+") },
                    s.starting_hash_key,
                    s.ending_hash_key
                );
            }
        }
        StreamCmd::Delete { name } => {
            api.delete_stream(pb::DeleteStreamRequest { stream_name: name.clone() }).await?;
            eprintln!("deleted stream {name}");
        }
        StreamCmd::Split { name, shard, at } => {
            let at = match at {
                Some(at) => at,
                None => {
                    let d = client.describe(&name).await?;
                    let s = d.shards.iter().find(|s| s.shard_id == shard).with_context(|| {
                        format!("{name} has no shard {shard}; see `freshet stream describe {name}`")
                    })?;
                    let (lo, hi): (u128, u128) = (s.starting_hash_key.parse()?, s.ending_hash_key.parse()?);
                    (lo + (hi - lo) / 2 + 1).to_string()
                }
            };
            api.split_shard(pb::SplitShardRequest {
                stream_name: name.clone(),
                shard_to_split: shard.clone(),
                new_starting_hash_key: at.clone(),
            })
            .await?;
            eprintln!("splitting {shard} of {name} at hash key {at}; `freshet stream describe {name}` shows it CLOSED once its children have taken over");
        }
        StreamCmd::Scale { name, count, no_wait } => {
            let r = api
                .update_shard_count(pb::UpdateShardCountRequest {
                    stream_name: name.clone(),
                    target_shard_count: count,
                    scaling_type: "UNIFORM_SCALING".into(),
                })
                .await?
                .into_inner();
            eprintln!(
                "scaling {name} from {} to {} open shards",
                r.current_shard_count, r.target_shard_count
            );
            if !no_wait {
                wait_for_scaling(client, &name, count).await?;
            }
        }
    }
    Ok(())
}

/// Shows the open and closed shards until the stream is ACTIVE again.
async fn wait_for_scaling(client: &Client, name: &str, target: u32) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let start = Instant::now();
    loop {
        let d = client.describe(name).await?;
        let open = d.shards.iter().filter(|s| s.ending_sequence_number.is_none()).count();
        let closed = d.shards.len() - open;
        bar.set_message(format!("{}: {open} open shards (target {target}), {closed} closed", d.status));
        if d.status == "ACTIVE" {
            bar.finish_and_clear();
            eprintln!("{name} is ACTIVE with {open} open shards after {:.1}s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(600) {
            bar.finish_and_clear();
            bail!(
                "{name} still {} after 600s; see `freshet cluster status` for shards without a leader",
                d.status
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn random_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn put_one(producer: &Producer, stream: &str, data: String, key: Option<String>) -> anyhow::Result<()> {
    let r = producer
        .put_record(pb::PutRecordRequest {
            stream_name: stream.to_string(),
            partition_key: key.unwrap_or_else(random_key),
            data: data.into_bytes(),
            explicit_hash_key: None,
        })
        .await?;
    println!("{} {}", r.shard_id, r.sequence_number);
    Ok(())
}

/// One record per stdin line, in PutRecords batches; throttled records are retried with
/// backoff so every line is written exactly once per acknowledged batch.
/// How long `put` keeps retrying a node that does not answer before it gives up.
const PUT_RETRY_FOR: Duration = Duration::from_secs(30);

/// Errors a retry of the same request can overcome.
fn retryable(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown)
}

async fn put_lines(
    producer: &Producer,
    stream: &str,
    key: Option<String>,
    batch: usize,
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} records written ({per_sec}) {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let start = Instant::now();
    let (mut written, mut bytes) = (0u64, 0u64);
    let mut answered = false;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let mut pending: Vec<pb::PutRecordsEntry> = Vec::with_capacity(batch);
        for line in lines.by_ref() {
            let line = line.context("reading stdin")?;
            pending.push(pb::PutRecordsEntry {
                partition_key: key.clone().unwrap_or_else(random_key),
                data: line.into_bytes().into(),
                explicit_hash_key: None,
            });
            if pending.len() == batch {
                break;
            }
        }
        if pending.is_empty() {
            break;
        }
        let mut backoff = Duration::from_millis(50);
        let mut unreachable_since: Option<Instant> = None;
        // A node that never answered is most likely the wrong address: fail at once then.
        while !pending.is_empty() {
            let req = pb::PutRecordsRequest { stream_name: stream.to_string(), records: pending.clone() };
            let resp = match producer.put_records(req).await {
                Ok(resp) => {
                    unreachable_since = None;
                    answered = true;
                    resp
                }
                // The node restarting, or a leader change under way: the whole batch again.
                // Its outcome is unknown, so some of it may be written twice, as with Kinesis.
                Err(s)
                    if answered
                        && retryable(&s)
                        && unreachable_since.is_none_or(|t| t.elapsed() < PUT_RETRY_FOR) =>
                {
                    unreachable_since.get_or_insert_with(Instant::now);
                    bar.set_message(format!("({}; retrying)", s.message()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(s) => return Err(s.into()),
            };
            let mut retry = Vec::new();
            for (entry, result) in pending.into_iter().zip(resp.records) {
                if result.error_code.is_empty() {
                    written += 1;
                    bytes += entry.data.len() as u64;
                } else if result.error_code == "ProvisionedThroughputExceededException"
                    || result.error_code == "InternalFailure"
                {
                    retry.push(entry);
                } else {
                    bail!("record rejected: {}: {}", result.error_code, result.error_message);
                }
            }
            bar.set_position(written);
            if !retry.is_empty() {
                bar.set_message(format!("({} throttled, retrying)", retry.len()));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            pending = retry;
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "wrote {written} records ({:.2} MiB) in {secs:.2}s: {:.0} records/s, {:.2} MiB/s",
        bytes as f64 / 1048576.0,
        written as f64 / secs,
        bytes as f64 / 1048576.0 / secs
    );
    Ok(())
}

/// Parses `--from` into an iterator type and its argument.
fn parse_from(from: &str) -> anyhow::Result<(pb::IteratorType, Option<String>, Option<i64>)> {
    Ok(match from.split_once(':') {
        None if from == "trim-horizon" => (pb::IteratorType::TrimHorizon, None, None),
        None if from == "latest" => (pb::IteratorType::Latest, None, None),
        Some(("at", seq)) => (pb::IteratorType::AtSequenceNumber, Some(seq.to_string()), None),
        Some(("after", seq)) => (pb::IteratorType::AfterSequenceNumber, Some(seq.to_string()), None),
        Some(("time", ms)) => (
            pb::IteratorType::AtTimestamp,
            None,
            Some(ms.parse().context("time:<epoch milliseconds>, e.g. time:1767225600000")?),
        ),
        _ => bail!("--from takes trim-horizon, latest, at:<sequence>, after:<sequence> or time:<epoch ms>"),
    })
}

/// Prints a record's user records (a KPL aggregate holds several), one per line; with
/// `verbose`, prefixed by shard, sequence number (`.sub` inside an aggregate), arrival ms
/// and partition key.
fn print_record(out: &mut impl Write, shard: &str, r: &pb::Record, verbose: bool) -> std::io::Result<()> {
    for u in freshet_broker::client::user_records(std::slice::from_ref(r)) {
        if verbose {
            let sub = u.sub_sequence.map(|s| format!(".{s}")).unwrap_or_default();
            write!(
                out,
                "{shard} {}{sub} {} {} ",
                u.sequence_number, u.approximate_arrival_timestamp_ms, u.partition_key
            )?;
        }
        out.write_all(&u.data)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

async fn read(
    client: &Client,
    stream: &str,
    from: &str,
    shard: Option<String>,
    follow: bool,
    verbose: bool,
) -> anyhow::Result<()> {
    let (kind, seq, ts) = parse_from(from)?;
    let shards: Vec<String> = match shard {
        Some(s) => vec![s],
        None => client.describe(stream).await?.shards.into_iter().map(|s| s.shard_id).collect(),
    };
    if !follow {
        let stdout = std::io::stdout();
        for shard in shards {
            let it = client.shard_iterator(stream, &shard, kind, seq.clone(), ts).await?;
            let records = client.read_to_end(it).await?;
            let mut out = stdout.lock();
            for r in &records {
                print_record(&mut out, &shard, r, verbose)?;
            }
        }
        return Ok(());
    }
    // Each subscription ends when its shard was closed by a reshard and has been read to
    // its end; its children are followed from their start once all their parents ended,
    // so that each key's records come out in order.
    let subscribe = |tasks: &mut tokio::task::JoinSet<anyhow::Result<(String, Vec<pb::ChildShard>)>>,
                     shard: String,
                     kind: pb::IteratorType,
                     seq: Option<String>| {
        let mut api = client.api.clone();
        let req = pb::SubscribeRequest {
            stream_name: stream.to_string(),
            shard_id: shard.clone(),
            iterator_type: kind as i32,
            starting_sequence_number: seq,
            timestamp_ms: ts,
            keep_alive_ms: None,
        };
        tasks.spawn(async move {
            let mut events = api.subscribe(req).await?.into_inner();
            let mut children = Vec::new();
            while let Some(event) = events.message().await? {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for r in &event.records {
                    print_record(&mut out, &shard, r, verbose)?;
                }
                out.flush()?;
                children.extend(event.child_shards);
            }
            anyhow::Ok((shard, children))
        });
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut started: std::collections::HashSet<String> = shards.iter().cloned().collect();
    let mut ended: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut waiting: Vec<pb::ChildShard> = Vec::new();
    for shard in shards {
        subscribe(&mut tasks, shard, kind, seq.clone());
    }
    while let Some(done) = tasks.join_next().await {
        let (shard, children) = done??;
        ended.insert(shard);
        waiting.extend(children.into_iter().filter(|c| !started.contains(&c.shard_id)));
        let (ready, later): (Vec<_>, Vec<_>) =
            waiting.drain(..).partition(|c| c.parent_shards.iter().all(|p| ended.contains(p)));
        waiting = later;
        for child in ready {
            if started.insert(child.shard_id.clone()) {
                subscribe(&mut tasks, child.shard_id, pb::IteratorType::TrimHorizon, None);
            }
        }
    }
    Ok(())
}

async fn cluster_status(client: &Client) -> anyhow::Result<()> {
    let s = client.api.clone().cluster_status(pb::ClusterStatusRequest {}).await?.into_inner();
    println!("NODES");
    for n in &s.nodes {
        println!("  node {} {} {}", n.id, n.address, if n.reachable { "up" } else { "UNREACHABLE" });
    }
    println!("GROUPS");
    for g in &s.groups {
        let name = if g.stream_name.is_empty() {
            "(metadata)".to_string()
        } else {
            format!("{}/{}", g.stream_name, g.shard_id)
        };
        println!(
            "  {name} group {} leader {}",
            g.group_id,
            g.leader.map(|l| l.to_string()).unwrap_or_else(|| "none".into())
        );
        for r in &g.replicas {
            println!(
                "    node {} {:<9} term {:<4} applied {:<8} committed {:<8} last log {:<8}{}",
                r.node,
                r.state,
                r.term,
                r.applied_index,
                r.committed_index,
                r.last_log_index,
                if r.hibernating { " asleep (idle)" } else { "" }
            );
        }
    }
    Ok(())
}

async fn cluster_wait(client: &Client, timeout_secs: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let last = match client.api.clone().cluster_status(pb::ClusterStatusRequest {}).await {
            Ok(s) => {
                let s = s.into_inner();
                let up = s.nodes.iter().filter(|n| n.reachable).count();
                let meta_leader = s.groups.iter().find(|g| g.group_id == 0).and_then(|g| g.leader);
                if up == s.nodes.len() && meta_leader.is_some() {
                    eprintln!("cluster ready: {up} nodes, metadata leader node {}", meta_leader.unwrap_or(0));
                    return Ok(());
                }
                format!("{up}/{} nodes up, metadata leader: {meta_leader:?}", s.nodes.len())
            }
            Err(e) => e.message().to_string(),
        };
        if start.elapsed() > Duration::from_secs(timeout_secs) {
            bail!("cluster not ready after {timeout_secs}s ({last}); check the node logs");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
