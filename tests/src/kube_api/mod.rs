//! An in-memory Kubernetes API server, served as a `tower::Service` that `kube::Client`
//! talks to. No kube-apiserver can run on our machines; this keeps the semantics the
//! operator relies on:
//!
//! - resourceVersion: one counter; a write carrying a stale version gets 409 Conflict;
//! - list + watch (newline-delimited events, replayed from any resourceVersion), label
//!   selectors;
//! - create / replace / delete, and patches: server-side apply (single field manager),
//!   JSON merge patch and JSON patch (with the API server's "test against null on a missing
//!   path" behaviour that kube's finalizer helper relies on);
//! - status subresource: writes to the main resource keep status, writes to /status touch
//!   only status; metadata.generation bumps only when something besides metadata and
//!   status changes;
//! - finalizers and deletionTimestamp; owner references with background garbage collection;
//! - injected failures (`fail_next`), and a switch that makes StatefulSets report their
//!   pods ready (there is no kubelet here);
//! - RBAC: a client bound to rules (`bound_to`, the chart's own) gets 403 Forbidden for
//!   anything they do not grant.

mod apply;
pub mod rbac;
mod statefulsets;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

/// (resource type "group/plural", namespace, name)
type Key = (String, String, String);

struct Watcher {
    kind: String,
    namespace: Option<String>,
    labels: Vec<(String, String)>,
    tx: mpsc::UnboundedSender<Result<http_body::Frame<Bytes>, Infallible>>,
}

struct Failure {
    method: Method,
    path_contains: String,
    code: u16,
    reason: String,
    remaining: usize,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    version: u64,
    uid: u64,
    /// Every change, for watches that start from an older resourceVersion.
    history: Vec<(u64, String, &'static str, Value)>,
    watchers: Vec<Watcher>,
    failures: Vec<Failure>,
    /// Server-side apply's field ownership: leaf path -> field manager, per object.
    owners: std::collections::HashMap<Key, BTreeMap<String, String>>,
    /// Play the StatefulSet controller and kubelets: pods exist and report readiness.
    run_statefulsets: bool,
    /// Whether a pod the simulation (re)creates starts Ready.
    new_pods_ready: bool,
    requests: u64,
}

/// Cheap to clone; all clones share one store.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    /// The RBAC rules this handle's requests are held to; None: allowed everything.
    rbac: Option<Arc<Vec<rbac::Rule>>>,
}

/// A parsed request path.
struct Target {
    kind: String,
    api_version: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(Target { kind: format!("{group}/{plural}"), api_version, namespace, name, subresource: sub })
}

fn query(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_selector(s: Option<&String>) -> Vec<(String, String)> {
    s.map(|s| {
        s.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
    .unwrap_or_default()
}

fn matches_labels(obj: &Value, selector: &[(String, String)]) -> bool {
    selector.iter().all(|(k, v)| obj["metadata"]["labels"][k].as_str() == Some(v.as_str()))
}

fn respond(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("response")
}

fn status_error(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The object without metadata and status: what a generation counts.
fn content(obj: &Value) -> Value {
    let mut c = obj.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    c
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A handle on the same store whose requests only `rules` authorize, as for a service
    /// account bound to them.
    pub fn bound_to(&self, rules: Vec<rbac::Rule>) -> FakeApi {
        FakeApi { state: self.state.clone(), rbac: Some(Arc::new(rules)) }
    }

    /// A `kube::Client` whose every request this fake serves.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// The next `times` requests with `method` whose path contains `path_contains` fail
    /// with `code` and `reason` (for example 409 Conflict, 500 InternalError).
    pub fn fail_next(&self, method: Method, path_contains: &str, code: u16, reason: &str, times: usize) {
        self.state.lock().unwrap().failures.push(Failure {
            method,
            path_contains: path_contains.into(),
            code,
            reason: reason.into(),
            remaining: times,
        });
    }

    /// Play the StatefulSet controller and the kubelets from now on: every StatefulSet gets
    /// its pods (labelled with the template's revision, `controller-revision-hash`), a
    /// deleted pod is recreated at the current revision, and status counts ready pods.
    pub fn set_statefulsets_ready(&self, ready: bool) {
        let mut s = self.state.lock().unwrap();
        s.run_statefulsets = ready;
        s.new_pods_ready = true;
        let keys: Vec<Key> = s.objects.keys().filter(|k| k.0 == "apps/statefulsets").cloned().collect();
        for key in keys {
            s.sync_statefulset(&key);
        }
    }

    /// Whether pods the simulation creates from now on start Ready (false: the test marks
    /// each one ready with `set_pod_ready`, like a kubelet whose probe passes).
    pub fn set_new_pods_ready(&self, ready: bool) {
        self.state.lock().unwrap().new_pods_ready = ready;
    }

    pub fn set_pod_ready(&self, namespace: &str, name: &str, ready: bool) {
        let mut s = self.state.lock().unwrap();
        let key: Key = ("/pods".into(), namespace.into(), name.into());
        let Some(mut pod) = s.objects.get(&key).cloned() else { return };
        pod["status"]["conditions"] =
            json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
        s.store(key, pod.clone(), "MODIFIED");
        s.sync_owner(&pod);
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(&(kind.into(), namespace.into(), name.into())).cloned()
    }

    pub fn list(&self, kind: &str, namespace: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        s.objects.iter().filter(|(k, _)| k.0 == kind && k.1 == namespace).map(|(_, v)| v.clone()).collect()
    }

    /// Adds an object as another actor would (for example a PVC the StatefulSet made).
    pub fn insert(&self, kind: &str, mut obj: Value) {
        let mut s = self.state.lock().unwrap();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let name = obj["metadata"]["name"].as_str().expect("name").to_string();
        s.uid += 1;
        obj["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", s.uid));
        obj["metadata"]["creationTimestamp"] = json!(now());
        s.store((kind.into(), ns, name), obj, "ADDED");
    }

    /// Every version `kind`/`namespace`/`name` has had, oldest first (deletion last).
    pub fn history(&self, kind: &str, namespace: &str, name: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        s.history
            .iter()
            .filter(|(_, k, _, o)| {
                k == kind
                    && o["metadata"]["namespace"].as_str() == Some(namespace)
                    && o["metadata"]["name"].as_str() == Some(name)
            })
            .map(|(_, _, _, o)| o.clone())
            .collect()
    }

    /// Serves this fake over plain HTTP/1.1 on `listener`, so a separate process (the
    /// `freshet-operator` binary with a kubeconfig pointing here) can use it.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let api = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let api = api.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let req = Request::from_parts(parts, kube::client::Body::from(bytes));
                        Ok::<_, Infallible>(api.handle(req).await)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(sock);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    }

    /// A kubeconfig that points a client at `serve`'s address.
    pub fn kubeconfig(addr: std::net::SocketAddr) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n"
        )
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    async fn handle(self, req: Request<kube::client::Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        let path = parts.uri.path().to_string();
        let q = query(&parts.uri);
        let Some(t) = parse_path(&path) else {
            return status_error(404, "NotFound", &format!("no route for {path}"));
        };
        let mut s = self.state.lock().unwrap();
        s.requests += 1;
        if let Some(rules) = &self.rbac {
            let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
            let apply =
                parts.headers.get("content-type").is_some_and(|v| v == "application/apply-patch+yaml");
            let creates = apply && t.name.as_ref().is_some_and(|n| !s.objects.contains_key(&s.key(&t, n)));
            let verbs = rbac::verbs_for(&parts.method, &t, watch, creates);
            if let Some(verb) = rbac::denied(rules, &t, &verbs) {
                let (group, plural) = t.kind.split_once('/').unwrap_or(("", &t.kind));
                let resource =
                    t.subresource.as_ref().map_or(plural.to_string(), |sub| format!("{plural}/{sub}"));
                let message = format!(
                    "the operator's service account cannot {verb} resource \"{resource}\" in API group \"{group}\""
                );
                return status_error(403, "Forbidden", &message);
            }
        }
        if let Some(f) = s
            .failures
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == parts.method && path.contains(&f.path_contains))
        {
            f.remaining -= 1;
            let (code, reason) = (f.code, f.reason.clone());
            return status_error(code, &reason, &format!("injected failure: {reason}"));
        }
        let content_type =
            parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body: Value =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
        match (parts.method.clone(), t.name.clone()) {
            (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => s.watch(&t, &q),
            (Method::GET, None) => s.list_response(&t, &q),
            (Method::GET, Some(name)) => match s.objects.get(&s.key(&t, &name)) {
                Some(obj) => respond(StatusCode::OK, obj.clone()),
                None => not_found(&t, &name),
            },
            (Method::POST, None) => s.create(&t, body),
            (Method::PUT, Some(name)) => s.replace(&t, &name, body),
            (Method::PATCH, Some(name)) => {
                let manager = q.get("fieldManager").cloned().unwrap_or_else(|| "unknown".into());
                let force = q.get("force").is_some_and(|f| f == "true");
                s.patch_as(&t, &name, &content_type, body, &manager, force)
            }
            (Method::DELETE, Some(name)) => s.delete(&t, &name),
            (m, _) => {
                status_error(405, "MethodNotAllowed", &format!("{m} {path} is not supported by the fake"))
            }
        }
    }
}

fn not_found(t: &Target, name: &str) -> Response<Body> {
    let plural = t.kind.split('/').nth(1).unwrap_or("");
    status_error(404, "NotFound", &format!("{plural} \"{name}\" not found"))
}

impl State {
    fn key(&self, t: &Target, name: &str) -> Key {
        (t.kind.clone(), t.namespace.clone().unwrap_or_default(), name.to_string())
    }

    /// Stores `obj` under a new resourceVersion and tells the watchers.
    fn store(&mut self, key: Key, mut obj: Value, event: &'static str) -> Value {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
        if event == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), obj.clone());
        }
        self.history.push((self.version, key.0.clone(), event, obj.clone()));
        let line = Bytes::from(format!("{}\n", json!({"type": event, "object": obj})));
        self.watchers.retain(|w| {
            if w.kind != key.0
                || w.namespace.as_ref().is_some_and(|ns| *ns != key.1)
                || !matches_labels(&obj, &w.labels)
            {
                return !w.tx.is_closed();
            }
            w.tx.send(Ok(http_body::Frame::data(line.clone()))).is_ok()
        });
        obj
    }

    fn list_response(&self, t: &Target, q: &BTreeMap<String, String>) -> Response<Body> {
        let selector = parse_selector(q.get("labelSelector"));
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(k, v)| {
                k.0 == t.kind
                    && t.namespace.as_ref().is_none_or(|ns| *ns == k.1)
                    && matches_labels(v, &selector)
            })
            .map(|(_, v)| v.clone())
            .collect();
        respond(
            StatusCode::OK,
            json!({"apiVersion": t.api_version, "kind": "List",
                   "metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
        )
    }

    fn watch(&mut self, t: &Target, q: &BTreeMap<String, String>) -> Response<Body> {
        let since: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(self.version);
        let labels = parse_selector(q.get("labelSelector"));
        let (tx, rx) = mpsc::unbounded_channel();
        for (version, kind, event, obj) in &self.history {
            let ns_ok =
                t.namespace.as_ref().is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns));
            if *version > since && *kind == t.kind && ns_ok && matches_labels(obj, &labels) {
                let line = format!("{}\n", json!({"type": event, "object": obj}));
                let _ = tx.send(Ok(http_body::Frame::data(Bytes::from(line))));
            }
        }
        self.watchers.push(Watcher { kind: t.kind.clone(), namespace: t.namespace.clone(), labels, tx });
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .expect("response")
    }

    fn create(&mut self, t: &Target, mut obj: Value) -> Response<Body> {
        let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
            return status_error(422, "Invalid", "metadata.name: Required value");
        };
        let key = self.key(t, &name);
        if self.objects.contains_key(&key) {
            let plural = t.kind.split('/').nth(1).unwrap_or("");
            return status_error(409, "AlreadyExists", &format!("{plural} \"{name}\" already exists"));
        }
        self.uid += 1;
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", self.uid));
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if let Some(ns) = &t.namespace {
            meta["namespace"] = json!(ns);
        }
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        let stored = self.store(key.clone(), obj, "ADDED");
        let stored = self.after_write(&key).unwrap_or(stored);
        respond(StatusCode::CREATED, stored)
    }

    /// Writes `new` over the stored object `old`, as the API server would for the main
    /// resource or the status subresource.
    fn write(&mut self, t: &Target, key: Key, old: Value, mut new: Value) -> Response<Body> {
        let sent_version = new["metadata"]["resourceVersion"].as_str().map(str::to_string);
        if let Some(v) = sent_version {
            if old["metadata"]["resourceVersion"].as_str() != Some(v.as_str()) {
                return status_error(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
                );
            }
        }
        let status_only = t.subresource.as_deref() == Some("status");
        if status_only {
            let mut merged = old.clone();
            merged["status"] = new["status"].clone();
            new = merged;
        } else {
            // System metadata stays the server's; status stays the status subresource's.
            for field in ["uid", "creationTimestamp", "generation", "deletionTimestamp", "namespace", "name"]
            {
                match old["metadata"].get(field) {
                    Some(v) => new["metadata"][field] = v.clone(),
                    None => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            match old.get("status") {
                Some(st) => new["status"] = st.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if content(&new) != content(&old) {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                new["metadata"]["generation"] = json!(generation);
            }
        }
        // An object being deleted goes once its last finalizer does.
        let finalizers_left = new["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if new["metadata"].get("deletionTimestamp").is_some() && !finalizers_left {
            let gone = self.store(key, new, "DELETED");
            self.collect_dependents(&gone);
            return respond(StatusCode::OK, gone);
        }
        let stored = self.store(key.clone(), new, "MODIFIED");
        let stored = self.after_write(&key).unwrap_or(stored);
        respond(StatusCode::OK, stored)
    }

    fn replace(&mut self, t: &Target, name: &str, obj: Value) -> Response<Body> {
        let key = self.key(t, name);
        match self.objects.get(&key).cloned() {
            Some(old) => self.write(t, key, old, obj),
            None => not_found(t, name),
        }
    }

    fn patch(&mut self, t: &Target, name: &str, content_type: &str, patch: Value) -> Response<Body> {
        let key = self.key(t, name);
        let old = self.objects.get(&key).cloned();
        let status_only = t.subresource.as_deref() == Some("status");
        if content_type.starts_with("application/apply-patch") {
            let Some(old) = old else {
                return if status_only { not_found(t, name) } else { self.create(t, patch) };
            };
            // One field manager: what it applies replaces what it applied before.
            let mut new = old.clone();
            if status_only {
                new["status"] = patch["status"].clone();
            } else {
                for (k, v) in patch.as_object().into_iter().flatten() {
                    match k.as_str() {
                        "metadata" => {
                            for (mk, mv) in v.as_object().into_iter().flatten() {
                                if !["resourceVersion", "uid", "generation", "creationTimestamp"]
                                    .contains(&mk.as_str())
                                {
                                    new["metadata"][mk] = mv.clone();
                                }
                            }
                        }
                        "status" => {}
                        _ => new[k] = v.clone(),
                    }
                }
            }
            return self.write(t, key, old.clone(), new);
        }
        let Some(old) = old else { return not_found(t, name) };
        let mut new = old.clone();
        if content_type.starts_with("application/json-patch") {
            // The API server treats a missing path as null for "test"; json-patch does not.
            let ops: Vec<Value> = patch
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|op| {
                    let missing = op["path"].as_str().is_some_and(|p| new.pointer(p).is_none());
                    !(op["op"] == "test" && op["value"].is_null() && missing)
                })
                .collect();
            let ops: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
                Ok(p) => p,
                Err(e) => return status_error(400, "BadRequest", &format!("invalid JSON patch: {e}")),
            };
            if let Err(e) = json_patch::patch(&mut new, &ops) {
                return status_error(422, "Invalid", &format!("the JSON patch does not apply: {e}"));
            }
        } else {
            merge(&mut new, &patch);
        }
        if !status_only {
            // A patch carries a resourceVersion only when its author wants the check.
            if patch["metadata"]["resourceVersion"].is_null() {
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            }
        } else {
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        }
        self.write(t, key, old, new)
    }

    fn delete(&mut self, t: &Target, name: &str) -> Response<Body> {
        let key = self.key(t, name);
        let Some(mut obj) = self.objects.get(&key).cloned() else { return not_found(t, name) };
        let has_finalizers = obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj = self.store(key, obj, "MODIFIED");
            }
            return respond(StatusCode::OK, obj);
        }
        let gone = self.store(key, obj, "DELETED");
        self.collect_dependents(&gone);
        if t.kind == "/pods" {
            // The StatefulSet controller replaces a deleted pod at the current revision.
            self.sync_owner(&gone);
        }
        respond(StatusCode::OK, gone)
    }

    /// Background garbage collection: whatever `owner` owned is deleted too.
    fn collect_dependents(&mut self, owner: &Value) {
        let Some(uid) = owner["metadata"]["uid"].as_str().map(str::to_string) else { return };
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid.as_str())))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (kind, ns, name) in dependents {
            let group = kind.split_once('/').map(|(g, _)| g).unwrap_or("");
            let t = Target {
                kind: kind.clone(),
                api_version: if group.is_empty() { "v1".into() } else { format!("{group}/v1") },
                namespace: Some(ns),
                name: Some(name.clone()),
                subresource: None,
            };
            self.delete(&t, &name);
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_kind_namespace_name_and_subresource() {
        let t = parse_path("/apis/freshet.dev/v1alpha1/namespaces/ns/streams/s/status").unwrap();
        assert_eq!(
            (t.kind.as_str(), t.namespace.as_deref(), t.name.as_deref(), t.subresource.as_deref()),
            ("freshet.dev/streams", Some("ns"), Some("s"), Some("status"))
        );
        let t = parse_path("/api/v1/pods").unwrap();
        assert_eq!((t.kind.as_str(), t.namespace, t.name), ("/pods", None, None));
        assert_eq!(percent_decode("a%3Db%2Cc%3Dd"), "a=b,c=d");
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut v = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut v, &json!({"a": null, "b": {"c": 4}}));
        assert_eq!(v, json!({"b": {"c": 4, "d": 3}}));
    }
}
