//! The API server's RBAC authorizer, for one client of the fake: each request needs a rule
//! granting its verb on its resource, or it gets 403 Forbidden as a real cluster answers.
//! The rules come from the Helm chart's own template, so a verb the chart forgets makes the
//! operator's tests fail the way a real install would.

use super::Target;
use http::Method;

/// One RBAC rule: every verb on every resource of every group listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

/// The rules of every Role and ClusterRole in `template` (the chart's `rbac.yaml`): the
/// `rules:` lists, which hold no template directives, read as flow-style YAML lists.
pub fn rules_from_chart(template: &str) -> Vec<Rule> {
    fn list(line: &str, key: &str) -> Option<Vec<String>> {
        let rest = line.trim().trim_start_matches("- ").trim().strip_prefix(key)?.trim();
        let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
        Some(inner.split(',').map(|s| s.trim().trim_matches('"').to_string()).collect())
    }
    let mut rules = Vec::new();
    let mut in_rules = false;
    let mut current: Option<Rule> = None;
    for line in template.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with("rules:") {
            in_rules = true;
            continue;
        }
        if in_rules && !line.starts_with(' ') {
            in_rules = false;
        }
        if !in_rules {
            continue;
        }
        if let Some(groups) = list(line, "apiGroups:") {
            rules.extend(current.take());
            current = Some(Rule { groups, resources: Vec::new(), verbs: Vec::new() });
        } else if let (Some(r), Some(resources)) = (current.as_mut(), list(line, "resources:")) {
            r.resources = resources;
        } else if let (Some(r), Some(verbs)) = (current.as_mut(), list(line, "verbs:")) {
            r.verbs = verbs;
        }
    }
    rules.extend(current);
    rules
}

/// The verbs a request needs. A server-side apply that creates its object needs `create`
/// besides `patch`, as with the real authorizer.
pub(super) fn verbs_for(method: &Method, t: &Target, watch: bool, apply_creates: bool) -> Vec<&'static str> {
    match (method, t.name.is_some()) {
        (&Method::GET, false) if watch => vec!["watch"],
        (&Method::GET, false) => vec!["list"],
        (&Method::GET, true) => vec!["get"],
        (&Method::POST, _) => vec!["create"],
        (&Method::PUT, _) => vec!["update"],
        (&Method::PATCH, _) if apply_creates => vec!["patch", "create"],
        (&Method::PATCH, _) => vec!["patch"],
        (&Method::DELETE, true) => vec!["delete"],
        (&Method::DELETE, false) => vec!["deletecollection"],
        _ => vec![],
    }
}

/// The verb of `verbs` that no rule grants on `t`'s resource, if any.
pub(super) fn denied<'a>(rules: &[Rule], t: &Target, verbs: &[&'a str]) -> Option<&'a str> {
    let (group, plural) = t.kind.split_once('/').unwrap_or(("", &t.kind));
    let resource = match &t.subresource {
        Some(sub) => format!("{plural}/{sub}"),
        None => plural.to_string(),
    };
    verbs.iter().copied().find(|verb| {
        !rules.iter().any(|r| {
            r.groups.iter().any(|g| g == group)
                && r.resources.contains(&resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_read_from_the_template() {
        let template = r#"
{{- if .Values.rbac.create }}
kind: {{ if $cluster }}ClusterRole{{ else }}Role{{ end }}
rules:
  # comment
  - apiGroups: [freshet.dev]
    resources: [streams, streams/status]
    verbs: [list, watch]
  - apiGroups: [""]
    resources: [pods]
    verbs: [delete]
---
kind: RoleBinding
"#;
        let rules = rules_from_chart(template);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].resources, vec!["streams", "streams/status"]);
        assert_eq!(rules[1].groups, vec![""]);
        let pod = super::super::parse_path("/api/v1/namespaces/n/pods/p").unwrap();
        assert_eq!(denied(&rules, &pod, &["delete"]), None);
        assert_eq!(denied(&rules, &pod, &["get"]), Some("get"));
        let status =
            super::super::parse_path("/apis/freshet.dev/v1alpha1/namespaces/n/streams/s/status").unwrap();
        assert_eq!(denied(&rules, &status, &["patch"]), Some("patch"));
    }
}
