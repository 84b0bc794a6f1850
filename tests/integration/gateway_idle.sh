#!/usr/bin/env bash
# tests/integration/gateway_idle.sh VAR - the itest case "gateway: upstream idle ends first".
#
# Exit 0 when the running stack in VAR has at least 4 upstream blocks with a keepalive_timeout
# in VAR/nginx/nginx.conf and each of them is shorter than the services' idle timeout (the
# running records instance's PHR_IDLE_TIMEOUT_MS, else its --help-config default); otherwise
# says why on stderr and exits 1.
set -uo pipefail

var=${1:?usage: gateway_idle.sh VAR}
pid=$(head -n 1 "$var/run/records.pid") || exit 1
if ! exe=$(readlink "/proc/$pid/exe"); then
    echo "gateway_idle: records ($pid) is not running" >&2
    exit 1
fi
idle=$(tr '\0' '\n' < "/proc/$pid/environ" | sed -n 's/^PHR_IDLE_TIMEOUT_MS=//p')
if [ -z "$idle" ]; then
    idle=$("$exe" --help-config | awk '$1 == "PHR_IDLE_TIMEOUT_MS" { print $2 }')
fi
if ! [[ $idle =~ ^[0-9]+$ ]] || [ "$idle" -le 0 ]; then
    echo "gateway_idle: no idle timeout of records (got '$idle')" >&2
    exit 1
fi
awk -v idle="$idle" '
    /^ *upstream / { u = 1 }
    u && /keepalive_timeout/ {
        n++
        v = $2
        sub(/s;$/, "", v)
        if (v * 1000 >= idle) {
            printf "keepalive_timeout %ss, idle %d ms\n", v, idle > "/dev/stderr"
            bad = 1
        }
    }
    u && /}/ { u = 0 }
    END {
        if (n < 4) {
            printf "%d upstream keepalive_timeout lines (< 4)\n", n > "/dev/stderr"
        }
        exit !(n >= 4 && !bad)
    }' "$var/nginx/nginx.conf"
