//! `freshet-operator`: runs the controller, or renders what it would create for a Stream.

use anyhow::Context;
use clap::{Parser, Subcommand};
use freshet_crds::Stream;
use freshet_operator::broker::in_cluster_locator;
use freshet_operator::controller;
use freshet_operator::desired::{self, Settings};
use freshet_operator::run;

#[derive(Parser, Debug)]
#[command(name = "freshet-operator", version, about = "Reconcile Freshet Streams into broker StatefulSets")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Reconcile Streams (in a cluster, or against the kubeconfig's cluster).
    Run {
        #[arg(long, env = "FRESHET_BROKER_IMAGE", default_value = "ghcr.io/freshet/broker:0.1.0")]
        broker_image: String,
        #[arg(long, env = "FRESHET_REPLICAS_PER_BROKER", default_value_t = 100)]
        replicas_per_broker: u32,
        #[arg(long, env = "FRESHET_CLUSTER_DOMAIN", default_value = "cluster.local")]
        cluster_domain: String,
        #[arg(long, env = "FRESHET_HEARTBEAT_MS", default_value_t = 250)]
        heartbeat_ms: u64,
        #[arg(long, env = "FRESHET_ELECTION_TIMEOUT_MS", default_value_t = 750)]
        election_timeout_ms: u64,
        /// Seconds declared throughput must stay lower before shards merge.
        #[arg(long, env = "FRESHET_MERGE_STABILIZATION_SECS", default_value_t = 300)]
        merge_stabilization_secs: u64,
        /// Watch only this namespace (empty: every namespace).
        #[arg(long, env = "FRESHET_WATCH_NAMESPACE", default_value = "")]
        watch_namespace: String,
        #[arg(long, env = "FRESHET_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// How long a leader's Lease lasts without renewal before a standby takes over.
        #[arg(long, env = "FRESHET_LEASE_DURATION_SECS", default_value_t = 15)]
        lease_duration_secs: u64,
        #[arg(long, env = "FRESHET_METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: std::net::SocketAddr,
        #[arg(long, env = "POD_NAME", default_value = "freshet-operator")]
        pod_name: String,
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        pod_namespace: String,
    },
    /// Print the objects the operator would apply for the Stream manifests in FILE (YAML,
    /// one or more documents), without a cluster.
    Render {
        file: std::path::PathBuf,
        #[arg(long, env = "FRESHET_BROKER_IMAGE", default_value = "ghcr.io/freshet/broker:0.1.0")]
        broker_image: String,
        #[arg(long, env = "FRESHET_REPLICAS_PER_BROKER", default_value_t = 100)]
        replicas_per_broker: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // JSON lines by default (one object per event, with the stream and reason as fields)
    // for log pipelines; FRESHET_LOG_FORMAT=text for people.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if std::env::var("FRESHET_LOG_FORMAT").is_ok_and(|f| f == "text") {
        tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
    } else {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).init();
    }
    match Args::parse().command {
        Command::Run {
            broker_image,
            replicas_per_broker,
            cluster_domain,
            heartbeat_ms,
            election_timeout_ms,
            merge_stabilization_secs,
            watch_namespace,
            leader_election,
            lease_duration_secs,
            metrics_addr,
            pod_name,
            pod_namespace,
        } => {
            let settings = Settings {
                broker_image,
                replicas_per_broker,
                cluster_domain: cluster_domain.clone(),
                heartbeat_ms,
                election_timeout_ms,
                merge_stabilization: std::time::Duration::from_secs(merge_stabilization_secs),
            };
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes API: run in a cluster or set KUBECONFIG")?;
            let ctx = std::sync::Arc::new(controller::Context::new(
                client.clone(),
                settings,
                in_cluster_locator(cluster_domain),
            ));
            tokio::spawn(freshet_operator::metrics::serve(metrics_addr, ctx.metrics.clone()));
            if leader_election {
                run::lead(client, &pod_namespace, &pod_name, lease_duration_secs).await?;
            }
            let namespace = (!watch_namespace.is_empty()).then_some(watch_namespace);
            let shutdown = async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            };
            tracing::info!("reconciling Streams in {}", namespace.as_deref().unwrap_or("every namespace"));
            run::controller(ctx, namespace, shutdown).await;
            Ok(())
        }
        Command::Render { file, broker_image, replicas_per_broker } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let settings = Settings { broker_image, replicas_per_broker, ..Settings::default() };
            let streams: Vec<Stream> = serde_saphyr::from_multiple(&text)
                .with_context(|| format!("{} is not a list of Stream manifests", file.display()))?;
            for mut stream in streams {
                stream.metadata.namespace.get_or_insert_with(|| "default".into());
                stream.metadata.uid.get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
                for object in desired::all_objects(&stream, &settings)? {
                    println!("---\n{}", serde_saphyr::to_string(&object)?);
                }
            }
            Ok(())
        }
    }
}
