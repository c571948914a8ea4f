//! The broker settings, as environment variables every broker pod loads.

use super::{owned_meta, Plan, Settings, DATA_DIR, GRPC_PORT, KINESIS_PORT};
use freshet_crds::Stream;
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub fn configmap(stream: &Stream, plan: &Plan, settings: &Settings) -> ConfigMap {
    ConfigMap {
        metadata: owned_meta(stream, plan, plan.configmap_name()),
        data: Some(broker_env(plan, settings)),
        ..ConfigMap::default()
    }
}

/// The broker's flags as their env equivalents. The node id comes from the pod's ordinal.
pub fn broker_env(plan: &Plan, settings: &Settings) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("FRESHET_ID_FROM_HOSTNAME".into(), "true".into()),
        ("FRESHET_LISTEN".into(), format!("0.0.0.0:{GRPC_PORT}")),
        ("FRESHET_KINESIS_LISTEN".into(), format!("0.0.0.0:{KINESIS_PORT}")),
        ("FRESHET_DATA_DIR".into(), DATA_DIR.into()),
        ("FRESHET_PEERS".into(), plan.peers(settings)),
        ("FRESHET_HEARTBEAT_MS".into(), settings.heartbeat_ms.to_string()),
        ("FRESHET_ELECTION_TIMEOUT_MS".into(), settings.election_timeout_ms.to_string()),
        ("RUST_LOG".into(), "info,openraft=warn".into()),
    ])
}

/// A digest of the settings, stamped on the pod template so a settings change is a new
/// StatefulSet revision (which the operator then rolls, one pod at a time).
pub fn digest(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::stream;

    #[test]
    fn brokers_get_their_peers_and_derive_their_id() {
        let s = Settings::default();
        let st = stream(serde_json::json!({"shards": 4}));
        let plan = Plan::for_stream(&st, &s).unwrap();
        let cm = configmap(&st, &plan, &s);
        let data = cm.data.unwrap();
        assert_eq!(data["FRESHET_ID_FROM_HOSTNAME"], "true");
        assert_eq!(data["FRESHET_LISTEN"], "0.0.0.0:50051");
        assert_eq!(data["FRESHET_KINESIS_LISTEN"], "0.0.0.0:4567", "the port the client Service targets");
        assert_eq!(data["FRESHET_DATA_DIR"], "/var/lib/freshet");
        assert_eq!(data["FRESHET_PEERS"].split(',').count(), 3);
        assert_eq!(cm.metadata.name.as_deref(), Some("clicks-broker-config"));
    }

    #[test]
    fn the_digest_changes_with_any_setting() {
        let s = Settings::default();
        let plan = Plan::for_stream(&stream(serde_json::json!({"shards": 4})), &s).unwrap();
        let a = digest(&broker_env(&plan, &s));
        let b = digest(&broker_env(&plan, &Settings { heartbeat_ms: 300, ..s.clone() }));
        let bigger = Plan { brokers: 4, ..plan.clone() };
        assert_ne!(a, b);
        assert_ne!(a, digest(&broker_env(&bigger, &s)), "a new peer list is a new revision");
        assert_eq!(a, digest(&broker_env(&plan, &s)));
    }
}
