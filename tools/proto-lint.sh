#!/usr/bin/env bash
# proto-lint.sh - lint the API contract in proto/.
#
#   1. OpenAPI 3.1 documents (proto/*.yaml) with @redocly/cli and proto/redocly.yaml;
#   2. project rules (routing table, access markers, implemented routes):
#      proto/tools/check-contract.js;
#   3. JSON Schemas (proto/schemas/*.json) compiled with ajv (draft 2020-12, strict), and the
#      examples in proto/schemas/examples/<schema>/{valid,invalid}/ checked to pass / fail.
#
# Installs the pinned tools from proto/package-lock.json (npm ci) when proto/node_modules is
# missing. Exits non-zero on the first failing step. Run from anywhere.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ ! -d proto/node_modules ]; then
    npm ci --prefix proto --no-audit --no-fund --loglevel=error >/dev/null
fi

export NO_UPDATE_NOTIFIER=1 REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

docs=()
for f in proto/*.yaml; do
    [ "$(basename "$f")" = redocly.yaml ] && continue
    docs+=("$f")
done

echo "proto-lint: redocly lint ${docs[*]}"
# Redocly prints a Node.js end-of-life banner on Node 20; drop its box-drawing lines.
set +e
npx --prefix proto redocly lint --config proto/redocly.yaml --format=codeframe "${docs[@]}" 2>&1 |
    grep -v -e '[╔║╚]'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    echo "proto-lint: redocly lint failed" >&2
    exit 1
fi

node proto/tools/check-contract.js proto

ajv_opts=(--spec=draft2020 --strict=true --strict-required=false --allow-union-types
          -c ajv-formats)
for s in proto/schemas/*.json; do
    npx --prefix proto ajv compile "${ajv_opts[@]}" -s "$s"
done
for d in proto/schemas/examples/*/; do
    name=$(basename "$d")
    schema=proto/schemas/$name.json
    if [ ! -f "$schema" ]; then
        echo "proto-lint: $d has no schema $schema" >&2
        exit 1
    fi
    if compgen -G "$d/valid/*.json" >/dev/null; then
        npx --prefix proto ajv test "${ajv_opts[@]}" -s "$schema" -d "$d/valid/*.json" --valid
    fi
    if compgen -G "$d/invalid/*.json" >/dev/null; then
        npx --prefix proto ajv test "${ajv_opts[@]}" -s "$schema" -d "$d/invalid/*.json" \
            --invalid --errors=no
    fi
done

echo "proto-lint: ok"
