"""The adapters' pure parts, without an API server: object parsing, selectors, state format."""

from __future__ import annotations

import copy
import json

import pytest

from scaler.core.coldstart import DurationSample, StartupSample
from scaler.edges.kubernetes.api import parse_time, quantity_int
from scaler.edges.kubernetes.balloons import balloon_deployment, contains
from scaler.edges.kubernetes.cluster import Selector, node_view, pod_view
from scaler.edges.kubernetes.state import decode_state, encode_state
from tests.kube.common import settings


@pytest.mark.parametrize(("labels", "expected"), [
    pytest.param({"app": "vllm", "tier": "gpu"}, True, id="all-match"),
    pytest.param({"app": "vllm", "tier": "cpu"}, False, id="notin"),
    pytest.param({"app": "vllm", "tier": "gpu", "canary": "1"}, False, id="does-not-exist"),
    pytest.param({"app": "other", "tier": "gpu"}, False, id="match-labels"),
    pytest.param({"tier": "gpu"}, False, id="missing-label"),
])
def test_selector(labels: dict[str, str], expected: bool) -> None:
    selector = Selector.from_obj({
        "matchLabels": {"app": "vllm"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu", "gpu2"]},
                             {"key": "tier", "operator": "NotIn", "values": ["cpu"]},
                             {"key": "canary", "operator": "DoesNotExist"},
                             {"key": "app", "operator": "Exists"}],
    })
    assert selector.matches(labels) is expected


def test_an_empty_selector_claims_no_pod() -> None:
    assert not Selector.from_obj({}).matches({"app": "anything"})


def test_pod_view_reads_stages_and_gpus() -> None:
    pod = pod_view({
        "metadata": {"uid": "u1", "name": "p", "namespace": "llm", "labels": {"app": "vllm"},
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1", "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "4"}}},
            {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}},
        ]},
        "status": {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:03Z"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:01:00Z"},
        ], "containerStatuses": [{"restartCount": 2}]},
    })
    assert pod is not None
    base = parse_time("2026-01-01T00:00:00Z")
    assert base is not None
    assert (pod.created, pod.scheduled, pod.ready) == (base, base + 3, None)
    assert pod.requests == {"nvidia.com/gpu": 3} and pod.restarts == 2 and pod.node == "n1"
    assert pod_view({"metadata": {"name": "no-uid"}}) is None


def test_node_view() -> None:
    node = node_view({"metadata": {"name": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
                      "spec": {"unschedulable": True},
                      "status": {"allocatable": {"nvidia.com/gpu": "8", "cpu": "95"},
                                 "conditions": [{"type": "Ready", "status": "True",
                                                 "lastTransitionTime": "2026-01-01T00:03:00Z"}]}})
    assert node is not None and node.ready and node.unschedulable
    assert node.allocatable == {"nvidia.com/gpu": 8}
    assert node.ready_since is not None and node.ready_since - node.created == 180


@pytest.mark.parametrize(("value", "expected"), [("8", 8), (4, 4), ("1.0", 1), ("500m", 0), ("x", 0), (None, 0)])
def test_quantity_int(value: object, expected: int) -> None:
    assert quantity_int(value) == expected


def test_state_round_trip_and_malformed_rows() -> None:
    models = {"llama": [StartupSample("u1", at=10.0, startup_seconds=300.5, node_wait_seconds=120.0)]}
    pools = {"h100": [DurationSample("n1", at=5.0, seconds=180.0)]}
    assert decode_state(encode_state(models, pools, now=20.0)) == (models, pools)
    raw = json.loads(encode_state(models, pools, now=20.0))
    raw["models"]["llama"].append(["short-row"])
    assert decode_state(json.dumps(raw)) == (models, pools)
    assert decode_state(json.dumps({"version": 99})) == ({}, {})


def test_template_drift_ignores_server_defaults_but_not_the_pool_shape() -> None:
    pool = settings().nodePools[0]
    wanted = balloon_deployment(pool, 2)["spec"]["template"]
    assert balloon_deployment(pool, 5)["spec"]["template"] == wanted  # size is not shape
    live = copy.deepcopy(wanted)
    live["spec"]["dnsPolicy"] = "ClusterFirst"  # filled in by the API server
    live["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert contains(live, wanted)
    live["spec"]["nodeSelector"] = {"node-type": "other"}
    assert not contains(live, wanted)
    live["spec"]["nodeSelector"] = {**wanted["spec"]["nodeSelector"], "extra": "x"}
    assert not contains(live, wanted)  # an added key in a map of user data is drift
    assert contains({"spec": {}}, {"spec": {"tolerations": [], "nodeSelector": {}}})  # empty ones dropped
