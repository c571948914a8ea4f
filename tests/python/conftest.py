"""Shared helpers for the chart, CRD and manifest tests (run by `make test` in the venv)."""

import copy
import os
import pathlib
import subprocess

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "freshet"
MANIFESTS = ROOT / "crds" / "tests" / "manifests"
# Oldest Kubernetes we support; kubernetes-validate uses the newest schemas not newer.
KUBE_VERSION = "1.30"


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(values=None, namespace="freshet-system"):
    """Helm's own Go SDK renders the chart: the manifests (NOTES.txt aside) as dicts."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values or {}, name="freshet", namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(load_docs(text))
    return docs


def notes(values=None):
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values or {}, name="freshet", namespace="freshet-system", is_install=True)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def chart_crds():
    with helm.Chart.load(str(CHART)) as chart:
        return [doc for crd in chart.crds for doc in load_docs(crd["data"])]


def validate_k8s(obj):
    """Kubernetes' own schemas (strict: unknown fields are errors)."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def structural_to_jsonschema(schema):
    """A CRD's openAPIV3Schema as plain JSON Schema with the API server's behaviour for
    kubectl's strict field validation: unknown fields are errors, nullable allows null,
    int-or-string allows both."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k.startswith("x-kubernetes-") or k == "nullable":
                continue
            if k == "properties":
                out[k] = {name: walk(sub) for name, sub in v.items()}
            elif k in ("items", "additionalProperties") and isinstance(v, dict):
                out[k] = walk(v)
            elif k in ("allOf", "anyOf", "oneOf"):
                out[k] = [walk(x) for x in v]
            else:
                out[k] = v
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out

    top = walk(s)
    top.setdefault("properties", {})
    for implicit in ("apiVersion", "kind"):
        top["properties"][implicit] = {"type": "string"}
    top["properties"]["metadata"] = {"type": "object"}
    return top


def crd_validator(kind):
    crd = next(c for c in chart_crds() if c["spec"]["names"]["kind"] == kind)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(structural_to_jsonschema(schema))


def schema_errors(obj):
    """Every structural error of a custom resource, as 'path: message'."""
    v = crd_validator(obj["kind"])
    return [".".join(str(p) for p in e.absolute_path) + ": " + e.message for e in v.iter_errors(obj)]


def freshet_bin(name):
    bin_dir = os.environ.get("FRESHET_BIN")
    if not bin_dir:
        pytest.skip("FRESHET_BIN is not set: run through `make test`")
    return str(pathlib.Path(bin_dir) / name)


def operator_render(path):
    out = subprocess.run([freshet_bin("freshet-operator"), "render", str(path)],
                         check=True, capture_output=True, text=True)
    return load_docs(out.stdout)
