#!/bin/sh
# redis-start.sh - entrypoint wrapper of the redis service in docker-compose.yml.
#
# Starts as root, reads the password from the secrets volume and writes a private config
# (mode 0600, owned by the redis user) so the password is in neither the command line nor the
# environment, then hands over to redis-server as the redis user:
#   - official redis image: through its docker-entrypoint.sh (which drops to redis with gosu);
#   - a plain Debian image with the redis-server package: through setpriv.
# Environment: PHR_REDIS_SECRET (default /run/secrets/redis/redis.password),
# PHR_REDIS_CONF_DIR (default /run/phr-redis), PHR_REDIS_DATA (default /data).
# Extra arguments are passed to redis-server after the config file.
set -eu

secret=${PHR_REDIS_SECRET:-/run/secrets/redis/redis.password}
conf_dir=${PHR_REDIS_CONF_DIR:-/run/phr-redis}
data=${PHR_REDIS_DATA:-/data}

if ! grep -Eqx '[A-Za-z0-9]{16,128}' "$secret" 2>/dev/null; then
    echo "redis-start: $secret is missing or not 16-128 alphanumerics" >&2
    exit 1
fi
umask 077
mkdir -p "$conf_dir" "$data"
conf=$conf_dir/redis.conf
{
    echo "bind * -::*"
    echo "port 6379"
    echo "protected-mode yes"
    echo "dir $data"
    echo "appendonly yes"
    echo "appendfsync everysec"
    echo "requirepass $(cat "$secret")"
} > "$conf.tmp"
mv "$conf.tmp" "$conf"

if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
    chown -R redis:redis "$conf_dir"
    chown redis:redis "$data"
fi
if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    exec docker-entrypoint.sh redis-server "$conf" "$@"
fi
if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$conf" "$@"
fi
exec redis-server "$conf" "$@"
