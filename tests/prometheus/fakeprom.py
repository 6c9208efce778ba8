"""A tiny Prometheus HTTP API stand-in for degenerate answers (garbage, 5xx, slow, NaN...).

Not a mock of the client library: the adapter talks real HTTP to it. Every request is logged
(path, parameters, headers) so tests can count queries. With ``upstream`` it forwards to a real
Prometheus (and can still be switched to garbage/slow), which the end-to-end test uses.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]

    @property
    def query(self) -> str:
        return self.params.get("query", "")


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: vector())
    """A dict/list is sent as JSON, bytes/str as they are."""
    delay: float = 0.0
    """Seconds to wait before answering (a slow server); cut short when the server closes."""


Handler = Callable[[Request], Reply]


def vector(*series: tuple[Mapping[str, str], str, float]) -> dict[str, Any]:
    """An instant-query answer: each series is (labels, value string, timestamp)."""
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": dict(labels), "value": [ts, value]} for labels, value, ts in series]}}


def matrix(*series: tuple[Mapping[str, str], Sequence[tuple[float, str]]]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": dict(labels), "values": [[t, v] for t, v in points]} for labels, points in series]}}


def untimed(handler: Handler) -> Handler:
    """``handler``, except that the query for scrape times (``timestamp(...)``, the
    ``sampled_at`` signal) answers nothing, so the source takes the query time as sample time."""

    def handle(request: Request) -> Reply:
        return Reply() if "timestamp(" in request.query else handler(request)

    return handle


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out hang up mid-answer: expected here


class FakePrometheus:
    def __init__(
        self, handler: Handler | None = None, *, upstream: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream
        self.handler: Handler = handler or (self.forward if upstream else lambda request: Reply())
        self.requests: list[Request] = []
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._make_handler())
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakeprom",
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def queries(self, path: str = "/api/v1/query") -> list[str]:
        return [r.query for r in self.requests if r.path == path]

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakePrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forward(self, request: Request) -> Reply:
        """The upstream's answer (502 when it is down, as a gateway would say)."""
        assert self.upstream is not None
        url = f"{self.upstream}{request.path}?{urllib.parse.urlencode(request.params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return Reply(response.status, response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            exc.close()
            return Reply(exc.code, body)
        except OSError as exc:
            return Reply(502, f"upstream down: {exc}")

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

            def _answer(self, body: bytes) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                params.update(urllib.parse.parse_qsl(body.decode()))
                request = Request(self.command, url.path, params, dict(self.headers.items()))
                fake.requests.append(request)
                reply = fake.handler(request)
                if reply.delay and fake._closing.wait(reply.delay):
                    return
                data = reply.body
                if isinstance(data, dict | list):
                    data = json.dumps(data)
                if isinstance(data, str):
                    data = data.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return RequestHandler
