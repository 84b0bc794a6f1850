#!/usr/bin/env bash
# build.sh - build the staff console into services/console/dist (called by `make console`).
#
# npm ci when node_modules is missing or older than package-lock.json, then the type check
# and the Vite build. Without npm it says so and exits 0: the gateway then answers 404 at /
# and the API is unaffected.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v npm >/dev/null 2>&1; then
    echo "console: npm not found, staff console not built (make deps installs nodejs and npm)" >&2
    exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build -- --logLevel warn
# Readable by the gateway's worker user (nobody when the stack runs as root).
chmod -R a+rX dist
echo "console: built services/console/dist"
