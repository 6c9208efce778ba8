"""The /metrics edge: the HTTP endpoint Prometheus scrapes, and the daemon's own collector.

Every other edge brings its own collector (``Edge.collector()``); the app registers them all on
one registry, which this edge serves.
"""

from __future__ import annotations

import asyncio
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from scaler.core.errors import ConfigError
from scaler.edges import Edge


class MetricsEdge(Edge):
    """Serves ``registry`` on ``host:port`` (port 0: any free port, see ``self.port``)."""

    name = "metrics"

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int, flag: str) -> None:
        self.registry = registry
        self.host, self.port, self.flag = host, port, flag
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise ConfigError([f"{self.flag} {self.host}:{self.port}: {exc.strerror or exc}"],
                              source="flags") from None
        self.port = self._server.server_port

    async def aclose(self) -> None:
        if self._server is not None and self._thread is not None:
            # shutdown() waits for the serving thread's next poll (up to 0.5 s): not on the loop.
            await asyncio.to_thread(self._server.shutdown)
            await asyncio.to_thread(self._thread.join, 5)
