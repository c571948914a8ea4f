"""The Helm chart, rendered and linted by Helm's own Go SDK, checked against Kubernetes'
schemas, with the settings a user sets reaching the operator."""

import pathlib

import helm_python as helm
import pytest
import yaml

from conftest import CHART, KUBE_VERSION, chart_crds, notes, render, validate_k8s

EVERYTHING = yaml.safe_load((pathlib.Path(__file__).parent / "values-everything.yaml").read_text())


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["defaults", "every-option"])
def test_lint_is_clean(values):
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}.0")
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report["messages"]


@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["defaults", "every-option"])
def test_every_rendered_manifest_is_valid_kubernetes(values):
    docs = render(values)
    assert "Deployment" in {d["kind"] for d in docs}
    for doc in docs:
        validate_k8s(doc)


def test_the_crds_are_valid_kubernetes_and_match_the_types():
    crds = chart_crds()
    assert sorted(c["metadata"]["name"] for c in crds) == ["deliverystreams.freshet.dev", "streams.freshet.dev"]
    for crd in crds:
        validate_k8s(crd)
    stream = next(c for c in crds if c["spec"]["names"]["kind"] == "Stream")
    version = stream["spec"]["versions"][0]
    assert stream["spec"]["names"]["shortNames"] == ["fst"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.shards",
        "statusReplicasPath": ".status.shards",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Shards", "Brokers", "Mode", "Retention", "Ready", "Age"]


def test_defaults_give_a_cluster_wide_operator_with_leader_election_and_metrics():
    kinds = by_kind(render())
    assert [r["kind"] for r in kinds["ClusterRole"]] == ["ClusterRole"]
    assert "Role" in kinds, "the leader-election Role"
    deploy = kinds["Deployment"][0]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FRESHET_BROKER_IMAGE"] == "ghcr.io/freshet/broker:0.1.0"
    assert env["FRESHET_REPLICAS_PER_BROKER"] == "100"
    assert env["FRESHET_LEADER_ELECTION"] == "true"
    assert env["FRESHET_WATCH_NAMESPACE"] == ""
    assert container["image"] == "ghcr.io/freshet/operator:0.1.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert kinds["Service"][0]["spec"]["ports"][0]["port"] == 8080


def test_every_option_reaches_the_operator():
    kinds = by_kind(render(EVERYTHING))
    assert "ClusterRole" not in kinds, "a watched namespace gets a namespaced Role"
    roles = kinds["Role"]
    assert [r["metadata"]["namespace"] for r in roles] == ["streaming"]
    assert "ServiceAccount" not in kinds
    assert "Service" not in kinds
    deploy = kinds["Deployment"][0]
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert deploy["spec"]["replicas"] == 2
    assert container["image"] == "registry.example.com/freshet/operator:0.1.0-dev"
    assert env["FRESHET_BROKER_IMAGE"] == "registry.example.com/freshet/broker:0.1.0-dev"
    assert env["FRESHET_REPLICAS_PER_BROKER"] == "50"
    assert env["FRESHET_MERGE_STABILIZATION_SECS"] == "900"
    assert env["FRESHET_HEARTBEAT_MS"] == "100"
    assert env["FRESHET_ELECTION_TIMEOUT_MS"] == "500"
    assert env["FRESHET_CLUSTER_DOMAIN"] == "k8s.example.internal"
    assert env["FRESHET_WATCH_NAMESPACE"] == "streaming"
    assert env["FRESHET_LEADER_ELECTION"] == "false"
    assert env["FRESHET_LEASE_DURATION_SECS"] == "30"
    assert env["FRESHET_METRICS_ADDR"] == "0.0.0.0:9090"
    assert env["RUST_LOG"] == "debug"
    assert env["FRESHET_LOG_FORMAT"] == "text"
    assert pod["serviceAccountName"] == "freshet-operator"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["value"] == "control"
    assert "nodeAffinity" in pod["affinity"]
    assert deploy["spec"]["template"]["metadata"]["labels"]["team"] == "streaming"
    assert deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert container["resources"]["limits"]["memory"] == "512Mi"


def test_rbac_grants_only_what_the_operator_uses():
    role = by_kind(render())["ClusterRole"][0]
    grants = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert all("*" not in verbs for verbs in grants.values()), "no wildcards"
    assert ("", "secrets") not in grants, "the operator never reads Secrets"
    # That each grant is enough is shown by the operator's Rust tests, which run against
    # these rules; here, that nothing beyond them is granted.
    assert grants[("freshet.dev", "streams")] == {"list", "watch", "patch"}, "never creates or deletes a user's Stream"
    assert grants[("freshet.dev", "streams/status")] == {"patch"}
    assert grants[("", "pods")] == {"list", "delete"}, "pods are only deleted, to roll them"
    assert grants[("", "persistentvolumeclaims")] == {"get", "list", "patch", "delete"}
    lease = by_kind(render())["Role"][0]
    assert lease["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]}]


@pytest.mark.parametrize("bad", [
    {"replicaCount": 0},
    {"replicaCount": "two"},
    {"capacity": {"replicasPerBroker": 0}},
    {"image": {"repository": "x", "pullPolicy": "Sometimes"}},
    {"watchNamespace": "Not_A_Namespace"},
    {"metrics": {"port": 70000}},
    {"logFormat": "xml"},
    {"typo": True},
], ids=lambda v: next(iter(v)))
def test_bad_values_are_refused_with_the_offending_field(bad):
    with pytest.raises(helm.HelmValuesError) as err:
        render(bad)
    field = next(iter(bad))
    assert field in str(err.value), str(err.value)


def test_notes_tell_the_user_how_to_create_a_first_stream():
    text = notes()
    assert "kind: Stream" in text
    assert "kubectl get streams" in text
