"""Config hot reload through the API: watch one ConfigMap's ``config.yaml``.

When ``kubernetes.configMap`` is set, this watch is the daemon's one live config source (the
mounted file is read once at start; a ConfigMap volume lags by up to the kubelet sync period,
~1 min): a change applies within a second. A change is parsed with the app's parser; a bad one
never replaces the last good config: it is logged, counted, and reported as a ``Warning`` Event
*on the ConfigMap* (``kubectl describe configmap`` shows it next to the edit that caused it).

Every replica watches and applies; the Event's name is derived from the ConfigMap's
resourceVersion, so of N replicas one creates it and the others get 409 (one Event per bad edit).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from scaler.core.clock import Clock
from scaler.core.config import ParsedSettings, Settings
from scaler.core.errors import ConfigError
from scaler.edges import ReloadStats
from scaler.edges.kubernetes.api import Api, KubeApiError, Obj, format_time
from scaler.edges.kubernetes.watch import ListWatch

log = logging.getLogger("prewarm.config")

CONFIG_KEY = "config.yaml"
EVENT_REASON = "InvalidConfig"
EVENT_MESSAGE_LIMIT = 1024
"""The API server truncates longer Event messages; keep the first problems readable."""


class ConfigMapWatcher:
    """Applies valid ``config.yaml`` changes via ``on_settings``; rejects bad ones with an Event."""

    def __init__(
        self,
        clock: Clock,
        api: Api,
        *,
        namespace: str,
        name: str,
        on_settings: Callable[[ParsedSettings], None],
        parse: Callable[[str, str], ParsedSettings],
        current: Settings | None = None,
        component: str = "prewarm",
        instance: str = "",
        key: str = CONFIG_KEY,
    ) -> None:
        self.clock = clock
        self.api = api
        self.namespace = namespace
        self.name = name
        self.on_settings = on_settings
        self.parse = parse
        """(text, source) -> settings or ConfigError: the app's validation, every edge's checks in."""
        self.component = component
        self.instance = instance
        self.key = key
        self.current = current
        """Settings in use: an unchanged config (the first list, mostly) is not re-applied."""
        self.stats = ReloadStats()
        """Applied and rejected versions of the ConfigMap (``prewarm_config_reload*``)."""
        self.events_total = 0
        self._digest: str | None = None
        self._pending: set[asyncio.Task[bool]] = set()
        self.watch = ListWatch(
            api, f"/api/v1/namespaces/{namespace}/configmaps", self,
            query={"fieldSelector": f"metadata.name={name}"}, name=f"configmap {namespace}/{name}",
        )

    @property
    def source(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    async def run(self) -> None:
        await self.watch.run()

    # --- WatchHandler (event loop) -------------------------------------------------------------

    def replace(self, items: list[Obj]) -> None:
        for obj in items:
            self.apply("ADDED", obj)

    def apply(self, event_type: str, obj: Obj) -> None:
        if event_type == "DELETED":
            log.warning("%s was deleted; keeping the last good config", self.source)
            return
        text = (obj.get("data") or {}).get(self.key)
        digest = hashlib.sha256(text.encode()).hexdigest() if text is not None else "missing"
        if digest == self._digest:
            return  # metadata-only change (labels, annotations): nothing to reload
        self._digest = digest
        if text is None:
            self._reject(obj, ConfigError([f"key {self.key!r} is missing"], source=self.source))
            return
        try:
            parsed = self.parse(text, self.source)
        except ConfigError as exc:
            self._reject(obj, exc)
            return
        for warning in parsed.warnings:
            log.warning("%s: %s", self.source, warning)
        if parsed.settings == self.current:
            self.stats.last_error = None  # valid again, but nothing new to apply
            return
        self.current = parsed.settings
        self.stats.applied()
        log.info("config reloaded from %s (%d models)", self.source, len(parsed.settings.models))
        self.on_settings(parsed)

    def _reject(self, obj: Obj, error: ConfigError) -> None:
        self.stats.rejected(error)
        log.error("config change rejected, keeping the last good config: %s", error)
        task = asyncio.get_running_loop().create_task(
            self.api.call(self.emit_event, obj, error), name="config-event")
        self._pending.add(task)
        task.add_done_callback(self._event_done)

    def _event_done(self, task: asyncio.Task[bool]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cannot create the InvalidConfig event: %s", task.exception())

    # --- Event ---------------------------------------------------------------------------------

    def emit_event(self, obj: Obj, error: ConfigError) -> bool:
        """Create the Warning Event on the ConfigMap (blocking). False when it was not created."""
        meta = obj.get("metadata") or {}
        version = str(meta.get("resourceVersion", ""))
        now = self.clock.now()
        message = "config.yaml rejected, the last good config stays in use: " + "; ".join(error.problems)
        if len(message) > EVENT_MESSAGE_LIMIT:
            message = message[: EVENT_MESSAGE_LIMIT - 3] + "..."
        body: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{self.name}.invalid-config.{version}", "namespace": self.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": self.name,
                               "namespace": self.namespace, "uid": meta.get("uid", ""),
                               "resourceVersion": version},
            "reason": EVENT_REASON, "message": message, "type": "Warning",
            "source": {"component": self.component},
            # No eventTime: a core/v1 Event with one must also carry action and series.
            "firstTimestamp": format_time(now), "lastTimestamp": format_time(now), "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.instance,
        }
        try:
            self.api.create(f"/api/v1/namespaces/{self.namespace}/events", body)
        except KubeApiError as exc:
            if not exc.conflict:  # 409: another replica reported this version already
                log.warning("cannot create the InvalidConfig event: %s", exc)
            return False
        self.events_total += 1
        return True

    async def drain(self) -> None:
        """Wait for Events being written (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

