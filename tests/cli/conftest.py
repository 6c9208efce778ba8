"""The installed `prewarm` command, run as a subprocess: what a user types, not `main([...])`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

# The console script pip installed beside this interpreter (.venv/bin/prewarm).
PREWARM = Path(sys.executable).parent / "prewarm"

Run = Callable[..., subprocess.CompletedProcess[str]]


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without PREWARM_* (a developer's own settings must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREWARM_")}
    env.update(extra)
    return env


@pytest.fixture
def prewarm(tmp_path: Path) -> Run:
    if not PREWARM.exists():
        pytest.fail(f"{PREWARM} is missing: install the project (scripts/bootstrap.sh)")

    def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120.0,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PREWARM), *args], capture_output=True, text=True, timeout=timeout,
                              env=_clean_env(env or {}), cwd=cwd or tmp_path, check=False)

    return run
