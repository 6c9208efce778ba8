"""`prewarm serve` takes its flags' defaults from PREWARM_* variables (flags win, bad values are
refused naming the variable), and logs as text or as one JSON object per line: on the installed
command, as a real daemon."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scaler.cli_support import JsonFormatter
from tests.cli.conftest import PREWARM, Run, _clean_env
from tests.support.process import free_port


def _metrics_answer(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _serve_until_metrics(argv: list[str], env: dict[str, str], port: int, tmp_path: Path) -> str:
    """Start `prewarm serve`, wait until /metrics answers on ``port``, SIGTERM it; its stderr."""
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen([str(PREWARM), *argv], stdout=subprocess.DEVNULL, stderr=err,
                                env=_clean_env(env), cwd=tmp_path)
        try:
            deadline = time.monotonic() + 60
            while not _metrics_answer(port):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "serve did not answer /metrics within 60 s"
                time.sleep(0.2)
            time.sleep(2.5)  # one demo status line (every 2 s)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    assert code == 0, log.read_text()
    return log.read_text()


def test_environment_defaults_flags_win_and_json_logs(tmp_path: Path) -> None:
    grpc_port, env_metrics, flag_metrics = free_port(), free_port(), free_port()
    env = {"PREWARM_LISTEN": f"127.0.0.1:{grpc_port}", "PREWARM_METRICS_LISTEN": f"127.0.0.1:{env_metrics}",
           "PREWARM_LOG_FORMAT": "json", "PREWARM_GRACE": "2",
           "PREWARM_CONFIG": str(tmp_path / "absent.yaml")}  # --demo on the command line wins
    err = _serve_until_metrics(["serve", "--demo", "--metrics-listen", f"127.0.0.1:{flag_metrics}"], env,
                               flag_metrics, tmp_path)
    assert not _metrics_answer(env_metrics)  # the flag won over PREWARM_METRICS_LISTEN
    lines = [json.loads(line) for line in err.splitlines()]  # every line one JSON object
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(f"port {grpc_port}" in line["message"] for line in lines)  # PREWARM_LISTEN was used
    assert {line["level"] for line in lines} >= {"INFO"}


def test_log_level_flag_wins_over_the_environment(tmp_path: Path) -> None:
    metrics = free_port()
    err = _serve_until_metrics(
        ["serve", "--demo", "--listen", f"127.0.0.1:{free_port()}", "--metrics-listen", f"127.0.0.1:{metrics}",
         "--log-level", "WARNING"], {"PREWARM_LOG_LEVEL": "DEBUG"}, metrics, tmp_path)
    assert " INFO " not in err and " DEBUG " not in err


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({"PREWARM_LISTEN": "nonsense"}, "PREWARM_LISTEN='nonsense': expected HOST:PORT", id="listen"),
    pytest.param({"PREWARM_METRICS_LISTEN": "localhost:99999"}, "PREWARM_METRICS_LISTEN='localhost:99999'",
                 id="metrics-listen"),
    pytest.param({"PREWARM_GRACE": "-1"}, "PREWARM_GRACE='-1': expected seconds >= 0", id="grace"),
    pytest.param({"PREWARM_TLS_CERT": "/nonexistent/tls.crt"}, "PREWARM_TLS_CERT='/nonexistent/tls.crt': no such file",
                 id="tls-cert"),
    pytest.param({"PREWARM_LOG_LEVEL": "loud"}, "PREWARM_LOG_LEVEL='loud': expected one of DEBUG", id="log-level"),
    pytest.param({"PREWARM_LOG_FORMAT": "xml"}, "PREWARM_LOG_FORMAT='xml': expected one of text, json",
                 id="log-format"),
])
def test_a_bad_environment_value_is_refused_naming_the_variable(prewarm: Run, env: dict[str, str],
                                                               message: str) -> None:
    result = prewarm("serve", "--demo", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"prewarm serve: error: {message}"), result.stderr


def test_the_config_can_come_from_the_environment(prewarm: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("replay: {trace: synthetic}\nmodels:\n  - {name: m, capacityPerReplica: -1}\n")
    result = prewarm("serve", env={"PREWARM_CONFIG": str(config)})
    assert result.returncode == 2
    assert result.stderr.startswith(f"prewarm serve: error: {config}: models[0].capacityPerReplica")
    missing = prewarm("serve", env={"PREWARM_CONFIG": str(tmp_path / "absent.yaml")})
    assert missing.stderr.startswith("prewarm serve: error: PREWARM_CONFIG=") and "no such file" in missing.stderr


def test_a_flag_wins_over_a_bad_variable(prewarm: Run) -> None:
    result = prewarm("serve", "--demo", "--listen", "nonsense", env={"PREWARM_LISTEN": "also-nonsense"})
    assert result.returncode == 2
    assert result.stderr.startswith("prewarm serve: error: --listen 'nonsense'")


def test_serve_help_documents_every_variable(prewarm: Run) -> None:
    text = prewarm("serve", "--help").stdout
    for var in ("PREWARM_CONFIG", "PREWARM_LISTEN", "PREWARM_METRICS_LISTEN", "PREWARM_TLS_CERT",
                "PREWARM_TLS_KEY", "PREWARM_TLS_CLIENT_CA", "PREWARM_KUBECONFIG", "PREWARM_GRACE",
                "PREWARM_LOG_LEVEL", "PREWARM_LOG_FORMAT"):
        assert var in text, var


def test_a_json_log_line_carries_the_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("prewarm.test", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "prewarm.test" and line["message"] == "failed x"
    assert line["time"].endswith("Z") and "RuntimeError: boom" in line["exception"]
