"""Wiring: config, source, engine, gRPC + metrics servers, scheduler, signals, shutdown.

``serve()`` runs one asyncio loop with named long-lived tasks; SIGTERM flips health to
NOT_SERVING, ends open streams with OK, lets in-flight calls finish, then stops everything.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, start_http_server

from scaler._pb import externalscaler_pb2 as pb
from scaler.edges.configfile import ConfigFileWatcher, load_config_file, parse_yaml_text
from scaler.edges.keda.servicer import ExternalScalerServicer, GrpcMetrics, add_to_server
from scaler.edges.metrics.collector import ForecastCollector
from scaler.core.clock import AcceleratedClock, Clock, SystemClock
from scaler.core.config import ParsedSettings, Settings
from scaler.core.errors import ConfigError
from scaler.core.ports import MetricSource
from scaler.engine import Engine, initial_snapshot, replace_settings
from scaler.snapshot import SnapshotHolder

if TYPE_CHECKING:
    from scaler.edges.kubernetes.wiring import KubernetesParts

log = logging.getLogger("prewarm")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name


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


def load_settings(options: ServeOptions) -> ParsedSettings:
    if options.demo:
        text = resources.files("scaler").joinpath("data/demo.yaml").read_text(encoding="utf-8")
        return parse_yaml_text(text, source="embedded demo config")
    if options.config is None:
        raise ConfigError(["--config FILE is required (or --demo)"], source="prewarm serve")
    return load_config_file(options.config)


def make_source(settings: Settings, base_dir: Path | None) -> MetricSource:
    if settings.replay is not None:
        from scaler.edges.replay import ReplaySource

        return ReplaySource(settings.replay, base_dir=base_dir)
    from scaler.edges.prometheus.source import PrometheusSource

    assert settings.prometheus is not None  # validated: one of the two is required
    return PrometheusSource(settings.prometheus, settings.defaults,
                            rate_window_seconds=settings.prometheus.rateWindow)


def make_clock(settings: Settings) -> Clock:
    if settings.replay is not None and settings.replay.speed != 1.0:
        return AcceleratedClock(start=SystemClock().now(), speed=settings.replay.speed)
    return SystemClock()


def server_credentials(options: ServeOptions) -> grpc.ServerCredentials | None:
    if options.tls_cert is None and options.tls_key is None:
        if options.tls_client_ca is not None:
            raise ConfigError(["--tls-client-ca needs --tls-cert and --tls-key"], source="flags")
        return None
    if options.tls_cert is None or options.tls_key is None:
        raise ConfigError(["--tls-cert and --tls-key go together"], source="flags")
    pem = {}
    for flag, path in (("--tls-cert", options.tls_cert), ("--tls-key", options.tls_key),
                       ("--tls-client-ca", options.tls_client_ca)):
        if path is not None:
            try:
                pem[flag] = path.read_bytes()
            except OSError as exc:
                raise ConfigError([f"{flag} {path}: {exc.strerror or exc}"], source="flags") from None
    ca = pem.get("--tls-client-ca")
    return grpc.ssl_server_credentials(
        [(pem["--tls-key"], pem["--tls-cert"])], root_certificates=ca,
        require_client_auth=ca is not None)


async def create_grpc_server(
    servicer: ExternalScalerServicer, listen: str, credentials: grpc.ServerCredentials | None
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """gRPC server with ExternalScaler, health and reflection; returns the bound port."""
    server = grpc.aio.server()
    add_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    split_host_port(listen, "--listen")
    try:
        port = (server.add_secure_port(listen, credentials) if credentials is not None
                else server.add_insecure_port(listen))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError([f"--listen {listen}: cannot bind (in use, or not a local address)"], source="flags")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, port


def split_host_port(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError([f"{flag} {value!r}: expected HOST:PORT, e.g. 0.0.0.0:8080"], source="flags")
    return host.strip("[]") or "0.0.0.0", int(port)


class App:
    """One running daemon; ``run()`` returns the exit code."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        parsed = load_settings(options)
        for warning in parsed.warnings:
            log.warning("config: %s", warning)
        self.settings = parsed.settings
        self.clock = make_clock(self.settings)
        self._base_dir = options.config.parent if options.config else None
        self.source = make_source(self.settings, self._base_dir)
        self.registry = CollectorRegistry()
        self.holder = SnapshotHolder(initial_snapshot(self.settings, self.clock.now()))
        workers = self.settings.defaults.fitWorkers or os.cpu_count() or 1
        self.executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        self.kube = self._build_kubernetes()
        self.engine = Engine(
            self.clock, self.settings, self.source, self.holder, fit_executor=self.executor,
            cold_starts=self.kube.cold_starts if self.kube else None,
            actuators=self.kube.actuators if self.kube else (),
            pool_has_spare=self.kube.pool_has_spare if self.kube else None)
        self.watcher = (ConfigFileWatcher(options.config, self._on_settings)
                        if options.config is not None else None)
        self.servicer = ExternalScalerServicer(self.holder, self.clock, GrpcMetrics(self.registry))
        kube = self.kube
        self.collector = ForecastCollector(
            lambda: self.holder.current, self.clock, counters=self._counters,
            pools=(lambda: kube.pool_status(now=self.clock.now())) if kube is not None else None)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if self.kube is not None:
            from scaler.edges.kubernetes.wiring import KubernetesCollector

            self.registry.register(KubernetesCollector(self.kube))
        self.scheduler = AsyncIOScheduler()
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.grpc_port = 0
        self.exit_code = 0
        self.metrics_port = 0

    def _build_kubernetes(self) -> KubernetesParts | None:
        """Cold-start learning, balloons, leader election, ConfigMap watch: with `kubernetes:` only."""
        if self.settings.kubernetes is None:
            return None
        from scaler.edges.kubernetes.wiring import build_kubernetes

        try:
            return build_kubernetes(self.settings, clock=self.clock, kubeconfig=self.options.kubeconfig,
                                    on_settings=self._on_settings)
        except Exception as exc:  # a wrong kubeconfig is a user error, reported as one
            raise ConfigError([f"kubernetes: cannot connect to the API server: {exc}"],
                              source="--kubeconfig") from None

    def _speed(self) -> float:
        replay = self.settings.replay
        return replay.speed if replay is not None else 1.0

    def _counters(self) -> dict[str, Any]:
        stats = self.engine.stats
        source_errors = dict(stats.source_errors)
        for reason, n in getattr(self.source, "errors_total", {}).items():
            source_errors[reason] = max(source_errors.get(reason, 0), n)
        kube = self.kube.counters() if self.kube is not None else {}
        return {
            "source_errors": source_errors, "refreshes": stats.refreshes, "refits": stats.refits,
            "fit_errors": stats.fit_errors, "last_source_success": stats.last_source_success,
            "config_reloads": (self.watcher.reloads_total if self.watcher else 0)
            + kube.get("config_reloads", 0),
            "config_reload_errors": (self.watcher.errors_total if self.watcher else 0)
            + kube.get("config_reload_errors", 0),
            "config_last_reload_successful": self._last_reload_ok(),
            "source_io": {
                "requests": dict(getattr(self.source, "requests_total", {})),
                "seconds": dict(getattr(self.source, "request_seconds_total", {})),
                "rejected": dict(getattr(self.source, "rejected_samples_total", {})),
                "retries": getattr(self.source, "retries_total", 0),
            } if hasattr(self.source, "requests_total") else None,
        }

    def _last_reload_ok(self) -> float:
        """1 when the newest config seen (file or ConfigMap) was applied, 0 when it was rejected."""
        errors = [w.last_error for w in (self.watcher, self.kube.config_watcher if self.kube else None)
                  if w is not None]
        return 0.0 if any(e is not None for e in errors) else 1.0

    def _on_settings(self, parsed: ParsedSettings) -> None:
        """A new valid config: swap it in; the next refresh decides under it."""
        if parsed.settings.kubernetes != self.settings.kubernetes:
            log.warning("config: changes to the `kubernetes:` section apply after a restart")
        if parsed.settings.replay != self.settings.replay:
            log.warning("config: changes to the `replay:` section apply after a restart")
        elif parsed.settings.prometheus != self.settings.prometheus:
            self._replace_source(parsed.settings)
        self.settings = parsed.settings
        self.engine.apply_settings(parsed.settings)
        if self.kube is not None:
            self.kube.update_settings(parsed.settings)
        self.holder.replace_nowait(replace_settings(self.holder.current, parsed.settings))
        self._schedule_jobs()
        self._tasks.add(asyncio.get_running_loop().create_task(self.engine.backfill(), name="backfill"))

    def _replace_source(self, settings: Settings) -> None:
        """New Prometheus settings (URL, auth, timeout): a new source from the next refresh on."""
        old, self.source = self.source, make_source(settings, self._base_dir)
        self.engine.source = self.source
        close = getattr(old, "close", None)
        if close is not None:
            close()
        log.info("metrics source replaced for the new `prometheus:` settings")

    def _schedule_jobs(self) -> None:
        d, speed = self.settings.defaults, self._speed()
        jobs: list[tuple[str, Any, float]] = [
            ("refresh", self._refresh, d.refreshInterval / speed),
            ("refit", self._refit, d.refitInterval / speed),
        ]
        if self.watcher is not None:
            jobs.append(("config-watch", self._poll_config, self.options.config_poll_seconds))
        if self.options.demo:
            jobs.append(("demo-status", self._log_status, 2.0))
        for name, func, seconds in jobs:
            self.scheduler.add_job(func, "interval", seconds=seconds, id=name, name=name,
                                   replace_existing=True, max_instances=1, coalesce=True,
                                   misfire_grace_time=None)

    async def _guard(self, run: Callable[[], Awaitable[None]]) -> None:
        """A long-running task that dies takes the daemon down (a bug, not a data problem)."""
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s failed; stopping", getattr(run, "__name__", run))
            self.exit_code = 1
            self.stopping.set()

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
            peak = "-" if d.forecast_peak is None else f"{d.forecast_peak:.0f}"
            demand = "-" if d.demand is None else f"{d.demand:.0f}"
            log.info("[%s] %s: demand %s, forecast p%.0f peak %s within %.0fm -> %d replicas "
                     "(%s)%s", when, name, demand, 100 * snap.settings.models[0].policy.scale_quantile,
                     peak, d.lead_seconds / 60, d.replicas, d.reason.value,
                     f", forecaster {fit.model_name}" if fit else "")

    async def _poll_config(self) -> None:
        assert self.watcher is not None
        self.watcher.poll()

    async def run(self) -> int:
        credentials = server_credentials(self.options)
        split_host_port(self.options.listen, "--listen")
        host, port = split_host_port(self.options.metrics_listen, "--metrics-listen")
        try:
            metrics_server, metrics_thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError([f"--metrics-listen {self.options.metrics_listen}: {exc.strerror or exc}"],
                              source="flags") from None
        self.metrics_port = metrics_server.server_port
        server, health_servicer, self.grpc_port = await create_grpc_server(
            self.servicer, self.options.listen, credentials)
        log.info("serving ExternalScaler on %s (port %d), metrics on %s:%d, %d model(s)",
                 self.options.listen, self.grpc_port, host, self.metrics_port,
                 len(self.settings.models))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.kube is not None:
            for task in self.kube.tasks:
                self._tasks.add(loop.create_task(self._guard(task), name=task.__name__))
        try:
            await self.engine.backfill()
            await self._refresh()
            self._schedule_jobs()
            self.scheduler.start()
            self._tasks.add(loop.create_task(self._refit(), name="first-refit"))
            await self.stopping.wait()
        finally:
            await self._shutdown(server, health_servicer)
            metrics_server.shutdown()
            metrics_thread.join(timeout=5)
        return self.exit_code

    async def _shutdown(self, server: grpc.aio.Server, health_servicer: Any) -> None:
        log.info("shutting down: health NOT_SERVING, ending streams, draining calls")
        await health_servicer.enter_graceful_shutdown()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.kube is not None:
            await self.kube.aclose()
        await self.holder.close()
        await server.stop(self.options.grace_seconds)
        self.executor.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


async def serve(options: ServeOptions) -> int:
    app = App(options)
    return await app.run()
