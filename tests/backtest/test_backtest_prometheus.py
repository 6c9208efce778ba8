"""``prewarm backtest --prometheus URL --model NAME --since``: a model's history read through the
project's Prometheus adapter, from a tiny local HTTP server answering ``query_range`` like
Prometheus does (the adapter's own tests cover a real server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from scaler.backtest.cli import main

QUERIES: list[str] = []


def rate_per_second(t: float) -> float:
    """A daily cycle of arrivals: 2 to 8 requests per second."""
    return 5.0 + 3.0 * float(np.sin(2 * np.pi * t / 86400.0))


class FakePrometheus(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/api/v1/query_range":
            self.send_error(404)
            return
        QUERIES.append(params["query"])
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        times = np.arange(start, end + 1e-6, step)
        values = [[float(t), f"{rate_per_second(t):.6f}"] for t in times]
        body = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"model_name": "llama-3-8b"}, "values": values}]}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_backtest_replays_a_models_prometheus_history(prometheus: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    QUERIES.clear()
    code = main(["--prometheus", prometheus, "--model", "llama-3-8b", "--since", "3d",
                 "--warmup", "2d", "--policies", "reactive-util,static", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "backtest prometheus:llama-3-8b: 1440 minutes evaluated after 2d warmup" in out
    # Through the adapter's arrivals signal for that model (requests/s -> per minute).
    assert QUERIES and all('model_name="llama-3-8b"' in q for q in QUERIES)
    assert "vllm:request_success_total" in QUERIES[0]


def test_unreachable_prometheus_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--prometheus", "http://127.0.0.1:9", "--model", "m", "--since", "2d",
                 "--warmup", "1d", "--no-progress"])
    assert code == 2
    assert "backtest: error: --prometheus http://127.0.0.1:9" in capsys.readouterr().err


def test_bad_prometheus_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--prometheus", "ftp://x", "--model", "m", "--no-progress"]) == 2
    assert "--prometheus 'ftp://x'" in capsys.readouterr().err
