//! The CEL rules in the generated CRDs, evaluated client-side with kube's `cel` feature
//! (the evaluator follows the API server's semantics): valid manifests pass, and each
//! manifest marked `# layer: cel` is refused with its expected message. Structural
//! checks (ranges, enums, unknown fields) are the Python schema test's job.

use freshet_crds::{DeliveryStream, Stream};
use kube::CustomResourceExt;
use std::path::{Path, PathBuf};

struct Manifest {
    path: PathBuf,
    layer: Option<String>,
    expect: Option<String>,
    /// Documents in order: with two, the first is the stored object and the second an update.
    docs: Vec<serde_json::Value>,
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(&format!("# {key}: ")).map(|v| v.trim().to_string()))
}

fn manifests(dir: &str) -> Vec<Manifest> {
    // Relative to the package, where cargo runs tests (not a compile-time path, which a
    // shared target dir could carry over from another checkout).
    let dir = Path::new(dir);
    let mut out: Vec<Manifest> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs =
                serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Manifest { layer: header(&text, "layer"), expect: header(&text, "expect"), docs, path }
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn schema_of(kind: &str) -> serde_json::Value {
    let crd = match kind {
        "Stream" => Stream::crd(),
        "DeliveryStream" => DeliveryStream::crd(),
        other => panic!("no CRD for kind {other}"),
    };
    let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
    serde_json::to_value(schema).unwrap()
}

/// CEL messages for the last document (validated as an update when there is an earlier one).
fn cel_errors(m: &Manifest) -> Vec<String> {
    let new = m.docs.last().expect("a document");
    let old = (m.docs.len() > 1).then(|| &m.docs[0]);
    let schema = schema_of(new["kind"].as_str().expect("kind"));
    match kube::core::cel::Validator::new().validate(&schema, new, old) {
        Ok(()) => vec![],
        Err(errors) => {
            errors.into_vec().into_iter().map(|e| format!("{}: {}", e.field_path, e.message)).collect()
        }
    }
}

#[test]
fn valid_manifests_pass_every_cel_rule() {
    let mut all = manifests("tests/manifests/valid");
    all.extend(manifests("../charts/freshet/examples"));
    assert!(all.len() >= 5);
    for m in &all {
        assert_eq!(cel_errors(m), Vec::<String>::new(), "{}", m.path.display());
    }
}

#[test]
fn invalid_manifests_are_refused_by_their_cel_rule() {
    let cel: Vec<Manifest> = manifests("tests/manifests/invalid")
        .into_iter()
        .filter(|m| m.layer.as_deref() == Some("cel"))
        .collect();
    assert!(cel.len() >= 6, "the CEL cases are all found");
    for m in &cel {
        let expect =
            m.expect.as_deref().unwrap_or_else(|| panic!("{}: no '# expect:' line", m.path.display()));
        let errors = cel_errors(m);
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{}: expected a CEL error containing {expect:?}, got {errors:?}",
            m.path.display()
        );
    }
}

#[test]
fn an_update_that_keeps_replication_is_accepted() {
    let old = serde_json::json!({"apiVersion": "freshet.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "s"}, "spec": {"shards": 2, "replication": 3}});
    let new = serde_json::json!({"apiVersion": "freshet.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "s"}, "spec": {"shards": 6, "replication": 3}});
    let result = kube::core::cel::Validator::new().validate(&schema_of("Stream"), &new, Some(&old));
    assert!(result.is_ok(), "{result:?}");
}
