//! The PodDisruptionBudget: a voluntary eviction (a node drain, a cluster upgrade) may
//! never take a shard, or the metadata group, below quorum.

use super::{owned_meta, Plan};
use freshet_crds::Stream;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Pods that may be down at once: a shard keeps a majority of its `replication` replicas
/// (each on a different pod), and the metadata group, which spans every pod, keeps a
/// majority of them. Replication 1 allows none: that stream has no redundancy to spend.
pub fn max_unavailable(plan: &Plan) -> u32 {
    ((plan.replication.max(1) - 1) / 2).min((plan.brokers.max(1) - 1) / 2)
}

pub fn pdb(stream: &Stream, plan: &Plan) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(stream, plan, plan.statefulset_name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(plan) as i32)),
            selector: Some(LabelSelector {
                match_labels: Some(plan.selector_labels()),
                ..LabelSelector::default()
            }),
            // A broker that is not Ready holds no quorum; evicting it costs nothing.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(replication: u32, brokers: u32) -> Plan {
        Plan { name: "s".into(), namespace: "n".into(), shards: 1, replication, brokers }
    }

    #[test]
    fn quorum_of_every_shard_and_of_the_metadata_group_survives() {
        assert_eq!(max_unavailable(&plan(3, 3)), 1);
        assert_eq!(max_unavailable(&plan(5, 5)), 2);
        assert_eq!(max_unavailable(&plan(5, 25)), 2, "a shard's 5 replicas bound it");
        assert_eq!(max_unavailable(&plan(3, 40)), 1);
        assert_eq!(max_unavailable(&plan(1, 1)), 0, "no redundancy, no voluntary disruption");
        assert_eq!(max_unavailable(&plan(1, 4)), 0);
    }
}
