"""The learned cold starts, persisted in a ConfigMap the daemon owns (``kubernetes.stateConfigMap``).

Pods and Nodes that still exist rebuild most of what was learned; this summary keeps the rest
(startups of pods long scaled away) across restarts and leader changes. Every replica reads it on
start; only the leader writes it (one writer: no write conflicts between replicas), at most every
``save_period_seconds`` and only when something new was learned.

Format (key ``state.json``), small on purpose (64 samples per model and pool)::

    {"version": 1, "savedAt": 1714560000.0,
     "models": {"llama": [["<pod uid>", <ready at>, <startup s>, <node wait s>], ...]},
     "pools": {"gpu-h100": [["<node name>", <ready at>, <provisioning s>], ...]}}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from scaler.core.clock import Clock
from scaler.core.coldstart import DurationSample, StartupSample
from scaler.edges.kubernetes.api import Api, KubeApiError, Obj
from scaler.edges.kubernetes.cluster import Cluster

log = logging.getLogger("prewarm.kubernetes")

STATE_KEY = "state.json"
STATE_VERSION = 1
SAVE_PERIOD_SECONDS = 60.0


def encode_state(
    models: dict[str, list[StartupSample]], pools: dict[str, list[DurationSample]], *, now: float
) -> str:
    return json.dumps({
        "version": STATE_VERSION,
        "savedAt": now,
        "models": {k: [[s.uid, s.at, round(s.startup_seconds, 3), round(s.node_wait_seconds, 3)]
                       for s in v] for k, v in sorted(models.items())},
        "pools": {k: [[d.key, d.at, round(d.seconds, 3)] for d in v] for k, v in sorted(pools.items())},
    }, separators=(",", ":"))


def decode_state(text: str) -> tuple[dict[str, list[StartupSample]], dict[str, list[DurationSample]]]:
    """Samples from ``state.json``; malformed entries are skipped (the summary is best effort)."""
    raw: Any = json.loads(text)
    if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
        return {}, {}
    models: dict[str, list[StartupSample]] = {}
    for name, rows in (raw.get("models") or {}).items():
        models[str(name)] = [
            StartupSample(uid=str(r[0]), at=float(r[1]), startup_seconds=float(r[2]),
                          node_wait_seconds=float(r[3]))
            for r in rows if isinstance(r, list) and len(r) == 4
        ]
    pools: dict[str, list[DurationSample]] = {}
    for name, rows in (raw.get("pools") or {}).items():
        pools[str(name)] = [DurationSample(key=str(r[0]), at=float(r[1]), seconds=float(r[2]))
                            for r in rows if isinstance(r, list) and len(r) == 3]
    return models, pools


class StateStore:
    """Load on start (every replica), save periodically (leader only)."""

    def __init__(
        self,
        clock: Clock,
        api: Api,
        cluster: Cluster,
        *,
        namespace: str,
        name: str,
        is_leader: Callable[[], bool],
        save_period_seconds: float = SAVE_PERIOD_SECONDS,
    ) -> None:
        self.clock = clock
        self.api = api
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.is_leader = is_leader
        self.save_period_seconds = save_period_seconds
        self.saves_total = 0
        self.errors_total = 0
        self.loaded = False

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"

    def load(self) -> bool:
        """Merge the persisted samples into the cluster view (blocking). False when there are none."""
        try:
            obj = self.api.get(self.path)
        except KubeApiError as exc:
            if not exc.not_found:
                self.errors_total += 1
                log.warning("cannot read state ConfigMap %s/%s: %s", self.namespace, self.name, exc)
            return False
        text = (obj.get("data") or {}).get(STATE_KEY)
        if not text:
            return False
        try:
            models, pools = decode_state(text)
        except (ValueError, TypeError, IndexError) as exc:
            self.errors_total += 1
            log.warning("state ConfigMap %s/%s is malformed (%s); starting afresh",
                        self.namespace, self.name, exc)
            return False
        self.cluster.load_samples(models, pools)
        self.loaded = True
        return True

    def save(self) -> bool:
        """Write the current samples (blocking); create the ConfigMap when missing. Leader only."""
        if not self.is_leader():
            return False
        models, pools = self.cluster.export_samples()
        data = {STATE_KEY: encode_state(models, pools, now=self.clock.now())}
        for _ in range(3):
            try:
                self._write(data)
            except KubeApiError as exc:
                if exc.conflict:
                    continue  # someone (an old leader's last save) wrote in between: re-read, retry
                self.errors_total += 1
                log.warning("cannot save state ConfigMap %s/%s: %s", self.namespace, self.name, exc)
                return False
            self.saves_total += 1
            self.cluster.changed = False
            return True
        self.errors_total += 1
        return False

    def _write(self, data: dict[str, str]) -> None:
        try:
            current = self.api.get(self.path)
        except KubeApiError as exc:
            if not exc.not_found:
                raise
            self.api.create(f"/api/v1/namespaces/{self.namespace}/configmaps", self._body(data, None))
            return
        version = str((current.get("metadata") or {}).get("resourceVersion", ""))
        self.api.replace(self.path, self._body(data, version))

    def _body(self, data: dict[str, str], version: str | None) -> Obj:
        metadata: Obj = {
            "name": self.name, "namespace": self.namespace,
            "labels": {"app.kubernetes.io/name": "prewarm", "app.kubernetes.io/component": "state"},
        }
        if version is not None:
            metadata["resourceVersion"] = version
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}

    async def run(self) -> None:
        """Save every ``save_period_seconds`` when new samples arrived (leader only)."""
        while True:
            await asyncio.sleep(self.save_period_seconds)
            if self.cluster.changed and self.is_leader():
                await self.api.call(self.save)
