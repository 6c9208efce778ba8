"""Wiring: the engine in the middle, a loop over edges around it, one task runner.

``App`` is the one owner of settings. A config reaches it from exactly one live source (the
ConfigMap watch when ``kubernetes.configMap`` is set, else the config file, polled); it is
validated by the core and every edge's ``problems``, then handed to the engine and to each edge's
``apply``. ``serve()`` runs one asyncio loop; SIGTERM/SIGINT flips health to NOT_SERVING, ends
open streams with OK, lets in-flight calls finish, then stops everything.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from scaler.core.clock import AcceleratedClock, Clock, SystemClock
from scaler.core.config import ParsedSettings, Settings, settings_from_yaml
from scaler.core.errors import ConfigError
from scaler.core.fleet import ClusterView, Published
from scaler.edges import Edge, ReloadStats
from scaler.edges.configfile import ConfigFileEdge, load_config_file
from scaler.edges.keda.server import KedaEdge, TlsFiles, split_host_port
from scaler.edges.metrics import MetricsEdge
from scaler.edges.metrics.collector import Counters, ForecastCollector
from scaler.edges.prometheus import PrometheusEdge
from scaler.edges.replay import ReplayEdge
from scaler.engine import Engine
from scaler.explain import explain, summary
from scaler.fitpool import FitPool
from scaler.runner import TaskRunner
from scaler.snapshot import SnapshotHolder, initial_snapshot, replace_settings

if TYPE_CHECKING:
    from scaler.edges.kubernetes.edge import KubernetesEdge

log = logging.getLogger("prewarm")

CHECKS: tuple[Callable[[Settings], list[str]], ...] = (PrometheusEdge.problems,)
"""Every edge's own config checks (edges without any inherit ``Edge.problems``: none)."""


def parse_config(text: str, source: str) -> ParsedSettings:
    """YAML text into settings: the core's checks, then every edge's; all problems at once."""
    parsed = settings_from_yaml(text, source=source)
    problems = [p for check in CHECKS for p in check(parsed.settings)]
    if problems:
        raise ConfigError(problems, source=source)
    return parsed


def load_config(path: Path) -> ParsedSettings:
    return load_config_file(path, parse_config)


@dataclass(frozen=True)
class ServeOptions:
    config: Path | None
    demo: bool = False
    listen: str = "0.0.0.0:9090"
    metrics_listen: str = "0.0.0.0:8080"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    kubeconfig: str | None = None
    grace_seconds: float = 10.0
    config_poll_seconds: float = 2.0
    ready_timeout_seconds: float = 60.0
    """Health turns SERVING when every model has a decision, or after this long regardless."""


def load_settings(options: ServeOptions) -> ParsedSettings:
    if options.demo:
        text = resources.files("scaler").joinpath("data/demo.yaml").read_text(encoding="utf-8")
        return parse_config(text, "embedded demo config")
    if options.config is None:
        raise ConfigError(["--config FILE is required (or --demo)"], source="prewarm serve")
    return load_config(options.config)


def make_source(settings: Settings, base_dir: Path | None) -> PrometheusEdge | ReplayEdge:
    if settings.replay is not None:
        return ReplayEdge(settings, base_dir=base_dir)
    return PrometheusEdge(settings)


def make_clock(settings: Settings) -> Clock:
    if settings.replay is not None and settings.replay.speed != 1.0:
        return AcceleratedClock(start=SystemClock().now(), speed=settings.replay.speed)
    return SystemClock()


class App:
    """One running daemon; ``run()`` returns the exit code."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        parsed = load_settings(options)
        for warning in parsed.warnings:
            log.warning("config: %s", warning)
        self.settings = parsed.settings
        self.clock = make_clock(self.settings)
        self.holder = SnapshotHolder(initial_snapshot(self.settings, self.clock.now()))
        self.executor = FitPool(self.settings.defaults.fitWorkers or os.cpu_count() or 1)
        self.source = make_source(self.settings, options.config.parent if options.config else None)
        views: Published[ClusterView] = Published(ClusterView())
        self.kube = self._build_kubernetes(views)
        self.engine = Engine(self.clock, self.settings, self.source, self.holder,
                             fit_executor=self.executor, cluster=views if self.kube else None)
        configmap = self.kube is not None and self.kube.config_watcher is not None
        # One live config source: with a ConfigMap to watch, the file only bootstraps.
        self.config_file = (
            ConfigFileEdge(options.config, parse_config, self._on_settings,
                           poll_seconds=options.config_poll_seconds)
            if options.config is not None and not configmap else None)
        self.keda = KedaEdge(self.holder, self.clock, listen=options.listen,
                             tls=TlsFiles(options.tls_cert, options.tls_key, options.tls_client_ca),
                             finish=self.engine.finish, grace_seconds=options.grace_seconds)
        host, port = split_host_port(options.metrics_listen, "--metrics-listen")
        self.registry = CollectorRegistry()
        self.edges: list[Edge] = [e for e in (self.source, self.kube, self.config_file, self.keda)
                                  if e is not None]
        kube = self.kube
        self.collector = ForecastCollector(
            lambda: self.holder.current, self.clock, counters=self._counters,
            pools=(lambda: kube.pool_status(now=self.clock.now())) if kube is not None else None)
        self.metrics = MetricsEdge(self.registry, host=host, port=port, flag="--metrics-listen",
                                   fast=[self.collector.render], routes={"/explain": self._explain})
        self.edges.append(self.metrics)
        self.registry.register(self.executor)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        for edge in self.edges:
            collector = edge.collector()
            if collector is not None:
                self.registry.register(collector)
        self.stopping = asyncio.Event()
        self.runner = TaskRunner(self.stopping)
        self.registry.register(self.runner)

    @property
    def grpc_port(self) -> int:
        return self.keda.port

    @property
    def metrics_port(self) -> int:
        return self.metrics.port

    @property
    def exit_code(self) -> int:
        return self.runner.exit_code

    def _build_kubernetes(self, views: Published[ClusterView]) -> KubernetesEdge | None:
        """Cold-start learning, balloons, leader election, ConfigMap watch: with `kubernetes:` only."""
        if self.settings.kubernetes is None:
            return None
        from scaler.edges.kubernetes.edge import build_kubernetes

        try:
            return build_kubernetes(self.settings, clock=self.clock, kubeconfig=self.options.kubeconfig,
                                    on_settings=self._on_settings, parse=parse_config, views=views,
                                    snapshots=self.holder)
        except Exception as exc:  # a wrong kubeconfig is a user error, reported as one
            raise ConfigError([f"kubernetes: cannot connect to the API server: {exc}"],
                              source="--kubeconfig") from None

    def _explain(self, query: Mapping[str, list[str]]) -> tuple[int, Any]:
        """``/explain?model=NAME`` on the metrics port (``prewarm explain`` reads it)."""
        snap = self.holder.current
        name = (query.get("model") or [""])[0]
        if not name:
            return 200, summary(snap)
        page = explain(snap, name, now=self.clock.now())
        if page is None:
            return 404, {"error": f"model {name[:64]!r} is not in the config"}
        return 200, page

    def _counters(self) -> Counters:
        stats = self.engine.stats
        errors = dict(stats.source_errors)
        for reason, n in self.source.errors_total.items():
            errors[reason] = max(errors.get(reason, 0), n)
        live: ReloadStats | None = None
        if self.kube is not None and self.kube.config_watcher is not None:
            live = self.kube.config_watcher.stats
        elif self.config_file is not None:
            live = self.config_file.stats
        return Counters(source_errors=errors, refreshes=stats.refreshes, refits=stats.refits,
                        fit_errors=stats.fit_errors, last_source_success=stats.last_source_success,
                        last_refresh_seconds=stats.last_refresh_seconds,
                        last_refit_seconds=stats.last_refit_seconds, config=live)

    def _on_settings(self, parsed: ParsedSettings) -> None:
        """A new valid config from the live source: the engine and every edge take it."""
        if parsed.settings.kubernetes != self.settings.kubernetes:
            log.warning("config: changes to the `kubernetes:` section apply after a restart")
        self.settings = parsed.settings
        self.engine.apply_settings(parsed.settings)
        for edge in self.edges:
            edge.apply(parsed.settings)
        self.holder.replace_nowait(replace_settings(self.holder.current, parsed.settings))
        self._schedule_jobs()
        self.runner.once("backfill", self.engine.backfill)

    def _schedule_jobs(self) -> None:
        d = self.settings.defaults
        speed = self.settings.replay.speed if self.settings.replay is not None else 1.0
        self.runner.every("refresh", d.refreshInterval / speed, self._refresh)
        self.runner.every("refit", d.refitInterval / speed, self._refit)
        if self.options.demo:
            self.runner.every("demo-status", 2.0, self._log_status)

    async def _refresh(self) -> None:
        snapshot = await self.engine.refresh()
        self.collector.accuracy.observe(snapshot)  # coverage counts every refresh, not every scrape

    async def _refit(self) -> None:
        await self.engine.backfill()
        await self.engine.refit()

    async def _log_status(self) -> None:
        """One line per model, so `serve --demo` shows what the scaler is doing."""
        snap = self.holder.current
        when = time.strftime("%a %H:%M", time.gmtime(snap.at))
        for name, d in snap.decisions.items():
            fit = snap.fits.get(name)
            peak = f"- ({d.message})" if d.forecast_peak is None and d.message else (
                "-" if d.forecast_peak is None else f"{d.forecast_peak:.0f}")
            demand = "-" if d.demand is None else f"{d.demand:.0f}"
            log.info("[%s] %s: demand %s, forecast p%.0f peak %s within %.0fm -> %d replicas "
                     "(%s)%s", when, name, demand, 100 * snap.settings.models[0].policy.scale_quantile,
                     peak, d.lead_seconds / 60, d.replicas, d.reason.value,
                     f", forecaster {fit.model_name}" if fit else "")

    async def run(self) -> int:
        started: list[Edge] = []
        try:
            for edge in self.edges:
                await edge.start()
                started.append(edge)
            log.info("serving ExternalScaler on %s (port %d), metrics on port %d, %d model(s)",
                     self.options.listen, self.grpc_port, self.metrics_port, len(self.settings.models))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop, sig)
            loop.add_signal_handler(signal.SIGHUP, self._reload)
            for edge in self.edges:
                for task in edge.tasks():
                    self.runner.spawn(task)
            # Answer first (demand alone), learn after: history and fits follow in the background.
            await self._refresh()
            # Everything built so far (settings, per-model state) lives as long as the daemon:
            # out of the collector's sight, a full collection no longer stalls the event loop
            # for tens of milliseconds at thousands of models.
            gc.freeze()
            self._schedule_jobs()
            self.runner.start()
            self.runner.once("ready", self._become_ready)
            self.runner.once("first-refit", self._refit)
            await self.stopping.wait()
        finally:
            await self._shutdown(started)
        return self.exit_code

    def _stop(self, sig: signal.Signals) -> None:
        log.info("%s: stopping", sig.name)
        self.stopping.set()

    def _reload(self) -> None:
        """SIGHUP: re-read the config now (the daemon convention), from the live source."""
        if self.config_file is not None:
            if not self.config_file.poll():
                log.info("SIGHUP: %s unchanged or rejected; keeping the current config", self.config_file.path)
        else:
            log.info("SIGHUP: the config comes from %s; nothing to re-read",
                     "the ConfigMap watch" if self.kube is not None else "the embedded demo")

    async def _become_ready(self) -> None:
        """Health SERVING once every configured model has a decision (or after the bound)."""
        deadline = time.monotonic() + self.options.ready_timeout_seconds
        while True:
            missing = [n for n, d in self.holder.current.decisions.items() if not d.valid]
            if not missing:
                break
            if time.monotonic() >= deadline:
                log.warning("ready after %.0fs with %d model(s) still without a decision (e.g. %s)",
                            self.options.ready_timeout_seconds, len(missing), ", ".join(missing[:5]))
                break
            await self.holder.wait_newer(self.holder.current.generation, timeout=1.0)
        await self.keda.set_serving()
        log.info("ready: health SERVING")

    async def _shutdown(self, started: list[Edge]) -> None:
        log.info("shutting down: health NOT_SERVING, ending streams, draining calls")
        # gRPC first, before anything that could stall the loop: calls that reached the server
        # must be accepted and answered within the grace period, not cancelled at the stop.
        drain = None
        if self.keda in started:
            await self.keda.begin_shutdown()
            drain = asyncio.create_task(self.keda.aclose())
        await self.holder.close()  # ends open streams with OK, so the drain need not wait for them
        if drain is not None:
            await drain
        await self.runner.aclose()
        for edge in reversed(started):
            if edge is not self.keda:
                await edge.aclose()
        for edge in self.edges:
            if edge not in started:
                await edge.aclose()
        self.executor.close()


async def serve(options: ServeOptions) -> int:
    app = App(options)
    return await app.run()
