"""benchmarks/slo_figures.py: a trace name it does not know is a usage error naming it."""

from __future__ import annotations

import pytest

from tests.backtest.support import load_benchmark

figures = load_benchmark("slo_figures")


def test_an_unknown_trace_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        figures.main(["--traces", "m-small,m-huge", "--report"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--traces: unknown m-huge" in err and "m-small" in err.split("known:")[1]
