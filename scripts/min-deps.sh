#!/usr/bin/env bash
# Run tests/unit and tests/e2e in a separate, throwaway virtualenv with other dependencies than .venv:
#   scripts/min-deps.sh [pytest args]
#       the lower bounds: every `name>=X` of [project] dependencies and of the `plot` extra pinned
#       to exactly X (the dev tools resolve freely). A lower bound that is a lie fails here.
#   DEPS=locked scripts/min-deps.sh [pytest args]
#       requirements-dev.lock as it is (hashes checked), e.g. on the other supported Python.
# PYTHON=X.Y (3.11 unless set) picks the interpreter (scripts/find-python.sh), or give a path.
# Needs .venv (scripts/bootstrap.sh) for uv.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=${DEPS:-lowest}
PYTHON=${PYTHON:-3.11}
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || { echo "min-deps: $UV missing: run scripts/bootstrap.sh first" >&2; exit 2; }
if [[ "$PYTHON" =~ ^[0-9]+\.[0-9]+$ ]]; then
    PYTHON=$(bash scripts/find-python.sh "$PYTHON") || { echo "min-deps: no Python $PYTHON here" >&2; exit 2; }
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/prewarm-min-deps.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$UV" venv --quiet --python "$PYTHON" "$work/venv"
py=$work/venv/bin/python
# --no-config: the project's own pins, nothing from a uv config on this machine.
install=("$UV" pip install --quiet --no-config --python "$py")

case "$DEPS" in
lowest)
    # name>=X -> name==X for the runtime dependencies and the plot extra.
    "$py" - > "$work/lowest.txt" <<'EOF'
import re
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for dep in project["dependencies"] + project["optional-dependencies"]["plot"]:
    name, _, rest = re.match(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?(.*)", dep).groups()
    low = re.search(r">=\s*([^,;\s]+)", rest)
    if not low:
        raise SystemExit(f"min-deps: {dep!r} has no >= lower bound")
    print(f"{name}=={low.group(1)}")
EOF
    echo "min-deps: the lower bounds on $("$py" --version):" >&2
    sed 's/^/  /' "$work/lowest.txt" >&2
    "${install[@]}" -c "$work/lowest.txt" -r "$work/lowest.txt" -e '.[dev,plot]'
    # Every bound installed exactly as written.
    "$UV" pip freeze --python "$py" > "$work/freeze.txt"
    "$py" - "$work/lowest.txt" "$work/freeze.txt" <<'EOF'
import re
import sys

from packaging.version import Version


def pins(path):
    out = {}
    for line in open(path):
        name, sep, version = line.strip().partition("==")
        if sep:
            out[re.sub(r"[-_.]+", "-", name).lower()] = Version(version)
    return out


wanted, got = pins(sys.argv[1]), pins(sys.argv[2])
wrong = [f"{n}=={v} (installed: {got.get(n)})" for n, v in wanted.items() if got.get(n) != v]
if wrong:
    raise SystemExit("min-deps: not installed at the lower bound: " + ", ".join(wrong))
EOF
    ;;
locked)
    echo "min-deps: requirements-dev.lock on $("$py" --version)" >&2
    "${install[@]}" --require-hashes --no-deps -r requirements-dev.lock
    "${install[@]}" --no-deps -e .
    ;;
*)
    echo "min-deps: DEPS=$DEPS: expected lowest or locked" >&2
    exit 2
    ;;
esac

status=0
"$py" -m pytest -p no:cacheprovider tests/unit tests/e2e "$@" || status=$?
exit "$status"
