#!/usr/bin/env bash
# deps.sh - install exactly the Debian 12 packages this project needs that are missing.
#
# Quiet and fast when everything is present. When something is missing: one
# `apt-get update`, then one non-interactive install of the missing packages.
# Add new packages to PHR_DEPS below (one place, used by `make deps`).
set -euo pipefail

PHR_DEPS=(
    # build
    gcc make pkg-config libc6-dev
    libevent-dev libnghttp2-dev libhiredis-dev libjson-c-dev libargon2-dev libcmocka-dev
    libssl-dev libpq-dev libcurl4-openssl-dev libunistring-dev
    # local stack
    postgresql-15 postgresql-client-15 redis-server nginx
    python3 python3-cryptography python3-yaml python3-h2 testssl.sh
    # abuse and scanner suite (make resilience: tests/abuse/)
    sqlmap ffuf
    # tests, bench, tools
    nghttp2-client nghttp2-server curl openssl ca-certificates procps iproute2 tzdata
    clang-14 clang-tidy clang-format cppcheck
    nodejs npm docker-compose
    # staff console browser tests (services/console/tests: playwright-core drives Chromium;
    # a Japanese font for readable screenshots)
    chromium fonts-ipafont-gothic
)
# `deps.sh compose`: also what tests/compose/run-real.sh needs (rootful podman).
if [ "${1:-}" = compose ]; then
    PHR_DEPS+=(podman debootstrap catatonit netavark aardvark-dns crun runc)
fi

# A package whose command is already on PATH from another source counts as
# present (nodesource's nodejs bundles npm and conflicts with Debian's npm).
declare -A PHR_DEP_CMD=(
    [npm]=npm
    [nodejs]=node
)

missing=()
declare -A installed=()
while read -r name status; do
    if [ "$status" = "installed" ]; then
        installed[${name%%:*}]=1
    fi
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PHR_DEPS[@]}" 2>/dev/null || true)

for pkg in "${PHR_DEPS[@]}"; do
    if [ -z "${installed[$pkg]:-}" ]; then
        cmd=${PHR_DEP_CMD[$pkg]:-}
        if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1; then
            continue
        fi
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: ${missing[*]} (run as root: make deps)" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt/dpkg instead of failing at once.
apt_opts=(-o DPkg::Lock::Timeout=300)
apt-get "${apt_opts[@]}" update -qq
# No systemd here: postinst scripts may fail to start the system services;
# we never use those instances (deploy/stack.sh runs private ones).
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"
