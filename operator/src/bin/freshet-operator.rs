//! `freshet-operator`: runs the controller, or renders what it would create for a Stream.

use anyhow::Context;
use clap::{Parser, Subcommand};
use freshet_crds::Stream;
use freshet_operator::desired::{self, Settings};

#[derive(Parser, Debug)]
#[command(name = "freshet-operator", version, about = "Reconcile Freshet Streams into broker StatefulSets")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
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
