"""Dockerfile: multi-stage, slim, pinned, non-root, runs `prewarm serve`; its build steps work.

No Docker engine here: the build stage's RUN steps run as written (bash, in a copy of exactly
what its COPY lines copy) against a clean virtualenv in place of /opt/prewarm, and the result
serves `prewarm serve --demo` from outside the repository, the way the runtime stage runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.process import ServeProcess, free_port, wait_serving

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prewarm" / "wheels"
"""Wheels of the pinned requirements, downloaded once (no pip cache is configured here)."""
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "deploy" / "docker" / "requirements.txt"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for word, args in instructions(text):
        if word == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            result[current] = []
        elif current:
            result[current].append((word, args))
    return result


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def test_multi_stage_non_root_pinned() -> None:
    text = DOCKERFILE.read_text()
    s = stages(text)
    assert list(s) == ["build", "runtime"]
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base is not None and re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    runtime = dict((w, a) for w, a in s["runtime"] if w in ("USER", "ENTRYPOINT", "CMD"))
    user, _, group = runtime["USER"].partition(":")
    assert user.isdigit() and int(user) > 0 and group.isdigit()
    assert runtime["ENTRYPOINT"] == '["prewarm"]' and runtime["CMD"].startswith('["serve"')
    copies = [a for w, a in s["runtime"] if w == "COPY"]
    assert copies == ["--from=build /opt/prewarm /opt/prewarm"]  # no sources, no tests, no build tools


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, list[tuple[str, str, list[str]]]]:
    """A hashed lock file (scripts/lock.sh): name -> [(version, marker, sha256 hashes)]."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins: dict[str, list[tuple[str, str, list[str]]]] = {}
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][\w.\-]*)==([\w.+!]+)\s*(?:;\s*([^-]*?))?\s*((?:--hash=sha256:[0-9a-f]{64}\s*)*)", line)
        assert match, f"{path.name}: not a hashed pin: {line[:120]}"
        name, version, marker, hashes = match.groups()
        pins.setdefault(canonical(name), []).append((version, marker or "", re.findall(r"[0-9a-f]{64}", hashes)))
    return pins


def project_names(deps: list[str]) -> set[str]:
    return {canonical(re.split(r"[<>=!~\[ ;]", dep)[0]) for dep in deps}


def test_requirements_pin_and_hash_every_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    image, dev = locked(REQUIREMENTS), locked(ROOT / "requirements-dev.lock")
    for name, entries in image.items():
        for version, marker, hashes in entries:
            assert hashes, f"{name}=={version}: no --hash in {REQUIREMENTS.name} (pip --require-hashes needs one)"
            # the image's lock is the runtime part of the dev lock: same releases, same files
            assert (version, marker) in [(v, m) for v, m, _ in dev.get(name, [])], f"{name}=={version} ({marker})"
    for name in project_names(project["dependencies"]):
        assert name in image, f"{name} (pyproject.toml) is not pinned in {REQUIREMENTS.name}"
    for name in project_names(project["dependencies"] + [d for deps in project["optional-dependencies"].values() for d in deps]):
        assert name in dev, f"{name} (pyproject.toml) is not pinned in requirements-dev.lock"
    # the daemon image never plots: the plot extra stays out of it
    assert not project_names(project["optional-dependencies"]["plot"]) & set(image)


def test_oci_labels() -> None:
    import tomllib

    text = DOCKERFILE.read_text()
    runtime = stages(text)["runtime"]
    global_args = dict(re.findall(r"^ARG (\w+)=(\S+)", text.split("\nFROM ")[0], re.M))
    args = {}
    for word, rest in runtime:
        if word == "ARG":  # a stage's ARG without a default takes the global one
            name, eq, default = rest.partition("=")
            args[name] = default if eq else global_args.get(name, "")
    labels = {}
    for word, rest in runtime:
        if word == "LABEL":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                labels[key] = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), value)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    oci = "org.opencontainers.image."
    for key in ("title", "description", "version", "revision", "created", "licenses", "source", "base.name"):
        assert oci + key in labels, f"LABEL {oci}{key} missing"
    assert labels[oci + "title"] == project["name"]
    assert labels[oci + "version"] == project["version"]
    assert labels[oci + "licenses"] == project["license"]["text"]
    assert labels[oci + "base.name"] == global_args["PYTHON_IMAGE"]  # the image actually built from


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [x for x in (ROOT / ".dockerignore").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == "*"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    copied = set()
    for word, args in instructions(DOCKERFILE.read_text()):
        if word == "COPY" and not args.startswith("--from"):
            copied |= set(args.split()[:-1])
    assert copied == allowed


@pytest.mark.slow
def test_build_stage_installs_and_serves(tmp_path: Path) -> None:
    build = stages(DOCKERFILE.read_text())["build"]
    context, venv = tmp_path / "src", tmp_path / "venv"
    context.mkdir()
    began = time.monotonic()
    for what in (["--require-hashes", "-r", str(REQUIREMENTS)], ["setuptools>=68", "wheel"]):  # the build backend: unhashed
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(WHEELS),
             *what], capture_output=True, text=True, check=False, timeout=900)
        assert download.returncode == 0, download.stderr[-3000:]
    print(f"\nwheels (download or up to date): {time.monotonic() - began:.0f}s")
    # The RUN steps as written; pip reads the downloaded wheels instead of the index (same files).
    env = {**os.environ, **env_of(build), "VENV": str(venv), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELS)}
    env.pop("VIRTUAL_ENV", None)
    began = time.monotonic()
    for word, args in build:
        if word == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                target = context / source
                target.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(ROOT / source, target)
        elif word == "RUN":
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", args], cwd=context, env=env,
                                    capture_output=True, text=True, check=False, timeout=900)
            assert result.returncode == 0, f"RUN {args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    print(f"build stage steps: {time.monotonic() - began:.0f}s")
    assert not (venv / "bin" / "pip").exists()  # removed from the image

    # the runtime stage: the venv's `prewarm` from a directory outside the repository
    grpc_port, metrics_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run_env.update(PATH=f"{venv / 'bin'}:{run_env['PATH']}", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    with log.open("w") as out:
        proc = subprocess.Popen([str(venv / "bin" / "prewarm"), "serve", "--demo", "--listen", f"127.0.0.1:{grpc_port}",
                                 "--metrics-listen", f"127.0.0.1:{metrics_port}"],
                                cwd=tmp_path, env=run_env, stdout=out, stderr=subprocess.STDOUT, text=True)
    served = ServeProcess(proc, grpc_port, metrics_port, log)
    try:
        wait_serving(served, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            assert b'prewarm_build_info{version="0.1.0"} 1.0' in response.read()
        where = subprocess.run([str(venv / "bin" / "python"), "-c", "import scaler; print(scaler.__file__)"],
                               cwd=tmp_path, env=run_env, capture_output=True, text=True, check=True)
        assert where.stdout.startswith(str(venv)), where.stdout
    finally:
        code = served.terminate()
    assert code == 0, served.output()[-3000:]
    assert sys.version_info[:2] == (3, 11)  # the image's Python

    # No plot extra in the image (as after `pip install prewarm`): the CLI still works, and a plot
    # names the extra that brings matplotlib, up front, with no traceback.
    def prewarm(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "prewarm"), *argv], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, check=False, timeout=120)

    for module in ("matplotlib", "tqdm"):
        absent = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}"], cwd=tmp_path, env=run_env,
                                capture_output=True, text=True, check=False)
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, module
    helped = prewarm("--help")
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr
    for argv in (["backtest", "--trace", "synthetic", "--plot", "out.png"], ["demo"],
                 ["forecast-eval", "--trace", "t.csv", "--plot", "out.png"]):
        refused = prewarm(*argv)
        assert refused.returncode == 2, (argv, refused.stderr[-2000:])
        assert "pip install 'prewarm[plot]'" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert not (tmp_path / "out.png").exists()
