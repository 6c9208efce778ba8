"""Config hot reload through the API: valid edits applied, invalid ones kept out with an Event + metric."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from scaler.core.config import ParsedSettings
from scaler.edges.kubernetes.api import Api
from scaler.edges.kubernetes.collector import KubernetesCollector
from scaler.edges.kubernetes.edge import KubernetesEdge
from tests.kube.common import build, raw_config, running, settings
from tests.support.kubeenv import KubeEnv, eventually

pytestmark = [pytest.mark.kube, pytest.mark.slow]

CONFIGMAP = "/api/v1/namespaces/prewarm/configmaps/prewarm-config"


def put_config(admin: Api, raw: dict[str, Any] | str) -> None:
    text = raw if isinstance(raw, str) else yaml.safe_dump(raw)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "prewarm-config", "namespace": "prewarm"}, "data": {"config.yaml": text}}
    try:
        current = admin.get(CONFIGMAP)
    except Exception:
        admin.create("/api/v1/namespaces/prewarm/configmaps", body)
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    admin.replace(CONFIGMAP, body)


def events(admin: Api) -> list[dict[str, Any]]:
    # CoreV1 events (EventsV1 cannot decode core events without eventTime in this client).
    found = admin.get("/api/v1/namespaces/prewarm/events",
                      {"fieldSelector": "involvedObject.kind=ConfigMap,involvedObject.name=prewarm-config"})
    return list(found.get("items") or [])


async def test_invalid_configmap_is_kept_out_with_an_event_and_a_metric(kube: KubeEnv, admin: Api) -> None:
    raw = raw_config(configMap="prewarm-config")
    put_config(admin, raw)
    applied: list[ParsedSettings] = []
    applied_b: list[ParsedSettings] = []
    config = settings(configMap="prewarm-config")
    edges: dict[str, KubernetesEdge] = {}

    def apply_a(parsed: ParsedSettings) -> None:  # what the app does: every edge takes the config
        applied.append(parsed)
        edges["a"].apply(parsed.settings)

    async with running(build(kube, config, identity="a", on_settings=apply_a)) as a, \
            running(build(kube, config, identity="b", on_settings=applied_b.append)) as b:
        edges["a"] = a
        assert a.config_watcher is not None and b.config_watcher is not None
        assert applied == [], "the unchanged config is not re-applied on start"

        edited = copy.deepcopy(raw)
        edited["models"][0]["maxReplicas"] = 12
        put_config(admin, edited)
        await eventually(lambda: len(applied) == 1 and len(applied_b) == 1, timeout=10, what="valid edit")
        assert applied[0].settings.models[0].maxReplicas == 12
        assert a.cluster.settings.models[0].maxReplicas == 12  # the edge follows the applied config

        broken = copy.deepcopy(edited)
        broken["models"][0]["maxReplicas"] = 0
        broken["models"][1]["capacityPerReplica"] = -3
        put_config(admin, broken)
        await eventually(lambda: a.config_watcher is not None and a.config_watcher.stats.errors_total == 1,
                         timeout=10, what="rejection")
        await eventually(lambda: len(events(admin)) == 1, timeout=10, what="the Event")
        await a.config_watcher.drain()
        await b.config_watcher.drain()
        event = events(admin)[0]
        assert (event["type"], event["reason"]) == ("Warning", "InvalidConfig")
        assert event["involvedObject"]["uid"] == admin.get(CONFIGMAP)["metadata"]["uid"]
        assert "models[0].maxReplicas" in event["message"] and "models[1].capacityPerReplica" in event["message"]
        assert a.config_watcher.events_total + b.config_watcher.events_total == 1, "one Event per bad edit"
        assert len(applied) == 1, "the last good config stays"

        registry = CollectorRegistry()
        registry.register(KubernetesCollector(a))
        assert registry.get_sample_value("prewarm_configmap_reload_errors_total") == 1.0
        assert a.config_watcher.stats.errors_total == 1  # what the app exports as prewarm_config_reload_errors_total

        put_config(admin, "models: [unterminated")  # not even YAML
        await eventually(lambda: a.config_watcher is not None and a.config_watcher.stats.errors_total == 2,
                         timeout=10, what="YAML rejection")
        await eventually(lambda: len(events(admin)) == 2, timeout=10, what="second Event")
        assert any("invalid YAML" in e["message"] for e in events(admin))

        edited["models"][0]["maxReplicas"] = 14
        put_config(admin, edited)
        await eventually(lambda: len(applied) == 2, timeout=10, what="recovery")
        assert applied[1].settings.models[0].maxReplicas == 14
