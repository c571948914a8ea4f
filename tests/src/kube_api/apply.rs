//! Server-side apply's field ownership: an apply that would change a field another
//! manager owns is a conflict unless forced; every successful patch records its fields.

use super::{status_error, Body, State, Target};
use http::Response;
use serde_json::Value;

impl State {
    /// A patch by `manager`: an apply that would change a field another manager owns is a
    /// conflict unless forced (what leader election through a Lease relies on); every
    /// successful patch makes `manager` the owner of the fields it set.
    pub(super) fn patch_as(
        &mut self,
        t: &Target,
        name: &str,
        content_type: &str,
        patch: Value,
        manager: &str,
        force: bool,
    ) -> Response<Body> {
        let key = self.key(t, name);
        let mut fields = Vec::new();
        leaves(&patch, String::new(), &mut fields);
        let apply = content_type.starts_with("application/apply-patch");
        if apply && !force {
            if let Some(old) = self.objects.get(&key) {
                let owners = self.owners.get(&key);
                let conflicts: Vec<String> = fields
                    .iter()
                    .filter_map(|(path, value)| {
                        let owner = owners?.get(path)?;
                        (owner != manager && old.pointer(path) != Some(value))
                            .then(|| format!("conflict with \"{owner}\": {}", path.replace('/', ".")))
                    })
                    .collect();
                if !conflicts.is_empty() {
                    let message = format!(
                        "Apply failed with {} conflict(s): {}",
                        conflicts.len(),
                        conflicts.join("; ")
                    );
                    return status_error(409, "Conflict", &message);
                }
            }
        }
        let response = self.patch(t, name, content_type, patch);
        if response.status().is_success() && !content_type.starts_with("application/json-patch") {
            let owners = self.owners.entry(key).or_default();
            for (path, value) in fields {
                if value.is_null() {
                    owners.remove(&path);
                } else {
                    owners.insert(path, manager.to_string());
                }
            }
        }
        response
    }
}

/// Leaf fields of `v` as JSON pointers (arrays are atomic), server-managed metadata aside.
fn leaves(v: &Value, prefix: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let path = format!("{prefix}/{k}");
                let server_owned = [
                    "/apiVersion",
                    "/kind",
                    "/metadata/name",
                    "/metadata/namespace",
                    "/metadata/resourceVersion",
                ];
                if !server_owned.contains(&path.as_str()) {
                    leaves(child, path, out);
                }
            }
        }
        _ => out.push((prefix, v.clone())),
    }
}
