#!/usr/bin/env bash
# sbom.sh [--check] [OUT] - the software bill of materials as CycloneDX 1.5 JSON (make sbom).
#
# Lists, with their versions:
#   - the Debian packages the build, the tests and the local stack use (deploy/deps.sh PHR_DEPS)
#     and those the container images install (every `apt-get install` of deploy/Dockerfile),
#     at the versions dpkg reports on this machine (the images are built from the same
#     Debian 12 mirror); a package not installed here is listed without a version;
#   - the npm packages of the contract tools (proto/package-lock.json) and of the manifest
#     lint (deploy/k8s/tools/package-lock.json) and of the staff console
#     (services/console/package-lock.json: build tools and what its bundle ships), every entry
#     of each lock file.
# The file is deterministic (no time stamp; the serial number is derived from the content),
# so it changes only when a package list, a version or a lock file changes. It is validated
# against the CycloneDX 1.5 JSON Schema before it is written or compared (npm package
# @cyclonedx/cyclonedx-library, installed into deploy/k8s/tools by npm ci when missing).
#
#   tools/sbom.sh            write sbom.cdx.json at the repository root (or OUT)
#   tools/sbom.sh --check    exit 1 (and print the difference) when the committed
#                            sbom.cdx.json differs from what this machine would write: a Debian
#                            security update, a new package or a new lock file makes it stale;
#                            rerun `make sbom` and commit the result.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

check=0
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
out=${1:-sbom.cdx.json}

# The words of the PHR_DEPS=( ... ) array of deploy/deps.sh (comments dropped).
deps_packages() {
    sed -n '/^PHR_DEPS=(/,/^)/p' deploy/deps.sh | sed -e '1d' -e '$d' -e 's/#.*//' | tr -s ' \t' '\n'
}

# The packages of every `apt-get install` in deploy/Dockerfile (continuation lines joined).
image_packages() {
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' deploy/Dockerfile |
        grep -o 'apt-get install[^&]*' |
        sed -e 's/apt-get install//' | tr -s ' \t' '\n' | grep -v '^-'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

{
    deps_packages | sed 's/$/ build/'
    image_packages | sed 's/$/ image/'
} | grep -v '^ ' | sort -u > "$tmp/debs"

# name usage version arch (version and arch "-" when not installed here)
while read -r name usage; do
    [ -n "$name" ] || continue
    line=$(dpkg-query -W -f='${db:Status-Status} ${Version} ${Architecture}\n' "$name" \
        2>/dev/null | grep '^installed ' | head -n 1 || true)
    if [ -n "$line" ]; then
        read -r _ version arch <<< "$line"
    else
        version=- arch=-
    fi
    printf '%s %s %s %s\n' "$name" "$usage" "$version" "$arch"
done < "$tmp/debs" > "$tmp/debs.versions"

python3 - "$tmp/debs.versions" proto/package-lock.json deploy/k8s/tools/package-lock.json \
    services/console/package-lock.json > "$tmp/sbom.json" <<'PY'
import hashlib
import json
import os
import sys
import uuid
from urllib.parse import quote

debs_file, *locks = sys.argv[1:]

debs = {}
for line in open(debs_file):
    name, usage, version, arch = line.split()
    d = debs.setdefault(name, {"usage": set(), "version": version, "arch": arch})
    d["usage"].add(usage)

components = []
for name in sorted(debs):
    d = debs[name]
    c = {"type": "library", "bom-ref": "deb:" + name, "name": name}
    purl = "pkg:deb/debian/" + quote(name, safe="")
    if d["version"] != "-":
        c["version"] = d["version"]
        purl += "@" + quote(d["version"], safe="")
        purl += "?arch=" + d["arch"] + "&distro=debian-12"
    else:
        purl += "?distro=debian-12"
    c["purl"] = purl
    props = [{"name": "phr:source", "value": "debian"}]
    for u in sorted(d["usage"]):
        where = "deploy/deps.sh" if u == "build" else "deploy/Dockerfile"
        props.append({"name": "phr:listed-in", "value": where})
    if d["version"] == "-":
        props.append({"name": "phr:installed", "value": "false"})
    c["properties"] = props
    components.append(c)

for lock in locks:
    if not os.path.exists(lock):
        continue
    data = json.load(open(lock))
    tool = os.path.dirname(lock)
    for key in sorted(data.get("packages", {})):
        if not key:
            continue
        p = data["packages"][key]
        name = p.get("name") or key.split("node_modules/")[-1]
        version = p.get("version")
        if version is None:
            continue
        if name.startswith("@"):
            scope, base = name[1:].split("/", 1)
            purl = "pkg:npm/%40" + quote(scope, safe="") + "/" + quote(base, safe="")
        else:
            purl = "pkg:npm/" + quote(name, safe="")
        purl += "@" + quote(version, safe="")
        c = {
            "type": "library",
            "bom-ref": "npm:" + tool + ":" + key,
            "name": name,
            "version": version,
            "purl": purl,
            "scope": "excluded" if p.get("dev") else "required",
        }
        if p.get("license"):
            c["licenses"] = [{"expression": p["license"]}]
        if p.get("integrity", "").startswith("sha512-"):
            import base64
            digest = base64.b64decode(p["integrity"][7:]).hex()
            c["hashes"] = [{"alg": "SHA-512", "content": digest}]
        c["properties"] = [
            {"name": "phr:source", "value": "npm"},
            {"name": "phr:listed-in", "value": lock},
        ]
        components.append(c)

bom = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "version": 1,
    "metadata": {
        "tools": {
            "components": [{"type": "application", "name": "tools/sbom.sh"}],
        },
        "component": {
            "type": "application",
            "bom-ref": "phr",
            "name": "phr",
            "description": "PHR platform: auth, records, notification and audit services, "
            "nginx gateway, operator CLI phrctl",
        },
    },
    "components": components,
}
body = json.dumps(bom, indent=2, ensure_ascii=False, sort_keys=False)
serial = uuid.UUID(bytes=hashlib.sha256(body.encode()).digest()[:16], version=5)
bom = {"bomFormat": bom["bomFormat"], "specVersion": bom["specVersion"],
       "serialNumber": "urn:uuid:" + str(serial), **{k: v for k, v in bom.items()
                                                     if k not in ("bomFormat", "specVersion")}}
print(json.dumps(bom, indent=2, ensure_ascii=False))
PY

# Valid CycloneDX 1.5 (the official JSON Schema, deploy/k8s/tools/validate-sbom.mjs).
tools=deploy/k8s/tools
if [ ! -d "$tools/node_modules" ]; then
    npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error >/dev/null
fi
node "$tools/validate-sbom.mjs" "$tmp/sbom.json" "the generated bill of materials" >&2

if [ "$check" -eq 1 ]; then
    if [ ! -f "$out" ]; then
        echo "sbom: $out missing (run make sbom)" >&2
        exit 1
    fi
    if ! diff -u "$out" "$tmp/sbom.json" > "$tmp/diff"; then
        echo "sbom: $out is stale (run make sbom and commit it):" >&2
        grep -E '^[-+] +"(name|version)"' "$tmp/diff" | head -n 40 >&2 || true
        exit 1
    fi
    echo "sbom: $out is current ($(grep -c '"bom-ref": "\(deb\|npm\):' "$out") components)"
    exit 0
fi
mv "$tmp/sbom.json" "$out"
chmod 0644 "$out"
echo "sbom: wrote $out ($(grep -c '"bom-ref": "\(deb\|npm\):' "$out") components)"
