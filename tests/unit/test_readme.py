"""The README's examples match the code: metric names, CLI flags, shipped files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SOURCES = "".join(p.read_text() for p in (ROOT / "scaler").rglob("*.py"))


def test_metric_names_in_readme_exist() -> None:
    for name in sorted(set(re.findall(r"`(prewarm_[a-z_]+)", README))):
        base = name.removesuffix("_total")
        assert f'"{base}"' in SOURCES or f'"{base.removeprefix("prewarm_")}"' in SOURCES, name


def test_linked_files_exist() -> None:
    for target in re.findall(r"\]\(((?:docs|deploy)/[^)#]+)\)", README):
        assert (ROOT / target).exists(), target


def test_quick_start_scripts_exist_and_commands_have_help() -> None:
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"{script}" in README and (ROOT / script).exists()
    for command in re.findall(r"^\| `prewarm ([a-z-]+)", README, flags=re.M):
        result = subprocess.run([sys.executable, "-m", "scaler", command, "--help"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (command, result.stderr)
