#!/usr/bin/env bash
# Print the path of a working Python X.Y interpreter, or exit 1: `pythonX.Y` on PATH, else one
# that pyenv has installed but not activated (its shims answer "command not found" for those).
# Usage: scripts/find-python.sh 3.12
set -euo pipefail
want=${1:?usage: find-python.sh X.Y}
works() { [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; }
on_path=$(command -v "python$want" || true)
if [ -n "$on_path" ] && [[ "$on_path" != */shims/* ]] && works "$on_path"; then echo "$on_path"; exit 0; fi
if command -v pyenv > /dev/null; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E "^${want//./\\.}(\.[0-9]+)?$" | sort -V -r); do
        path=$(PYENV_VERSION=$v pyenv which "python$want" 2>/dev/null) || continue
        works "$path" && { echo "$path"; exit 0; }
    done
fi
if [ -n "$on_path" ] && works "$on_path"; then echo "$on_path"; exit 0; fi  # a shim that works
exit 1
