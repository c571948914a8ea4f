//! Freshet's Kubernetes custom resources (`Stream`, `DeliveryStream`) and the capacity
//! arithmetic that turns declared throughput into shards and broker pods. No I/O.

// Several `printcolumn(type_ = "string", ...)` in one derive read to clippy as repeated
// attributes; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

pub mod capacity;
pub mod delivery_stream;
pub mod stream;

pub use delivery_stream::{DeliveryStream, DeliveryStreamSpec, DeliveryStreamStatus};
pub use stream::{Stream, StreamSpec, StreamStatus};

use kube::CustomResourceExt;

/// Header of every generated file, so nobody edits one by hand.
const GENERATED: &str = "# Generated from the Rust types in crds/ by `make crds`. Do not edit.\n";

/// Every CRD as (file name, YAML), in the layout of the chart's `crds/` directory.
pub fn crd_files() -> Vec<(String, String)> {
    [Stream::crd(), DeliveryStream::crd()]
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("crd"));
            let yaml = serde_saphyr::to_string(&crd).expect("a CRD serializes to YAML");
            (name, format!("{GENERATED}{yaml}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed chart must carry exactly what the types generate.
    #[test]
    fn committed_crds_match_the_types() {
        // Relative to the package, where cargo runs tests: a path baked in at compile time
        // would name whichever checkout first built this test into a shared target dir.
        let dir = std::path::Path::new("../charts/freshet/crds");
        for (name, generated) in crd_files() {
            let path = dir.join(&name);
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run `make crds` and commit the result", path.display()));
            assert!(
                committed == generated,
                "{} differs from what the types in crds/ generate: run `make crds` and commit the result",
                path.display()
            );
        }
    }
}
