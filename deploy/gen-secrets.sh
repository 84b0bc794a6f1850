#!/usr/bin/env bash
# gen-secrets.sh DIR - create the local stack's secrets once (never overwrites).
#
# DIR is created with mode 0700, every file with mode 0600. Passwords and keys
# are alphanumeric so they need no quoting inside a libpq conninfo.
#   pg_<svc>.password pg_test.password redis.password   database/redis passwords
#   svc_<svc>.key                                        service credentials
#   data_key_v1                                          AES-256 key, 64 hex chars
#   auth_pepper_v1                                       password pepper (HMAC key), 64 hex chars
#   backup_key_v1                                        backup encryption key (AES-256), 64 hex chars
#   audit_signing.pem / audit_signing.pub.pem            Ed25519 key pair
#   sendgrid_api_key twilio_auth_token                   provider credentials (the stand-in's locally)
#   sendgrid_webhook.pem / sendgrid_webhook.pub.pem      ECDSA P-256 pair: SendGrid signs event webhooks
#                                                        (the stand-in holds the private key)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

# 32 alphanumeric characters from openssl's CSPRNG.
rand_alnum() {
    local out=""
    while [ "${#out}" -lt 32 ]; do
        out+=$(openssl rand -base64 48 | tr -dc 'A-Za-z0-9')
    done
    printf '%s\n' "${out:0:32}"
}

# write_once NAME CMD...: run CMD into DIR/NAME unless the file exists.
write_once() {
    local name=$1 tmp
    shift
    if [ -s "$dir/$name" ]; then
        chmod 0600 "$dir/$name"
        return 0
    fi
    tmp=$(mktemp "$dir/.$name.XXXXXX")
    "$@" > "$tmp"
    chmod 0600 "$tmp"
    mv "$tmp" "$dir/$name"
}

for name in pg_auth pg_records pg_notification pg_audit pg_test redis; do
    write_once "$name.password" rand_alnum
done
for svc in auth records notification audit; do
    write_once "svc_$svc.key" rand_alnum
done
write_once data_key_v1 openssl rand -hex 32
write_once auth_pepper_v1 openssl rand -hex 32
write_once backup_key_v1 openssl rand -hex 32

if [ ! -s "$dir/audit_signing.pem" ]; then
    write_once audit_signing.pem openssl genpkey -algorithm ed25519
    rm -f "$dir/audit_signing.pub.pem"
fi
write_once audit_signing.pub.pem openssl pkey -in "$dir/audit_signing.pem" -pubout

write_once sendgrid_api_key sh -c 'printf "SG.%s\n" "$(openssl rand -hex 24)"'
write_once twilio_auth_token openssl rand -hex 16
if [ ! -s "$dir/sendgrid_webhook.pem" ]; then
    write_once sendgrid_webhook.pem openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256
    rm -f "$dir/sendgrid_webhook.pub.pem"
fi
write_once sendgrid_webhook.pub.pem openssl pkey -in "$dir/sendgrid_webhook.pem" -pubout
