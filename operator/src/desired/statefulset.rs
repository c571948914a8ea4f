//! The broker StatefulSet: stable identities (pod ordinal + 1 = Raft node id), one volume
//! per pod, gRPC health probes, and updates left to the operator (`OnDelete`).

use super::{owned_meta, Plan, Settings, DATA_DIR, GRPC_PORT, KINESIS_PORT};
use freshet_crds::stream::DeletionPolicy;
use freshet_crds::Stream;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, GRPCAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

/// Annotation on the pod template carrying the broker settings' digest.
pub const CONFIG_DIGEST_ANNOTATION: &str = "freshet.dev/config-digest";
/// The non-root user of the broker image.
const BROKER_UID: i64 = 65532;

pub fn statefulset(stream: &Stream, plan: &Plan, settings: &Settings, config_digest: &str) -> StatefulSet {
    let spec = &stream.spec;
    let selector = LabelSelector { match_labels: Some(plan.selector_labels()), ..LabelSelector::default() };
    let pvc_policy = match spec.deletion_policy {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Retain => "Retain",
    };
    StatefulSet {
        metadata: owned_meta(stream, plan, plan.statefulset_name()),
        spec: Some(StatefulSetSpec {
            replicas: Some(plan.brokers as i32),
            selector,
            service_name: Some(plan.peer_service_name()),
            // All brokers start together: a broker is Ready only once a quorum exists, so
            // OrderedReady would wait forever for pod 0.
            pod_management_policy: Some("Parallel".into()),
            // Rolls belong to the operator: one pod at a time, each only after every shard
            // it hosts has caught-up followers and a leader elsewhere.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(pvc_policy.into()),
                // The operator moves every replica off a pod before the set shrinks, so
                // the volume of a removed pod holds nothing anyone needs.
                when_scaled: Some("Delete".into()),
            }),
            template: pod_template(stream, plan, settings, config_digest),
            volume_claim_templates: Some(vec![volume_claim(stream)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn volume_claim(stream: &Stream) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: stream.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), stream.spec.storage.size.clone())])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn grpc_probe(service: &str, period: i32, failures: i32) -> Probe {
    Probe {
        grpc: Some(GRPCAction { port: GRPC_PORT, service: Some(service.into()) }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

/// Spread brokers over nodes, then zones, when the user says nothing: a shard's replicas
/// live on different brokers, and they should not share a machine either.
fn default_spread(plan: &Plan) -> Vec<TopologySpreadConstraint> {
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(plan.selector_labels()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

/// A Secret the broker reads as files: which volume, where, and the env vars that name
/// its files (the broker's `--credentials-file`, `--kinesis-tls-cert`/`-key`).
struct SecretMount {
    volume: &'static str,
    secret: String,
    dir: &'static str,
    env: Vec<EnvVar>,
}

fn secret_mounts(stream: &Stream) -> Vec<SecretMount> {
    let var = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), value_from: None };
    let k = &stream.spec.kinesis;
    let credentials = k.credentials_secret_name.as_ref().map(|secret| SecretMount {
        volume: "kinesis-credentials",
        secret: secret.clone(),
        dir: CREDENTIALS_DIR,
        env: vec![var("FRESHET_CREDENTIALS_FILE", format!("{CREDENTIALS_DIR}/credentials"))],
    });
    let tls = k.tls_secret_name.as_ref().map(|secret| SecretMount {
        volume: "kinesis-tls",
        secret: secret.clone(),
        dir: TLS_DIR,
        env: vec![
            var("FRESHET_KINESIS_TLS_CERT", format!("{TLS_DIR}/tls.crt")),
            var("FRESHET_KINESIS_TLS_KEY", format!("{TLS_DIR}/tls.key")),
        ],
    });
    credentials.into_iter().chain(tls).collect()
}

const CREDENTIALS_DIR: &str = "/etc/freshet/kinesis-credentials";
const TLS_DIR: &str = "/etc/freshet/kinesis-tls";

fn pod_template(stream: &Stream, plan: &Plan, settings: &Settings, config_digest: &str) -> PodTemplateSpec {
    let brokers = &stream.spec.brokers;
    let secrets = secret_mounts(stream);
    let container = Container {
        name: "broker".into(),
        image: Some(brokers.image.clone().unwrap_or_else(|| settings.broker_image.clone())),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: plan.configmap_name(), optional: Some(false) }),
            ..EnvFromSource::default()
        }]),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".into()),
                container_port: GRPC_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("kinesis".into()),
                container_port: KINESIS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        // Opening RocksDB and replaying the Raft log can take a while on a big volume.
        startup_probe: Some(grpc_probe("", 5, 120)),
        liveness_probe: Some(grpc_probe("", 10, 6)),
        readiness_probe: Some(grpc_probe(freshet_broker::api::READINESS_SERVICE, 5, 2)),
        resources: brokers.resources.clone(),
        env: (!secrets.is_empty()).then(|| secrets.iter().flat_map(|m| m.env.clone()).collect()),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            })
            .chain(secrets.iter().map(|m| VolumeMount {
                name: m.volume.into(),
                mount_path: m.dir.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }))
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(plan.labels()),
            annotations: Some(BTreeMap::from([(CONFIG_DIGEST_ANNOTATION.into(), config_digest.into())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: (!secrets.is_empty()).then(|| {
                secrets
                    .iter()
                    .map(|m| Volume {
                        name: m.volume.into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(m.secret.clone()),
                            // Readable by the broker's group only.
                            default_mode: Some(0o440),
                            optional: Some(false),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    })
                    .collect()
            }),
            // Enough for the broker to hand its leaderships away and flush (it needs ~5 s).
            termination_grace_period_seconds: Some(60),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_user: Some(BROKER_UID),
                run_as_group: Some(BROKER_UID),
                fs_group: Some(BROKER_UID),
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            node_selector: (!brokers.node_selector.is_empty()).then(|| brokers.node_selector.clone()),
            tolerations: (!brokers.tolerations.is_empty()).then(|| brokers.tolerations.clone()),
            affinity: brokers.affinity.clone(),
            topology_spread_constraints: Some(if brokers.topology_spread_constraints.is_empty() {
                default_spread(plan)
            } else {
                brokers.topology_spread_constraints.clone()
            }),
            ..PodSpec::default()
        }),
    }
}

/// A StatefulSet's volume claim templates cannot change after creation: keep the existing
/// ones (volumes grow by resizing each claim instead, see the reconciler).
pub fn keep_immutable_fields(desired: &mut StatefulSet, existing: &StatefulSet) {
    if let (Some(d), Some(e)) = (desired.spec.as_mut(), existing.spec.as_ref()) {
        d.volume_claim_templates = e.volume_claim_templates.clone();
        d.selector = e.selector.clone();
        d.service_name = e.service_name.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::stream;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn build(spec: serde_json::Value) -> StatefulSet {
        let s = Settings::default();
        let st = stream(spec);
        let plan = Plan::for_stream(&st, &s).unwrap();
        statefulset(&st, &plan, &s, "abc123")
    }

    fn pod(sts: &StatefulSet) -> PodSpec {
        sts.spec.as_ref().unwrap().template.spec.clone().unwrap()
    }

    #[test]
    fn identities_volumes_and_updates_are_the_operators() {
        let sts = build(serde_json::json!({"shards": 4}));
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(sts.metadata.name.as_deref(), Some("clicks-broker"));
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("clicks-broker-peers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.update_strategy.as_ref().unwrap().type_.as_deref(), Some("OnDelete"));
        assert_eq!(spec.selector.match_labels.as_ref().unwrap()["app.kubernetes.io/instance"], "clicks");
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        assert_eq!(
            claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
            Quantity("10Gi".into())
        );
        assert_eq!(claim_spec.access_modes.as_deref(), Some(&["ReadWriteOnce".to_string()][..]));
        let retention = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"), "data is kept by default");
        let annotations = spec.template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(annotations[CONFIG_DIGEST_ANNOTATION], "abc123");
    }

    #[test]
    fn the_broker_container_serves_probes_and_keeps_data_on_its_volume() {
        let p = pod(&build(serde_json::json!({"shards": 4})));
        let c = &p.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/freshet/broker:0.1.0"));
        assert_eq!(
            c.env_from.as_ref().unwrap()[0].config_map_ref.as_ref().unwrap().name,
            "clicks-broker-config"
        );
        let ready = c.readiness_probe.as_ref().unwrap().grpc.as_ref().unwrap();
        assert_eq!((ready.port, ready.service.as_deref()), (50051, Some("freshet.ready")));
        let live = c.liveness_probe.as_ref().unwrap().grpc.as_ref().unwrap();
        assert_eq!(live.service.as_deref(), Some(""));
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, "/var/lib/freshet");
        let ports: Vec<i32> = c.ports.as_ref().unwrap().iter().map(|p| p.container_port).collect();
        assert_eq!(ports, vec![50051, 4567]);
        assert_eq!(p.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
        assert!(p.termination_grace_period_seconds.unwrap() >= 30, "time to hand leadership away");
        let spread = p.topology_spread_constraints.as_ref().unwrap();
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
    }

    #[test]
    fn kinesis_secrets_are_mounted_read_only_and_named_to_the_broker() {
        let plain = pod(&build(serde_json::json!({"shards": 1})));
        assert!(plain.volumes.is_none() && plain.containers[0].env.is_none(), "no Secrets, nothing mounted");
        let p = pod(&build(serde_json::json!({
            "shards": 1,
            "kinesis": {"credentialsSecretName": "kinesis-keys", "tlsSecretName": "kinesis-cert"}
        })));
        let c = &p.containers[0];
        let env: BTreeMap<&str, &str> =
            c.env.as_ref().unwrap().iter().map(|e| (e.name.as_str(), e.value.as_deref().unwrap())).collect();
        assert_eq!(env["FRESHET_CREDENTIALS_FILE"], "/etc/freshet/kinesis-credentials/credentials");
        assert_eq!(env["FRESHET_KINESIS_TLS_CERT"], "/etc/freshet/kinesis-tls/tls.crt");
        assert_eq!(env["FRESHET_KINESIS_TLS_KEY"], "/etc/freshet/kinesis-tls/tls.key");
        let secrets: Vec<(String, String)> = p
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| (v.name.clone(), v.secret.as_ref().unwrap().secret_name.clone().unwrap()))
            .collect();
        assert_eq!(
            secrets,
            vec![
                ("kinesis-credentials".into(), "kinesis-keys".into()),
                ("kinesis-tls".into(), "kinesis-cert".into())
            ]
        );
        let mounts: Vec<(&str, &str, Option<bool>)> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("data", "/var/lib/freshet", None),
                ("kinesis-credentials", "/etc/freshet/kinesis-credentials", Some(true)),
                ("kinesis-tls", "/etc/freshet/kinesis-tls", Some(true)),
            ]
        );
    }

    #[test]
    fn user_placement_and_resources_reach_the_pod() {
        let sts = build(serde_json::json!({
            "shards": 8, "replication": 5, "deletionPolicy": "Delete",
            "storage": {"size": "50Gi", "storageClassName": "fast"},
            "brokers": {
                "image": "example.com/broker:dev",
                "resources": {"requests": {"cpu": "2"}},
                "nodeSelector": {"disk": "nvme"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}]
            }
        }));
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(5), "5 replicas need 5 brokers");
        assert_eq!(
            spec.persistent_volume_claim_retention_policy.as_ref().unwrap().when_deleted.as_deref(),
            Some("Delete")
        );
        let claim = spec.volume_claim_templates.as_ref().unwrap()[0].spec.clone().unwrap();
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
        let p = pod(&sts);
        assert_eq!(p.containers[0].image.as_deref(), Some("example.com/broker:dev"));
        assert_eq!(
            p.containers[0].resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"],
            Quantity("2".into())
        );
        assert_eq!(p.node_selector.as_ref().unwrap()["disk"], "nvme");
        assert_eq!(p.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("dedicated"));
        assert_eq!(p.topology_spread_constraints.as_ref().unwrap()[0].topology_key, "rack");
    }

    #[test]
    fn volume_templates_of_an_existing_set_are_never_rewritten() {
        let existing = build(serde_json::json!({"shards": 4}));
        let mut grown = build(serde_json::json!({"shards": 4, "storage": {"size": "20Gi"}}));
        keep_immutable_fields(&mut grown, &existing);
        assert_eq!(
            grown.spec.as_ref().unwrap().volume_claim_templates,
            existing.spec.unwrap().volume_claim_templates
        );
    }
}
