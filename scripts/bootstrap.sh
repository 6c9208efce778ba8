#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv): the locked dev + plot dependencies
# (requirements-dev.lock, every file's hash checked), then prewarm itself, editable. Idempotent
# and quick when nothing changed: a stamp of the lock's and pyproject.toml's hashes skips pip.
# Usage: scripts/bootstrap.sh           (PYTHON=python3.12 to choose the interpreter)
#
# Interpreter: $PYTHON if set (it must be 3.11 or 3.12), else python3.11, else python3.12, from
# PATH or pyenv (scripts/find-python.sh); with none, it says what it needs and exits 2.
# The stamp is written last and removed before any install, so a .venv without it never finished:
# it is deleted and made anew, and a failed run never leaves a broken .venv that later runs reuse.
# A .venv of another Python than the one asked for is made anew too.
set -euo pipefail
cd "$(dirname "$0")/.."
SUPPORTED="3.11 3.12"
LOCK=requirements-dev.lock
asked=${PYTHON:+yes}

version_of() {  # X.Y of an interpreter that runs, else nothing
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}
is_supported() { [ -n "$1" ] && [[ " $SUPPORTED " == *" $1 "* ]]; }
need() {
    echo "bootstrap: prewarm needs Python 3.11 or 3.12: $*" >&2
    echo "bootstrap: install one (e.g. apt-get install python3.11) or set PYTHON=/path/to/python3.12" >&2
    exit 2
}

if [ -n "${PYTHON:-}" ]; then
    want=$(version_of "$PYTHON")
    is_supported "$want" || need "PYTHON=$PYTHON is ${want:-not a working interpreter}"
else
    want=
    for v in $SUPPORTED; do
        if PYTHON=$(bash scripts/find-python.sh "$v"); then want=$v; break; fi
    done
    [ -n "$want" ] || need "found neither python3.11 nor python3.12 (on PATH or in pyenv)"
fi

# One bootstrap at a time per checkout: another run must not see the stamp missing mid-install
# and delete the .venv being filled.
if command -v flock > /dev/null; then
    exec 9> "${TMPDIR:-/tmp}/prewarm-bootstrap-$(pwd | sha256sum | cut -c1-16).lock"
    flock 9
fi
stamp=.venv/.prewarm-installed
if [ -e .venv ]; then
    have=$(version_of .venv/bin/python)
    if [ ! -f "$stamp" ]; then
        echo "bootstrap: .venv never finished installing (an earlier run failed): making it anew" >&2
        rm -rf .venv
    elif ! is_supported "$have" || { [ -n "$asked" ] && [ "$have" != "$want" ]; }; then
        echo "bootstrap: .venv is Python ${have:-(broken)}, not $want: making it anew" >&2
        rm -rf .venv
    fi
fi
if [ ! -e .venv ]; then
    echo "bootstrap: creating .venv with $("$PYTHON" --version)" >&2
    "$PYTHON" -m venv .venv
fi
want_stamp=$(cat pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
    echo "bootstrap: installing $LOCK and prewarm (about a minute the first time)" >&2
    rm -f "$stamp"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
        -r "$LOCK"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
    .venv/bin/python -m pip check > /dev/null || { .venv/bin/python -m pip check >&2; exit 1; }
    echo "$want_stamp" > "$stamp"
fi
