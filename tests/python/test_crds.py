"""The generated CRDs' structural schemas accept every valid example and refuse every
invalid one marked `# layer: schema` at the field it names (CEL-layer cases are the Rust
test's: here they must pass, so it is their CEL rule that refuses them)."""

import pathlib

import pytest

from conftest import CHART, MANIFESTS, load_docs, schema_errors


def header(text, key):
    for line in text.splitlines():
        if line.startswith(f"# {key}: "):
            return line.split(": ", 1)[1].strip()
    return None


def cases(folder):
    return sorted((MANIFESTS / folder).glob("*.yaml"))


VALID = cases("valid") + sorted((CHART / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_examples_pass_the_schema(path):
    for doc in load_docs(path.read_text()):
        assert schema_errors(doc) == []


@pytest.mark.parametrize("path", cases("invalid"), ids=lambda p: p.name)
def test_invalid_examples_are_refused_by_their_layer(path):
    text = path.read_text()
    layer, expect = header(text, "layer"), header(text, "expect")
    assert layer in ("schema", "cel") and expect, f"{path.name} needs '# layer:' and '# expect:' lines"
    errors = schema_errors(load_docs(text)[-1])
    if layer == "schema":
        assert any(expect in e for e in errors), f"expected an error at {expect!r}, got {errors}"
    else:
        assert errors == [], "a CEL case must be structurally valid"


def test_there_are_cases_for_both_layers():
    layers = [header(p.read_text(), "layer") for p in cases("invalid")]
    assert layers.count("schema") >= 8 and layers.count("cel") >= 5
