"""The conventions every `prewarm` command keeps (issue 13, item 3), checked on the installed
command: --version, examples and existing doc links in every --help, one error prefix with exit
status 2 for bad input, "did you mean" for a mistyped config key."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from forecasting.traces import synthetic_trace, write_trace
from scaler import cli
from tests.cli.conftest import Run

ROOT = Path(__file__).resolve().parents[2]
# Every subcommand the table holds, so a new one is held to the same conventions.
COMMANDS = tuple(c.name for c in cli.COMMANDS)


def test_version_comes_from_the_installed_package(prewarm: Run) -> None:
    result = prewarm("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"prewarm {version('prewarm')}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_has_examples_and_links_that_exist(prewarm: Run, command: str | None) -> None:
    result = prewarm(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "examples:" in text
    examples = text.split("examples:", 1)[1]
    assert f"prewarm {command or ''}".strip() in examples
    for doc in re.findall(r"\b(?:docs/)?[A-Z_]+\.md\b", text):
        assert (ROOT / doc).is_file() or (ROOT / "docs" / doc).is_file(), f"{doc} cited but not in the repo"
    assert "../shared" not in text and "EVALUATION" not in text  # the repo stands on its own
    assert "--log-level" in text and "--log-format" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_global_logging_flags_are_accepted_by_every_command(prewarm: Run, command: str) -> None:
    before = prewarm("--log-level", "debug", "--log-format", "json", command, "--help")
    after = prewarm(command, "--log-level", "ERROR", "--log-format", "text", "--help")
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr


def _traces(tmp_path: Path) -> dict[str, str]:
    bad, good = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.write_text("timestamp_utc,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:10:00Z,x\n")
    write_trace(good, synthetic_trace(days=2, step_seconds=600, seed=1))
    return {"BAD": str(bad), "GOOD": str(good)}


@pytest.mark.parametrize(("argv", "message"), [
    pytest.param(["serve", "--demo", "--listen", "nonsense"], "--listen 'nonsense'", id="serve-flag"),
    pytest.param(["serve", "--demo", "--bogus"], "unrecognized arguments: --bogus", id="serve-argparse"),
    pytest.param(["serve", "--config", "/nonexistent/config.yaml"], "cannot read", id="serve-config"),
    pytest.param(["serve"], "give --config FILE (or set PREWARM_CONFIG) or --demo", id="serve-no-source"),
    pytest.param(["check-config", "/nonexistent/config.yaml"], "/nonexistent/config.yaml: no such file",
                 id="check-missing"),
    pytest.param(["config-schema", "--json"], "unrecognized arguments: --json", id="schema-argparse"),
    pytest.param(["forecast-eval", "--trace", "BAD"], "row 3", id="forecast-eval-trace"),
    pytest.param(["forecast-eval", "--trace", "GOOD", "--horizon", "5"], "--horizon", id="forecast-eval-flag"),
    pytest.param(["backtest", "--trace", "BAD"], "row 3", id="backtest-trace"),
    pytest.param(["backtest", "--trace", "GOOD", "--cold-start", "soon"], "--cold-start 'soon'",
                 id="backtest-flag"),
    pytest.param(["demo", "--hours", "0"], "--hours 0", id="demo-flag"),
    pytest.param(["demo", "--trace", "BAD"], "row 3", id="demo-trace"),
])
def test_one_error_prefix_and_exit_2(prewarm: Run, tmp_path: Path, argv: list[str], message: str) -> None:
    traces = _traces(tmp_path)
    result = prewarm(*[traces.get(a, a) for a in argv])
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors and errors[0].startswith(f"prewarm {argv[0]}: error: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_names_its_own_flag(prewarm: Run) -> None:
    # The built-in trace has 14 days; a longer history is refused as --history, the flag it has.
    result = prewarm("demo", "--history", "20d", "--no-backtest")
    assert result.returncode == 2
    assert result.stderr.startswith("prewarm demo: error: --history 20d: must be shorter than the trace")
    assert "--warmup" not in result.stderr


def test_check_config_problems_exit_1_with_the_prefix(prewarm: Run, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("replay: {trace: synthetic}\nmodels:\n  - {name: m, capacityPerReplica: 0}\n")
    result = prewarm("check-config", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith(f"prewarm check-config: error: {config}: models[0].capacityPerReplica")


def test_a_mistyped_key_gets_did_you_mean(prewarm: Run, tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("replay: {trace: synthetic}\n"
                      "defaults: {refreshIntervall: 15s}\n"
                      "models:\n  - {name: m, capacityPerReplica: 4, maxReplica: 3, colour: blue}\n")
    result = prewarm("check-config", str(config))
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert ("prewarm check-config: warning: defaults.refreshIntervall: unknown key, ignored "
            "(did you mean refreshInterval?)") in warnings
    assert ("prewarm check-config: warning: models[0].maxReplica: unknown key, ignored "
            "(did you mean maxReplicas?)") in warnings
    assert "prewarm check-config: warning: models[0].colour: unknown key, ignored" in warnings  # nothing close
