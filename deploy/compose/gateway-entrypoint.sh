#!/usr/bin/env bash
# gateway-entrypoint.sh - entrypoint of the gateway image (deploy/Dockerfile target gateway).
#
# Renders deploy/nginx/nginx.conf.tmpl with deploy/nginx/render.sh for the compose network,
# checks it with `nginx -t`, then runs nginx in the foreground (as the image's non-root user:
# render.sh then leaves out the `user` directive). Every NGINX_* variable of render.sh may be
# set in the environment; the defaults here differ from the local stack:
#   NGINX_GATEWAY_LISTEN  0.0.0.0:8443
#   NGINX_<SVC>_ADDR      $PHR_<SVC>_HOST:$PHR_<SVC>_PORT  (default auth:9101, records:9102,
#                         notification:9103, audit:9104: the compose service names)
#   NGINX_TLS_CERT/KEY    /run/phr-tls/server.crt, /run/phr-tls/server.key
#   NGINX_PREFIX          /var/lib/phr-gateway (config, pid, temp files)
#   NGINX_LOG_DIR         $NGINX_PREFIX/log; nginx-access.log and nginx-error.log there are
#                         links to the container's stdout/stderr (`docker-compose logs gateway`)
#                         unless PHR_GATEWAY_LOG_FILES=1 or those cannot be opened.
set -euo pipefail

lib=${PHR_GATEWAY_LIB:-/usr/local/lib/phr}

export NGINX_PREFIX=${NGINX_PREFIX:-/var/lib/phr-gateway}
export NGINX_LOG_DIR=${NGINX_LOG_DIR:-$NGINX_PREFIX/log}
export NGINX_GATEWAY_LISTEN=${NGINX_GATEWAY_LISTEN:-0.0.0.0:8443}
export NGINX_AUTH_ADDR=${NGINX_AUTH_ADDR:-${PHR_AUTH_HOST:-auth}:${PHR_AUTH_PORT:-9101}}
records_addr=${PHR_RECORDS_HOST:-records}:${PHR_RECORDS_PORT:-9102}
notification_addr=${PHR_NOTIFICATION_HOST:-notification}:${PHR_NOTIFICATION_PORT:-9103}
export NGINX_RECORDS_ADDR=${NGINX_RECORDS_ADDR:-$records_addr}
export NGINX_NOTIFICATION_ADDR=${NGINX_NOTIFICATION_ADDR:-$notification_addr}
export NGINX_AUDIT_ADDR=${NGINX_AUDIT_ADDR:-${PHR_AUDIT_HOST:-audit}:${PHR_AUDIT_PORT:-9104}}
export NGINX_TLS_CERT=${NGINX_TLS_CERT:-/run/phr-tls/server.crt}
export NGINX_TLS_KEY=${NGINX_TLS_KEY:-/run/phr-tls/server.key}

mkdir -p "$NGINX_PREFIX" "$NGINX_LOG_DIR"
for f in "$NGINX_TLS_CERT" "$NGINX_TLS_KEY"; do
    if [ ! -r "$f" ]; then
        echo "gateway: cannot read $f (did secrets-init run?)" >&2
        exit 1
    fi
done

# Logs to the container's stdout/stderr when this user may open them (a pipe created by the
# container runtime as root may refuse a non-root open); files otherwise.
# The probe opens this shell's own descriptor through /proc/$$ (the 2>/dev/null of the probe
# must not replace what is probed).
link_log() {
    local name=$1 fd=$2
    if [ "${PHR_GATEWAY_LOG_FILES:-0}" != 1 ] && (: >> "/proc/$$/fd/$fd") 2>/dev/null; then
        ln -sfn "/dev/$([ "$fd" = 1 ] && echo stdout || echo stderr)" "$NGINX_LOG_DIR/$name"
    elif [ -L "$NGINX_LOG_DIR/$name" ]; then
        rm -f "$NGINX_LOG_DIR/$name"
    fi
}
link_log nginx-access.log 1
link_log nginx-error.log 2

conf=$NGINX_PREFIX/nginx.conf
bash "$lib/nginx/render.sh" "$conf" "$lib/nginx/nginx.conf.tmpl"
nginx -t -q -e stderr -p "$NGINX_PREFIX/" -c "$conf"
echo "gateway: listening on $NGINX_GATEWAY_LISTEN (auth $NGINX_AUTH_ADDR, records" \
    "$NGINX_RECORDS_ADDR, notification $NGINX_NOTIFICATION_ADDR, audit $NGINX_AUDIT_ADDR)" >&2
exec nginx -e stderr -p "$NGINX_PREFIX/" -c "$conf" -g 'daemon off;'
