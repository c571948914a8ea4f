//! Status conditions, decided purely from what the reconciler observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Where a Stream stands, as the three conditions users and tools read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Everything declared exists and serves.
    Ready,
    /// Work under way (brokers starting, stream being created); `reason` says which step.
    Progressing { reason: &'static str, message: String },
    /// Something failed or the spec cannot be honoured; `reason` says what to fix.
    Degraded { reason: String, message: String },
}

fn condition(type_: &str, status: bool, reason: &str, message: &str, generation: Option<i64>) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// Ready / Progressing / Degraded for `phase`. A condition whose status did not change
/// keeps its lastTransitionTime, as Kubernetes conventions require.
pub fn conditions(previous: &[Condition], phase: &Phase, generation: Option<i64>) -> Vec<Condition> {
    let (ready, progressing, degraded) = match phase {
        Phase::Ready => (
            condition(
                "Ready",
                true,
                "StreamActive",
                "every shard has a leader and every broker is ready",
                generation,
            ),
            condition("Progressing", false, "Idle", "nothing to do", generation),
            condition("Degraded", false, "Healthy", "", generation),
        ),
        Phase::Progressing { reason, message } => (
            condition("Ready", false, reason, message, generation),
            condition("Progressing", true, reason, message, generation),
            condition("Degraded", false, "Healthy", "", generation),
        ),
        Phase::Degraded { reason, message } => (
            condition("Ready", false, reason, message, generation),
            condition("Progressing", false, reason, message, generation),
            condition("Degraded", true, reason, message, generation),
        ),
    };
    [ready, progressing, degraded]
        .into_iter()
        .map(|mut c| {
            if let Some(old) = previous.iter().find(|o| o.type_ == c.type_) {
                if old.status == c.status {
                    c.last_transition_time = old.last_transition_time.clone();
                }
            }
            c
        })
        .collect()
}

/// Equal for the purpose of deciding whether status must be written (timestamps aside).
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (&x.type_, &x.status, &x.reason, &x.message, x.observed_generation)
                == (&y.type_, &y.status, &y.reason, &y.message, y.observed_generation)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn each_phase_sets_exactly_one_leading_condition() {
        let ready = conditions(&[], &Phase::Ready, Some(2));
        assert_eq!(get(&ready, "Ready").status, "True");
        assert_eq!(get(&ready, "Degraded").status, "False");
        let p = Phase::Progressing { reason: "BrokersStarting", message: "1/3 brokers ready".into() };
        let prog = conditions(&[], &p, Some(2));
        assert_eq!(
            (get(&prog, "Ready").status.as_str(), get(&prog, "Progressing").reason.as_str()),
            ("False", "BrokersStarting")
        );
        let d = Phase::Degraded { reason: "InvalidSpec".into(), message: "too many shards".into() };
        let deg = conditions(&[], &d, Some(2));
        assert_eq!(get(&deg, "Degraded").status, "True");
        assert_eq!(get(&deg, "Ready").message, "too many shards");
        assert!(deg.iter().all(|c| c.observed_generation == Some(2)));
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let mut first = conditions(&[], &Phase::Ready, Some(1));
        let long_ago = Time("2020-01-01T00:00:00Z".parse().unwrap());
        for c in &mut first {
            c.last_transition_time = long_ago.clone();
        }
        let again = conditions(&first, &Phase::Ready, Some(1));
        assert!(again.iter().all(|c| c.last_transition_time == long_ago));
        assert!(same_conditions(&first, &again));
        let degraded =
            conditions(&first, &Phase::Degraded { reason: "X".into(), message: "y".into() }, Some(1));
        assert_ne!(get(&degraded, "Ready").last_transition_time, long_ago, "Ready flipped");
        assert!(!same_conditions(&first, &degraded));
    }
}
