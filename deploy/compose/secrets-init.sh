#!/usr/bin/env bash
# secrets-init.sh SECRETS_DIR TLS_DIR - one-shot job of docker-compose.yml (service secrets-init).
#
# Runs as root on every `docker-compose up`; idempotent, never replaces a generated secret.
#   1. SECRETS_DIR/phr   the full set from deploy/gen-secrets.sh plus pg_postgres.password
#                        (the PostgreSQL superuser); root only.
#   2. one directory per consumer with only the files it needs, owned by its user, dir 0700,
#      files 0600 (common/config.c refuses secrets readable by group or others):
#        auth records notification audit   own pg_<svc>.password, redis.password, every
#                                           svc_*.key (callers' credentials are checked),
#                                           data_key_v*, audit_signing.pub.pem;
#                                           audit also audit_signing.pem; auth also
#                                           auth_pepper_v* (password peppers, auth only);
#                                           notification also the provider credentials
#                                           sendgrid_api_key, twilio_auth_token and the
#                                           webhook key sendgrid_webhook.pub.pem
#        postgres                           pg_*.password of the four services and the superuser
#        redis                              redis.password (read by root in the redis wrapper)
#   3. TLS_DIR: self-signed certificate from deploy/gen-tls.sh, key owned by the gateway user.
# A consumer directory is brought in line with the policy above on every run (files copied
# only when changed, files no longer granted removed), so data_key_v2 etc. reach the services.
#
# User ids (match deploy/Dockerfile and the official images); override from the environment:
#   PHR_UID_GATEWAY 10100, PHR_UID_AUTH 10101, PHR_UID_RECORDS 10102,
#   PHR_UID_NOTIFICATION 10103, PHR_UID_AUDIT 10104, PHR_UID_POSTGRES 999, PHR_UID_REDIS 0
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SECRETS_DIR TLS_DIR" >&2
    exit 2
fi
secrets=$1
tls=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Next to this script in the image, one directory up in the repository.
gen_dir=$here
if [ ! -f "$gen_dir/gen-secrets.sh" ]; then
    gen_dir=$here/..
fi
gen_secrets=${PHR_GEN_SECRETS:-$gen_dir/gen-secrets.sh}
gen_tls=${PHR_GEN_TLS:-$gen_dir/gen-tls.sh}

declare -A uid=(
    [gateway]=${PHR_UID_GATEWAY:-10100}
    [auth]=${PHR_UID_AUTH:-10101}
    [records]=${PHR_UID_RECORDS:-10102}
    [notification]=${PHR_UID_NOTIFICATION:-10103}
    [audit]=${PHR_UID_AUDIT:-10104}
    [postgres]=${PHR_UID_POSTGRES:-999}
    [redis]=${PHR_UID_REDIS:-0}
)
services=(auth records notification audit)

umask 077
mkdir -p "$secrets" "$tls"
chown 0:0 "$secrets" "$tls"
chmod 0755 "$secrets" "$tls"

master=$secrets/phr
bash "$gen_secrets" "$master"
chown -R 0:0 "$master"
if [ ! -s "$master/pg_postgres.password" ]; then
    tmp=$(mktemp "$master/.pg_postgres.XXXXXX")
    pw=""
    while [ "${#pw}" -lt 32 ]; do
        pw+=$(openssl rand -base64 48 | tr -dc 'A-Za-z0-9')
    done
    printf '%s\n' "${pw:0:32}" > "$tmp"
    chmod 0600 "$tmp"
    mv "$tmp" "$master/pg_postgres.password"
fi

# grant CONSUMER FILE...: make SECRETS_DIR/CONSUMER hold exactly FILE... from the master set.
grant() {
    local who=$1 dir=$secrets/$1 f keep
    shift
    mkdir -p "$dir"
    for f in "$@"; do
        if [ ! -f "$master/$f" ]; then
            echo "secrets-init: missing $master/$f" >&2
            return 1
        fi
        if ! cmp -s "$master/$f" "$dir/$f"; then
            install -m 0600 -o "${uid[$who]}" -g "${uid[$who]}" "$master/$f" "$dir/.$f.new"
            mv -f "$dir/.$f.new" "$dir/$f"
        fi
        chown "${uid[$who]}:${uid[$who]}" "$dir/$f"
        chmod 0600 "$dir/$f"
    done
    for f in "$dir"/* "$dir"/.[!.]*; do
        [ -e "$f" ] || continue
        keep=0
        for g in "$@"; do
            if [ "$(basename "$f")" = "$g" ]; then
                keep=1
            fi
        done
        if [ "$keep" -eq 0 ]; then
            rm -rf "$f"
        fi
    done
    chown "${uid[$who]}:${uid[$who]}" "$dir"
    chmod 0700 "$dir"
}

shopt -s nullglob
shared=(redis.password audit_signing.pub.pem)
for f in "$master"/svc_*.key "$master"/data_key_v*; do
    shared+=("$(basename "$f")")
done
for svc in "${services[@]}"; do
    files=("pg_$svc.password" "${shared[@]}")
    if [ "$svc" = audit ]; then
        files+=(audit_signing.pem)
    fi
    if [ "$svc" = auth ]; then
        for f in "$master"/auth_pepper_v*; do
            files+=("$(basename "$f")")
        done
    fi
    if [ "$svc" = notification ]; then
        files+=(sendgrid_api_key twilio_auth_token sendgrid_webhook.pub.pem)
    fi
    grant "$svc" "${files[@]}"
done
grant postgres pg_postgres.password pg_auth.password pg_records.password \
    pg_notification.password pg_audit.password
grant redis redis.password

bash "$gen_tls" "$tls"
chown 0:0 "$tls/server.crt"
chmod 0644 "$tls/server.crt"
chown "${uid[gateway]}:${uid[gateway]}" "$tls/server.key"
chmod 0600 "$tls/server.key"

echo "secrets-init: secrets in $secrets (${services[*]} postgres redis), certificate in $tls"
