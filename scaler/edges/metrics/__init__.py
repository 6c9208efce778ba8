"""The /metrics edge: the HTTP endpoint Prometheus scrapes, and the daemon's own collector.

Every other edge brings its own collector (``Edge.collector()``); the app registers them all on
one registry, which this edge serves after the daemon's per-model families. Those are rendered
by the collector itself (:mod:`scaler.edges.metrics.families`): at thousands of models they are
nearly all of /metrics, and prometheus_client's objects would take seconds per scrape.
Other read-only JSON pages (``routes``, e.g. ``/explain``) are served beside it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from scaler.core.errors import ConfigError
from scaler.edges import Edge

Route = Callable[[Mapping[str, list[str]]], tuple[int, Any]]
"""A JSON page: query parameters in, (HTTP status, a JSON-serialisable body) out."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every 15 s would flood the log."""


class MetricsEdge(Edge):
    """Serves ``fast`` renderers and then ``registry`` on ``host:port`` (0: any free port)."""

    name = "metrics"

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int, flag: str,
                 fast: Sequence[Callable[[], str]] = (), routes: Mapping[str, Route] | None = None) -> None:
        self.registry = registry
        self.fast = list(fast)
        self.routes = dict(routes or {})
        self.host, self.port, self.flag = host, port, flag
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            body = "".join(render() for render in self.fast).encode() + generate_latest(self.registry)
            content_type = CONTENT_TYPE_LATEST
            status = "200 OK"
        elif path in self.routes:
            code, page = self.routes[path](parse_qs(environ.get("QUERY_STRING", "")))
            body = (json.dumps(page, indent=2, sort_keys=True) + "\n").encode()
            content_type, status = "application/json", f"{code} {'OK' if code == 200 else 'Error'}"
        else:
            known = ", ".join(["/metrics", *sorted(self.routes)])
            body, content_type, status = f"not found; try {known}\n".encode(), "text/plain", "404 Not Found"
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    async def start(self) -> None:
        server_class = _Server6 if ":" in self.host else _Server
        try:
            self._server = make_server(self.host, self.port, self._app, server_class, handler_class=_Quiet)
        except OSError as exc:
            raise ConfigError([f"{self.flag} {self.host}:{self.port}: {exc.strerror or exc}"],
                              source="flags") from None
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        if self._server is not None and self._thread is not None:
            # shutdown() waits for the serving thread's next poll (up to 0.5 s): not on the loop.
            await asyncio.to_thread(self._server.shutdown)
            await asyncio.to_thread(self._thread.join, 5)
            self._server.server_close()
