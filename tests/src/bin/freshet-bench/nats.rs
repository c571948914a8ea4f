//! The peer: a 3-node NATS JetStream cluster, file storage, 3 replicas, fsync before ack.

use super::*;

pub(super) struct Nats {
    children: Vec<Child>,
    urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(super) fn start_nats(server: &Path) -> anyhow::Result<Nats> {
    let dir = tempfile::tempdir()?;
    let ports: Vec<(u16, u16)> =
        (0..3).map(|_| (freshet_tests::free_port(), freshet_tests::free_port())).collect();
    let mut children = Vec::new();
    for (i, (client, route)) in ports.iter().enumerate() {
        let routes: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (_, r))| format!("nats://127.0.0.1:{r}"))
            .collect();
        let conf = format!(
            "server_name: n{i}\nlisten: 127.0.0.1:{client}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\ncluster {{\n  name: bench\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
            dir.path().join(format!("n{i}")).display(),
            routes.join(", ")
        );
        let path = dir.path().join(format!("n{i}.conf"));
        std::fs::write(&path, conf)?;
        let log = std::fs::File::create(dir.path().join(format!("n{i}.log")))?;
        children.push(
            Command::new(server)
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("starting {}", server.display()))?,
        );
    }
    Ok(Nats {
        children,
        urls: ports.iter().map(|(c, _)| format!("nats://127.0.0.1:{c}")).collect(),
        _dir: dir,
    })
}

/// Connects, waiting for a server that is still starting.
async fn nats_connect(url: &str) -> anyhow::Result<async_nats::Client> {
    let start = Instant::now();
    loop {
        match async_nats::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > Duration::from_secs(30) => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn nats_stream(nats: &Nats, name: &str) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = nats_connect(&nats.urls[0]).await?;
    let js = async_nats::jetstream::new(client);
    let start = Instant::now();
    loop {
        let cfg = async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            num_replicas: 3,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        };
        match js.get_or_create_stream(cfg).await {
            Ok(_) => return Ok(js),
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs one NATS workload. `partitions` streams share the load the way a stream's shards
/// do: each publish goes to a random one, and each has its own ordered consumer (with 1,
/// one stream holds everything, in one total order).
pub(super) async fn nats_run(
    nats: &Nats,
    name: &str,
    batch: usize,
    partitions: usize,
    duration: Duration,
) -> anyhow::Result<Result> {
    let names: Vec<String> = if partitions == 1 {
        vec![name.to_string()]
    } else {
        (0..partitions).map(|i| format!("{name}{i}")).collect()
    };
    let mut js = None;
    for n in &names {
        js = Some(nats_stream(nats, n).await?);
    }
    let js = js.expect("at least one stream");
    // A server may take a moment to learn of a new stream ("no stream found for given
    // subject"): a probe through every server, before any consumer or timing starts.
    for url in &nats.urls {
        let js = async_nats::jetstream::new(nats_connect(url).await?);
        for n in &names {
            let start = Instant::now();
            loop {
                match async { js.publish(format!("{n}.probe"), payload().into()).await?.await }.await {
                    Ok(_) => break,
                    Err(e) if start.elapsed() > Duration::from_secs(30) => {
                        anyhow::bail!("NATS server {url} never accepted a publish to {n}: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for n in &names {
        use async_nats::jetstream::consumer;
        let stream = js.get_stream(n).await?;
        let c = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let rec = rec.clone();
        let stop = stop.clone();
        consumers.push(tokio::spawn(async move {
            let msgs = c.messages().await?;
            consume_until(msgs, &stop, |m| rec.received(&m.payload)).await;
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = CpuWindow::start(nats.children.iter().map(|c| c.id()).collect());
    let start = Instant::now();
    let mut producers = Vec::new();
    for p in 0..super::producer_count() {
        let client = nats_connect(&nats.urls[p % 3]).await?;
        let js = async_nats::jetstream::new(client);
        let rec = rec.clone();
        let subjects: Vec<String> = names.iter().map(|n| format!("{n}.p{p}")).collect();
        producers.push(tokio::spawn(async move {
            while start.elapsed() < duration {
                // `batch` publishes in flight, then wait for every ack.
                let mut acks = Vec::with_capacity(batch);
                for _ in 0..batch {
                    let t = Instant::now();
                    let subject = subjects[rand::random_range(0..subjects.len())].clone();
                    acks.push((t, js.publish(subject, payload().into()).await?));
                }
                for (t, ack) in acks {
                    ack.await?;
                    rec.put_done(t, 1);
                }
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
    for c in consumers {
        let _ = c.await;
    }
    let label = match (batch, partitions) {
        (1, 1) => "single publishes".to_string(),
        (_, 1) => "100 publishes in flight".to_string(),
        (1, n) => format!("single publishes, {n} streams (one per shard)"),
        (_, n) => format!("100 publishes in flight, {n} streams (one per shard)"),
    };
    Ok(Result::from(&format!("NATS JetStream, {label}"), &rec, elapsed, cpu_ms))
}
