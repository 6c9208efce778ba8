#!/usr/bin/env bash
# JSON Schema of a Grafana dashboard, generated from Grafana's own TypeScript types
# (@grafana/schema's raw dashboard types -> ts-json-schema-generator). No Grafana server is needed;
# tests/deploy validates deploy/grafana/*.json against it.
#
#   scripts/grafana-schema.sh          generate once (npm install into the cache, ~15 s) and print
#                                      the schema's path; a no-op when already cached
#   scripts/grafana-schema.sh path     print the cached schema's path (exit 1 when not generated)
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/prewarm/grafana-schema-<version> (outside the repository).
set -euo pipefail

GRAFANA_SCHEMA_VERSION=13.2.3
GENERATOR_VERSION=2.4.0     # ts-json-schema-generator (runs on Node 18+)
TYPESCRIPT_VERSION=5.9.3
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/prewarm
DIR=${PREWARM_GRAFANA_SCHEMA_CACHE:-$CACHE_ROOT/grafana-schema-$GRAFANA_SCHEMA_VERSION}
OUT=$DIR/dashboard.schema.json
TYPES=node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts

log() { printf 'grafana-schema: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

generate() {
    if [ -s "$OUT" ]; then echo "$OUT"; return 0; fi
    command -v npm >/dev/null || die "npm is missing (install Node.js 18+ and npm)"
    mkdir -p "$DIR"
    exec 9>"$DIR.lock"
    flock 9
    if [ -s "$OUT" ]; then echo "$OUT"; return 0; fi
    # Global (the EXIT trap runs after the function's locals are gone): node_modules never stays.
    WORK=$(mktemp -d "$DIR/work.XXXXXX")
    trap 'rm -rf "${WORK:-/nonexistent}"' EXIT
    (
        cd "$WORK"
        echo '{"name": "prewarm-grafana-schema", "private": true}' > package.json
        log "npm install @grafana/schema@$GRAFANA_SCHEMA_VERSION ts-json-schema-generator@$GENERATOR_VERSION"
        npm install --no-audit --no-fund --silent --no-package-lock \
            "@grafana/schema@$GRAFANA_SCHEMA_VERSION" "ts-json-schema-generator@$GENERATOR_VERSION" \
            "typescript@$TYPESCRIPT_VERSION" >&2
        [ -f "$TYPES" ] || die "@grafana/schema@$GRAFANA_SCHEMA_VERSION has no $TYPES"
        node_modules/.bin/ts-json-schema-generator \
            --path "$TYPES" --type Dashboard --no-type-check -o dashboard.schema.json >&2
    )
    mv "$WORK/dashboard.schema.json" "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
    log "generated $OUT"
    echo "$OUT"
}

case "${1:-generate}" in
    generate) generate ;;
    path) [ -s "$OUT" ] || exit 1; echo "$OUT" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
