"""What the operator applies for a Stream (StatefulSet, Services, PDB, ConfigMap), rendered
by the operator binary itself, is valid for Kubernetes' own schemas."""

import pytest

from conftest import CHART, MANIFESTS, operator_render, validate_k8s

STREAMS = [p for p in sorted((MANIFESTS / "valid").glob("*.yaml")) + [CHART / "examples" / "stream.yaml"]
           if "kind: Stream\n" in p.read_text()]


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_objects_for_a_stream_are_valid_kubernetes(path):
    objects = operator_render(path)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "PodDisruptionBudget", "Service", "Service", "StatefulSet"]
    for obj in objects:
        validate_k8s(obj)


def test_the_example_stream_gets_three_brokers_for_four_shards():
    objects = {o["kind"]: o for o in operator_render(CHART / "examples" / "stream.yaml")}
    assert objects["StatefulSet"]["spec"]["replicas"] == 3
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
