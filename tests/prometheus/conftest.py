"""Session fixtures for tests/prometheus: a real Prometheus with 15 days of backfilled vLLM
history from a real trace, scraping a live trace-driven exporter (two models, three pods).

Missing prometheus/promtool: installed through scripts/prometheus-env.sh when running in CI (and a
failure if that does not work); skipped locally with the command to run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import promenv
from tests.support.vllm_exporter import ExporterSpec, ModelSpec, PodSpec, live_shift

# Served names with regex and quoting hazards: '.', '/', and a backslash + quote in the legacy one.
SMALL = "meta-llama/Llama-3.1-8B-Instruct"
MID = 'qwen2.5-14b "legacy" \\v0.9'
LIVE_HOURS = 4
"""The session's live tests run within this many hours of its start (about 10 minutes in CI)."""


def exporter_spec(shared_data: Path, *, now: float) -> ExporterSpec:
    servegen = shared_data / "servegen"

    def gap_free(model: ModelSpec) -> ModelSpec:
        # The live tests run in the next hours: read each trace ahead so that none of its
        # collection gaps falls there, whatever the time of day the suite starts.
        shift = live_shift(model.trace(), start=now - 3600, end=now + LIVE_HOURS * 3600)
        return dataclasses.replace(model, shift_seconds=shift)

    return ExporterSpec(
        models=(
            gap_free(ModelSpec(SMALL, str(servegen / "m-small_10min.csv"), mean_concurrency=24.0)),
            gap_free(ModelSpec(MID, str(servegen / "m-mid_10min.csv"), mean_concurrency=10.0, legacy=True)),
        ),
        # Two pods for SMALL (one with two data-parallel engines), one for MID. SMALL's second
        # pod queues longer and spells bucket bounds as Go clients do ("1", not "1.0"), so the
        # SLO's on-time share is only right when both pods' histograms are added bound by bound.
        pods=(PodSpec(SMALL, engines=2), PodSpec(SMALL, queue_median=1.5, go_bounds=True),
              PodSpec(MID)),
    )


@pytest.fixture(scope="session")
def prom_binaries() -> tuple[str, str]:
    found = promenv.binaries()
    if found is None and promenv.in_ci():
        found = promenv.install()
        if found is None:
            pytest.fail("prometheus/promtool missing in CI and scripts/prometheus-env.sh "
                        "could not install them")
    if found is None:
        pytest.skip("prometheus/promtool not installed: run scripts/prometheus-env.sh install")
    return found


@pytest.fixture(scope="session")
def prom_env(
    prom_binaries: tuple[str, str], shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[promenv.PromEnv]:
    prometheus, promtool = prom_binaries
    began = time.monotonic()
    env_iter = promenv.start_env(exporter_spec(shared_data, now=time.time()), tmp_path_factory.mktemp("prom"),
                                 prometheus=prometheus, promtool=promtool)
    env = next(env_iter)
    env.setup_seconds["total"] = time.monotonic() - began
    print(f"\nprometheus env ready: {env.setup_seconds}")
    try:
        yield env
    finally:
        next(env_iter, None)


@pytest.fixture
def exporter(prom_env: promenv.PromEnv) -> Iterator[promenv.ExporterProcess]:
    """The live exporter; pins set by a test are released after it."""
    yield prom_env.exporter
    prom_env.exporter.control(pin={SMALL: None, MID: None})
