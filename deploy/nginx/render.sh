#!/usr/bin/env bash
# render.sh OUT [TEMPLATE] - render the gateway config from environment variables.
#
# Placeholder      variable                  default
# @GATEWAY_LISTEN@ NGINX_GATEWAY_LISTEN      127.0.0.1:${PHR_GATEWAY_PORT:-8443}
# @AUTH_SERVERS@   NGINX_AUTH_ADDR           127.0.0.1:${PHR_AUTH_PORT:-9101}
# @RECORDS_SERVERS@ NGINX_RECORDS_ADDR       127.0.0.1:${PHR_RECORDS_PORT:-9102}
# @NOTIFICATION_SERVERS@ NGINX_NOTIFICATION_ADDR 127.0.0.1:${PHR_NOTIFICATION_PORT:-9103}
# @AUDIT_SERVERS@  NGINX_AUDIT_ADDR          127.0.0.1:${PHR_AUDIT_PORT:-9104}
#                  Each NGINX_<SVC>_ADDR is one host:port or a list of them (separated by
#                  spaces or commas: one instance each); every one becomes a line
#                  "server HOST:PORT max_fails=3 fail_timeout=10s;" of the upstream.
# @TLS_CERT@       NGINX_TLS_CERT            (required) absolute path
# @TLS_KEY@        NGINX_TLS_KEY             (required) absolute path
# @PREFIX@         NGINX_PREFIX              (required) runtime dir for temp paths
# @PID_FILE@       NGINX_PID_FILE            $NGINX_PREFIX/nginx.pid
# @LOG_DIR@        NGINX_LOG_DIR             (required) nginx-error.log, nginx-access.log
# @LOGIN_RATE@     NGINX_LOGIN_RATE          120r/m
# @LOGIN_BURST@    NGINX_LOGIN_BURST         100
# @API_RATE@       NGINX_API_RATE            50r/s
# @API_BURST@      NGINX_API_BURST           200
# @USER@           NGINX_USER                "nobody nogroup" as root, empty otherwise;
#                                            renders "user USER [GROUP];" or an empty line
# @CONSOLE_ROOT@   NGINX_CONSOLE_ROOT        services/console/dist of this checkout (absolute):
#                                            the built staff console (make console)
# Values must not contain newlines. Writes OUT atomically.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 OUT [TEMPLATE]" >&2
    exit 2
fi
out=$1
tmpl=${2:-$(dirname "$0")/nginx.conf.tmpl}

need() {
    if [ -z "${!1:-}" ]; then
        echo "render.sh: $1 is required" >&2
        exit 2
    fi
}
need NGINX_TLS_CERT
need NGINX_TLS_KEY
need NGINX_PREFIX
need NGINX_LOG_DIR

if [ -z "${NGINX_USER+set}" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        # Debian's nobody has group nogroup: name it, or nginx looks up group "nobody".
        NGINX_USER="nobody $(id -gn nobody 2>/dev/null || echo nogroup)"
    else
        NGINX_USER=
    fi
fi
user_line=""
if [ -n "$NGINX_USER" ]; then
    user_line="user $NGINX_USER;"
fi

declare -A val=(
    [GATEWAY_LISTEN]=${NGINX_GATEWAY_LISTEN:-127.0.0.1:${PHR_GATEWAY_PORT:-8443}}
    [TLS_CERT]=$NGINX_TLS_CERT
    [TLS_KEY]=$NGINX_TLS_KEY
    [PREFIX]=${NGINX_PREFIX%/}
    [PID_FILE]=${NGINX_PID_FILE:-${NGINX_PREFIX%/}/nginx.pid}
    [LOG_DIR]=${NGINX_LOG_DIR%/}
    [LOGIN_RATE]=${NGINX_LOGIN_RATE:-120r/m}
    [LOGIN_BURST]=${NGINX_LOGIN_BURST:-100}
    [API_RATE]=${NGINX_API_RATE:-50r/s}
    [API_BURST]=${NGINX_API_BURST:-200}
    [USER]=$user_line
    [CONSOLE_ROOT]=${NGINX_CONSOLE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd -P)/services/console/dist}
)

# Escape a value for the replacement side of s|...|...|.
sed_escape() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

# servers NAME ADDRS: the sed command for @NAME_SERVERS@, one server line per address.
servers() {
    local name=$1 list=$2 addr out="" n=0 re='^[][A-Za-z0-9._:-]+$' addrs=()
    read -r -a addrs <<< "${list//,/ }"
    for addr in "${addrs[@]}"; do
        if ! [[ $addr =~ $re ]]; then
            echo "render.sh: bad upstream address for $name: $addr" >&2
            exit 2
        fi
        [ "$n" -gt 0 ] && out+='\n        '
        out+="server $addr max_fails=3 fail_timeout=10s;"
        n=$((n + 1))
    done
    if [ "$n" -eq 0 ]; then
        echo "render.sh: no upstream address for $name" >&2
        exit 2
    fi
    printf 's|@%s_SERVERS@|%s|g\n' "$name" "$out"
}

script=""
script+=$(servers AUTH "${NGINX_AUTH_ADDR:-127.0.0.1:${PHR_AUTH_PORT:-9101}}")$'\n'
script+=$(servers RECORDS "${NGINX_RECORDS_ADDR:-127.0.0.1:${PHR_RECORDS_PORT:-9102}}")$'\n'
script+=$(servers NOTIFICATION \
    "${NGINX_NOTIFICATION_ADDR:-127.0.0.1:${PHR_NOTIFICATION_PORT:-9103}}")$'\n'
script+=$(servers AUDIT "${NGINX_AUDIT_ADDR:-127.0.0.1:${PHR_AUDIT_PORT:-9104}}")$'\n'
for key in "${!val[@]}"; do
    v=${val[$key]}
    case $v in
        *$'\n'*)
            echo "render.sh: value for @$key@ contains a newline" >&2
            exit 2
            ;;
    esac
    script+="s|@${key}@|$(sed_escape "$v")|g"$'\n'
done

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
sed -e "$script" "$tmpl" > "$tmp"
if grep -n -E '@[A-Z_]+@' "$tmp" >&2; then
    echo "render.sh: unrendered placeholders left in $tmpl" >&2
    exit 1
fi
chmod 0644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
