"""One duration grammar for the config, trigger metadata and every command-line flag."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from forecasting import eval_cli
from forecasting.durations import (
    DurationError,
    accept_negative_durations,
    format_duration,
    parse_duration,
)
from scaler.backtest import cli as backtest_cli
from scaler.core.config import parse_settings
from scaler.core.errors import ConfigError

EXPECTED = "expected a duration like 90s, 5m or 1h30m"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90s", 90, id="seconds"),
        pytest.param("5m", 300, id="minutes"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("1.5h", 5400, id="fraction"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("2w1d", 1_296_000, id="weeks-days"),
        pytest.param(" 10m ", 600, id="spaces-around"),
        pytest.param("0", 0, id="zero-is-zero-in-every-unit"),
        pytest.param(0, 0, id="yaml-zero"),
        pytest.param(90, 90, id="yaml-number-is-seconds"),
        pytest.param(2.5, 2.5, id="float-from-code-is-seconds"),
        pytest.param("0s", 0, id="zero-seconds"),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("5", "a bare number has no unit", id="bare-number"),
        pytest.param("2.5", "a bare number has no unit", id="bare-fraction"),
        pytest.param("-3m", "it is negative", id="negative"),
        pytest.param("-5", "it is negative", id="negative-number"),
        pytest.param(-30, "it is negative", id="yaml-negative"),
        pytest.param("", EXPECTED, id="empty"),
        pytest.param("5x", EXPECTED, id="unknown-unit"),
        pytest.param("m5", EXPECTED, id="unit-first"),
        pytest.param("1h 30m", EXPECTED, id="space-inside"),
        pytest.param("10mm", EXPECTED, id="unit-twice"),
        pytest.param(True, EXPECTED, id="boolean"),
        pytest.param("1" * 400 + "s", "too large", id="overflow"),
    ],
)
def test_refused_with_the_expected_form(value: object, reason: str) -> None:
    with pytest.raises(DurationError, match="is not a duration") as err:
        parse_duration(value)
    assert reason in str(err.value) and str(err.value).endswith(EXPECTED)


@pytest.mark.parametrize("seconds", [0, 0.5, 15, 90, 600, 5400, 86400, 604800, 1_296_000])
def test_format_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("90", "defaults.refreshInterval: '90' is not a duration: a bare number",
                     id="bare-number"),
        pytest.param("-1m", "defaults.refreshInterval: '-1m' is not a duration: it is negative",
                     id="negative"),
    ],
)
def test_config_uses_the_grammar_and_names_the_key(value: str, message: str) -> None:
    raw = {"replay": {"trace": "synthetic"}, "defaults": {"refreshInterval": value},
           "models": [{"name": "m", "capacityPerReplica": 1}]}
    with pytest.raises(ConfigError, match=message):
        parse_settings(raw)


def test_config_accepts_compound_durations() -> None:
    raw = {"replay": {"trace": "synthetic"}, "defaults": {"refitInterval": "1h30m"},
           "models": [{"name": "m", "capacityPerReplica": 1}]}
    assert parse_settings(raw).settings.defaults.refitInterval == 5400


AddArguments = Callable[[argparse.ArgumentParser], None]


def _parser(add: AddArguments) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser


@pytest.mark.parametrize("add", [backtest_cli.add_arguments, eval_cli.add_arguments],
                         ids=["backtest", "forecast-eval"])
def test_a_negative_duration_reaches_the_flag(add: AddArguments) -> None:
    """argparse would take ``-3m`` for an option ('expected one argument')."""
    flag = "--cold-start" if add is backtest_cli.add_arguments else "--horizon"
    args = _parser(add).parse_args(["--trace", "t.csv", flag, "-3m"])
    assert getattr(args, flag[2:].replace("-", "_")) == "-3m"


def test_accept_negative_durations_keeps_real_options() -> None:
    parser = argparse.ArgumentParser()
    accept_negative_durations(parser)
    parser.add_argument("--since")
    parser.add_argument("--verbose", action="store_true")
    with pytest.raises(SystemExit):
        parser.parse_args(["--since", "--verbose"])  # an option is still an option
    assert parser.parse_args(["--since", "-5"]).since == "-5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("5", "--cold-start '5' is not a duration: a bare number has no unit; "
                     + EXPECTED, id="bare"),
        pytest.param("-3m", "--cold-start '-3m' is not a duration: it is negative; " + EXPECTED,
                     id="negative"),
        pytest.param("8m:-3m", "--cold-start '-3m' is not a duration: it is negative",
                     id="negative-in-range"),
    ],
)
def test_backtest_flags_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(backtest_cli.UsageError) as err:
        backtest_cli.cold_start_range(text)
    assert str(err.value).startswith(message)


def test_forecast_eval_takes_the_config_grammar() -> None:
    assert eval_cli.parse_duration("1h30m", flag="--horizon") == 5400
    with pytest.raises(eval_cli.UsageError, match="--horizon '30' is not a duration: a bare"):
        eval_cli.parse_duration("30", flag="--horizon")
