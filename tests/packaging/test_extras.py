"""The `plot` extra (matplotlib, tqdm) is optional: without it the commands still run, a plot names
the extra up front, and progress bars silently go away.

Blocking the modules in sys.modules is how Python itself reports a missing package (ImportError);
tests/deploy/test_dockerfile.py checks the same against a real install without the extra.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from forecasting import extras
from scaler.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_plot_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.pyplot", "tqdm"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError


def test_pyproject_keeps_plotting_and_progress_out_of_the_base_install() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    assert "matplotlib" not in base and "tqdm" not in base
    plot = " ".join(project["optional-dependencies"]["plot"])
    assert "matplotlib" in plot and "tqdm" in plot
    assert f"{project['name']}[plot]" == extras.PLOT_EXTRA


@pytest.mark.parametrize("argv", [
    ["backtest", "--plot", "{out}"],
    ["forecast-eval", "--trace", "{missing}", "--plot", "{out}"],
    ["demo", "--plot", "{out}"],
])
def test_a_plot_without_the_extra_names_it_up_front(no_plot_extra: None, tmp_path: Path, argv: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, missing = tmp_path / "out.png", tmp_path / "no-such-trace.csv"
    with pytest.raises(SystemExit) as exited:
        main([a.format(out=out, missing=missing) for a in argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"prewarm {argv[0]}: error:" in err and "matplotlib" in err and "pip install 'prewarm[plot]'" in err
    assert "no-such-trace" not in err  # refused before any work
    assert not out.exists()


def test_pyplot_without_the_extra_exits_2(no_plot_extra: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        extras.pyplot("backtest")
    assert exited.value.code == 2 and "prewarm[plot]" in capsys.readouterr().err


def test_progress_without_tqdm_is_silent(no_plot_extra: None, capsys: pytest.CaptureFixture[str]) -> None:
    with extras.progress(total=3, desc="x", file=sys.stderr, disable=None) as bar:
        bar.update(2)
        bar.update()
    assert list(extras.progress(range(3), total=3)) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")


def test_with_the_extra_they_are_the_real_things() -> None:
    pytest.importorskip("matplotlib")
    tqdm = pytest.importorskip("tqdm")
    assert extras.pyplot("backtest").get_backend().lower() == "agg"
    with extras.progress(total=1, disable=True) as bar:
        assert isinstance(bar, tqdm.tqdm)
