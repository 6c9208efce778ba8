"""The KEDA edge's server: ExternalScaler + gRPC health + reflection on one port, TLS optional.

Health follows the daemon: SERVING once the server is up, NOT_SERVING from the moment shutdown
begins, so KEDA and the kubelet stop sending work before in-flight calls are drained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client.registry import Collector

from scaler._pb import externalscaler_pb2 as pb
from scaler.core.clock import Clock
from scaler.core.config import Overrides
from scaler.core.errors import ConfigError
from scaler.edges import Edge
from scaler.edges.keda.servicer import ExternalScalerServicer, GrpcMetrics, add_to_server
from scaler.snapshot import Snapshot, SnapshotHolder

log = logging.getLogger("prewarm.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
DRAIN_SECONDS = 1.0
"""After SIGTERM, calls already queued at the server are still answered this long."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None


class CertificateFiles:
    """The TLS files, re-read when they change on disk (cert-manager rotates them in place).

    gRPC asks :meth:`fetch` before every new connection's handshake; a ``stat`` of each file
    tells whether anything changed, so the cost per connection is three syscalls. A rotation
    caught half-written (key and certificate not matching yet) keeps the last good pair: gRPC
    rejects a bad configuration and calls again at the next connection.
    """

    def __init__(self, tls: TlsFiles) -> None:
        assert tls.cert is not None and tls.key is not None
        self.tls = tls
        self.reloads_total = 0
        self._seen = self._stamp()
        self.initial = self._read()

    def _paths(self) -> list[tuple[str, Path]]:
        return [(flag, path) for flag, path in (("--tls-cert", self.tls.cert), ("--tls-key", self.tls.key),
                                                 ("--tls-client-ca", self.tls.client_ca)) if path is not None]

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for _, path in self._paths():
            try:
                st = path.stat()
            except OSError:
                return ()  # mid-rotation: a file is missing for a moment
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def _read(self) -> grpc.ServerCertificateConfiguration:
        pem = {}
        for flag, path in self._paths():
            try:
                pem[flag] = path.read_bytes()
            except OSError as exc:
                raise ConfigError([f"{flag} {path}: {exc.strerror or exc}"], source="flags") from None
        return grpc.ssl_server_certificate_configuration(
            [(pem["--tls-key"], pem["--tls-cert"])], root_certificates=pem.get("--tls-client-ca"))

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        stamp = self._stamp()
        if not stamp or stamp == self._seen:
            return None
        try:
            config = self._read()
        except ConfigError as exc:
            log.warning("TLS files changed but cannot be read yet: %s", exc)
            return None
        self._seen = stamp
        self.reloads_total += 1
        log.info("TLS certificate reloaded from %s", self.tls.cert)
        return config


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials | None:
    """Server credentials from PEM files (None: plaintext), reloaded when the files change; a bad
    combination is a flag error."""
    if tls.cert is None and tls.key is None:
        if tls.client_ca is not None:
            raise ConfigError(["--tls-client-ca needs --tls-cert and --tls-key"], source="flags")
        return None
    if tls.cert is None or tls.key is None:
        raise ConfigError(["--tls-cert and --tls-key go together"], source="flags")
    files = CertificateFiles(tls)
    return grpc.dynamic_ssl_server_credentials(
        files.initial, files.fetch, require_client_authentication=tls.client_ca is not None)


def split_host_port(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError([f"{flag} {value!r}: expected HOST:PORT, e.g. 0.0.0.0:8080"], source="flags")
    return host.strip("[]") or "0.0.0.0", int(port)


async def create_grpc_server(
    servicer: ExternalScalerServicer, listen: str, credentials: grpc.ServerCredentials | None,
    *, serving: bool = True,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """gRPC server with ExternalScaler, health and reflection; returns the bound port.

    ``serving`` False starts health at NOT_SERVING (the daemon flips it once it can answer)."""
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
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, status)
    return server, health_servicer, port


class KedaEdge(Edge):
    """KEDA's side of the daemon: answers from the published snapshot, never waits on I/O."""

    name = "keda"

    def __init__(self, holder: SnapshotHolder, clock: Clock, *, listen: str, tls: TlsFiles,
                 finish: Callable[[str, Overrides], Snapshot], grace_seconds: float) -> None:
        self.metrics = GrpcMetrics()
        self.servicer = ExternalScalerServicer(holder, clock, self.metrics, finish)
        self.listen = listen
        self.credentials = server_credentials(tls)  # flag errors before anything binds
        split_host_port(listen, "--listen")
        self.grace_seconds = grace_seconds
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None

    async def start(self) -> None:
        """Bind and answer, with health NOT_SERVING until :meth:`set_serving`: a rolling update
        must not send KEDA to a replica that has no decision yet."""
        self._server, self._health, self.port = await create_grpc_server(
            self.servicer, self.listen, self.credentials, serving=False)

    async def set_serving(self) -> None:
        if self._health is not None:
            for service in ("", SERVICE_NAME):
                await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def begin_shutdown(self) -> None:
        """Health NOT_SERVING for every service: callers move away before the drain."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()

    def collector(self) -> Collector:
        return self.metrics

    async def aclose(self) -> None:
        """Answer what already reached the server, then refuse new calls; in-flight ones get
        ``grace_seconds`` to finish.

        gRPC's stop() cancels calls that arrived but were not yet picked up by a handler, and
        under load (KEDA polls every model at once) dozens sit in that queue: they are calls in
        flight, so they are answered first, for :data:`DRAIN_SECONDS` after health turned
        NOT_SERVING, before the stop.
        """
        if self._server is not None:
            await asyncio.sleep(min(DRAIN_SECONDS, self.grace_seconds))
            await self._server.stop(self.grace_seconds)
