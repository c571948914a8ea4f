//! The StatefulSet controller and kubelets, simplified: pods per ordinal, labelled with
//! the template's revision, recreated when deleted, readiness counted into status.

use super::{now, Key, State};
use serde_json::{json, Value};

impl State {
    /// What the simulated controllers do after a write; returns the object as it is now.
    pub(super) fn after_write(&mut self, key: &Key) -> Option<Value> {
        match key.0.as_str() {
            "apps/statefulsets" => self.sync_statefulset(key),
            "/pods" => {
                let pod = self.objects.get(key).cloned()?;
                self.sync_owner(&pod);
            }
            _ => {}
        }
        self.objects.get(key).cloned()
    }

    pub(super) fn sync_owner(&mut self, pod: &Value) {
        let Some(owner) = pod["metadata"]["ownerReferences"][0]["name"].as_str() else { return };
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        self.sync_statefulset(&("apps/statefulsets".into(), ns.into(), owner.into()));
    }

    /// The StatefulSet controller, simplified: one pod per ordinal below `replicas`, pods
    /// above it removed, status from the pods' readiness and revisions.
    pub(super) fn sync_statefulset(&mut self, key: &Key) {
        if !self.run_statefulsets {
            return;
        }
        let Some(sts) = self.objects.get(key).cloned() else { return };
        let (ns, name) = (key.1.clone(), key.2.clone());
        let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let rev = revision(&sts["spec"]["template"]);
        let pod_key = |i: usize| -> Key { ("/pods".into(), ns.clone(), format!("{name}-{i}")) };
        let extra: Vec<Key> = self
            .objects
            .keys()
            .filter(|k| k.0 == "/pods" && k.1 == ns)
            .filter(|k| {
                k.2.strip_prefix(&format!("{name}-"))
                    .and_then(|o| o.parse::<usize>().ok())
                    .is_some_and(|o| o >= replicas)
            })
            .cloned()
            .collect();
        for k in extra {
            let pod = self.objects[&k].clone();
            self.store(k, pod, "DELETED");
        }
        for i in 0..replicas {
            if self.objects.contains_key(&pod_key(i)) {
                continue;
            }
            self.uid += 1;
            let mut labels = sts["spec"]["template"]["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels["controller-revision-hash"] = json!(rev);
            labels["statefulset.kubernetes.io/pod-name"] = json!(format!("{name}-{i}"));
            labels["apps.kubernetes.io/pod-index"] = json!(i.to_string());
            let ready = if self.new_pods_ready { "True" } else { "False" };
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("{name}-{i}"), "namespace": ns, "labels": labels,
                    "uid": format!("00000000-0000-0000-0000-{:012}", self.uid), "creationTimestamp": now(),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                                         "uid": sts["metadata"]["uid"], "controller": true}],
                },
                "spec": sts["spec"]["template"]["spec"],
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]},
            });
            self.store(pod_key(i), pod, "ADDED");
        }
        let pods: Vec<Value> = (0..replicas).filter_map(|i| self.objects.get(&pod_key(i)).cloned()).collect();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let updated = pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == rev.as_str())
            .count();
        let current = if updated == replicas {
            rev.clone()
        } else {
            sts["status"]["currentRevision"].as_str().unwrap_or(&rev).to_string()
        };
        let status = json!({
            "replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": pods.len() - updated + if current == rev { updated } else { 0 },
            "updatedReplicas": updated, "currentRevision": current, "updateRevision": rev,
            "observedGeneration": sts["metadata"]["generation"],
        });
        if sts["status"] != status {
            let mut sts = sts;
            sts["status"] = status;
            self.store(key.clone(), sts, "MODIFIED");
        }
    }
}

/// A StatefulSet revision name for a pod template (stable for equal templates).
fn revision(template: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut h);
    format!("rev-{:010x}", h.finish() & 0xff_ffff_ffff)
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_none()
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}
