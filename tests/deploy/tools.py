"""Where the deploy tests' tools come from, and how they are installed when missing.

Nothing here goes into the repository or the project's virtualenv: the Grafana schema and Helm's
Go library (``helm-python-sdk``: Helm v4 behind a C ABI, loaded with ctypes) live in a cache
directory, keyed by version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prewarm"
HELM_SDK_VERSION = "0.2.2"
"""helm-python-sdk 0.2.2 embeds Helm v4.2.3 (helm-c-sdk 0.2.2); no helm binary is packaged here."""
HELM_SDK_DIR = Path(os.environ.get("PREWARM_HELM_SDK_DIR") or CACHE / f"helm-python-sdk-{HELM_SDK_VERSION}")
GRAFANA_SCRIPT = ROOT / "scripts" / "grafana-schema.sh"
HELM_RENDER = Path(__file__).with_name("helm_render.py")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def kubectl() -> str | None:
    return shutil.which("kubectl")


# --- Grafana dashboard schema (npm, cached) -----------------------------------------------------


def dashboard_schema() -> Path | None:
    result = subprocess.run(["bash", str(GRAFANA_SCRIPT), "path"], capture_output=True, text=True, check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def build_dashboard_schema() -> Path | None:
    result = subprocess.run(["bash", str(GRAFANA_SCRIPT)], capture_output=True, text=True, check=False,
                            timeout=600)
    if result.returncode != 0:
        print(result.stderr[-3000:])
        return None
    return dashboard_schema()


# --- Helm (Helm's own Go library through helm-python-sdk, cached) -------------------------------


def helm_sdk() -> Path | None:
    return HELM_SDK_DIR if (HELM_SDK_DIR / "helm_python" / "__init__.py").is_file() else None


def install_helm_sdk() -> Path | None:
    """``pip install --target`` into the cache (a 75 MB wheel; ~10 s)."""
    HELM_SDK_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = HELM_SDK_DIR.with_name(HELM_SDK_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "--target", str(tmp), f"helm-python-sdk=={HELM_SDK_VERSION}"],
        capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    shutil.rmtree(HELM_SDK_DIR, ignore_errors=True)
    tmp.rename(HELM_SDK_DIR)
    return helm_sdk()


def helm(sdk: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Run one request through ``helm_render.py`` in a child process (Helm's Go runtime stays out
    of pytest's process); raises with Helm's own message on failure."""
    env = {**os.environ, "PYTHONPATH": str(sdk)}
    result = subprocess.run([sys.executable, str(HELM_RENDER)], input=json.dumps(request), env=env,
                            capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"helm {request.get('action')}: {result.stderr.strip()[-4000:]}")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer
