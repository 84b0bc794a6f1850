# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source it
# tests/lib/loadstack.sh - the environment of a private stack with two records instances that
# a suite drives under load (tests/faults/run.sh, tests/soak/run.sh); sourced, never run.
#
# loadstack_env NAME BASE "$@" (the suite's arguments: BUILD_DIR): buildarg "$@" (the usage,
# the repository root, root, build and PY: tests/lib/buildarg.sh), then exports PHR_VAR
# (PHR_<NAME>_VAR, default var/<name>), PHR_BUILD, PHR_SECRETS_DIR, the ports unless set
# (PHR_GATEWAY_PORT BASE+443, PHR_REDIS_PORT BASE+479, PHR_AUTH_PORT..PHR_AUDIT_PORT
# BASE+101..104, PHR_STANDIN_PORT BASE+199; PostgreSQL's, BASE+432 or PHR_PG_PORT, only in
# pg_port: the faults suite puts its proxy in between), two records instances, and gateway
# limits high enough that one client address can carry the whole load (the per-address
# limits are not under test).

# shellcheck source=tests/lib/buildarg.sh
. "$(dirname "${BASH_SOURCE[0]}")/buildarg.sh"

loadstack_env() {
    local name=$1 base=$2 var
    shift 2
    buildarg "$@"
    var=PHR_${name^^}_VAR
    export PHR_VAR=${!var:-$root/var/$name}
    export PHR_BUILD=$build
    export PHR_SECRETS_DIR=$PHR_VAR/secrets
    export PHR_GATEWAY_PORT=${PHR_GATEWAY_PORT:-$((base + 443))}
    pg_port=${PHR_PG_PORT:-$((base + 432))}
    export PHR_REDIS_PORT=${PHR_REDIS_PORT:-$((base + 479))}
    export PHR_AUTH_PORT=${PHR_AUTH_PORT:-$((base + 101))}
    export PHR_RECORDS_PORT=${PHR_RECORDS_PORT:-$((base + 102))}
    export PHR_NOTIFICATION_PORT=${PHR_NOTIFICATION_PORT:-$((base + 103))}
    export PHR_AUDIT_PORT=${PHR_AUDIT_PORT:-$((base + 104))}
    export PHR_STANDIN_PORT=${PHR_STANDIN_PORT:-$((base + 199))}
    export PHR_RECORDS_INSTANCES=2 PHR_AUTH_INSTANCES=1 PHR_NOTIFICATION_INSTANCES=1
    export PHR_AUDIT_INSTANCES=1
    export PHR_PG_HOST=127.0.0.1 PHR_REDIS_HOST=127.0.0.1
    export NGINX_API_RATE=${NGINX_API_RATE:-100000r/s} NGINX_API_BURST=${NGINX_API_BURST:-100000}
    export NGINX_LOGIN_RATE=${NGINX_LOGIN_RATE:-6000r/m} NGINX_LOGIN_BURST=${NGINX_LOGIN_BURST:-1000}
}
