#!/usr/bin/env bash
# gen-tls.sh DIR - self-signed ECDSA P-256 certificate for localhost, created once.
#
# Writes DIR/server.crt and DIR/server.key (0600); SAN DNS:localhost, IP:127.0.0.1.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
if [ -s "$dir/server.crt" ] && [ -s "$dir/server.key" ]; then
    exit 0
fi

umask 077
tmp=$(mktemp -d "$dir/.tls.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$tmp/server.key" -out "$tmp/server.crt" -days 825 -sha256 \
    -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=serverAuth" 2>/dev/null
chmod 0600 "$tmp/server.key"
chmod 0644 "$tmp/server.crt"
mv "$tmp/server.key" "$dir/server.key"
mv "$tmp/server.crt" "$dir/server.crt"
