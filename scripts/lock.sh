#!/usr/bin/env bash
# Regenerate the lock files from pyproject.toml, with hashes, for every supported Python
# (--universal: one file serves 3.11 and 3.12, linux and other platforms):
#   requirements-dev.lock          dev + plot extras: what scripts/bootstrap.sh installs into .venv
#   deploy/docker/requirements.txt the runtime dependencies alone: what the Dockerfile installs
# The image's lock is resolved inside the dev lock's versions, so both pin the same releases.
# Usage: scripts/lock.sh                 (keeps current pins where they still fit)
#        scripts/lock.sh --upgrade       (newest releases within pyproject's ranges)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || bash scripts/bootstrap.sh
compile() {
    "$UV" pip compile --quiet --no-config --universal --python-version 3.11 --generate-hashes \
        --no-emit-package prewarm --custom-compile-command "scripts/lock.sh" "$@"
}
compile pyproject.toml --extra dev --extra plot -o requirements-dev.lock "$@"
compile pyproject.toml -c requirements-dev.lock -o deploy/docker/requirements.txt "$@"
echo "lock: wrote requirements-dev.lock and deploy/docker/requirements.txt" >&2
