#!/usr/bin/env bash
# k8s-lint.sh - validate the Kubernetes manifests in deploy/k8s without a cluster.
#
#   1. deploy/k8s/*.yaml with deploy/k8s/tools/validate.mjs: the JSON Schemas that the npm
#      package kubernetes-models bundles (Kubernetes OpenAPI), strict fields (a misspelt field
#      is an error) and the project's policy (probes on /readyz and /livez, requests and limits,
#      non-root, PodDisruptionBudgets, Services, Secrets referenced and never defined);
#   2. each deploy/k8s/tools/invalid/*.yaml must fail with the message its first line names
#      ("# expect: ..."), so the checks themselves are tested.
#
# Installs the pinned tools from deploy/k8s/tools/package-lock.json (npm ci) when
# deploy/k8s/tools/node_modules is missing. Last line "N passed, N failed"; exit 1 on failure.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
tools=deploy/k8s/tools

if [ ! -d "$tools/node_modules" ]; then
    npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error >/dev/null || {
        echo "k8s-lint: npm ci failed" >&2
        echo "0 passed, 1 failed"
        exit 1
    }
fi

passed=0
failed=0

echo "k8s-lint: deploy/k8s/*.yaml"
if node "$tools/validate.mjs" deploy/k8s/*.yaml; then
    echo "ok   k8s_manifests"
    passed=$((passed + 1))
else
    echo "FAIL k8s_manifests"
    failed=$((failed + 1))
fi

for f in "$tools"/invalid/*.yaml; do
    name=$(basename "$f" .yaml)
    expect=$(head -n 1 "$f" | sed -n 's/^# expect: //p')
    out=$(node "$tools/validate.mjs" "$f" 2>&1)
    rc=$?
    if [ -n "$expect" ] && [ "$rc" -ne 0 ] && grep -qF -- "$expect" <<< "$out"; then
        echo "ok   k8s_rejects_$name"
        passed=$((passed + 1))
    else
        echo "FAIL k8s_rejects_$name (exit $rc, expected \"$expect\"):"
        printf '%s\n' "$out" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
