#!/usr/bin/env bash
# Usage: tools/deploy-doc-check.sh [DOC ...]     (default: deploy/README.md)
#
# Checks that every command of an operator document is run by a test, in the spirit of
# tools/doc-claims.sh. Each fenced code block must follow (on the nearest non-blank line) a
#   <!-- tested-by: FILE[; FROM => TO ...] -->
# comment naming the test (or CI file) that runs its commands. Every command of the block (one
# logical line: `\` continuations joined; blank lines and # comments skipped; a leading "$ "
# dropped) must occur in FILE, compared after
#   - each FROM in the command is replaced by TO (how the test spells what the document shows:
#     `phrctl => $PHRCTL`, `https://127.0.0.1:8443 => $gw`),
#   - quotes are dropped and white space (also `\` line continuations of FILE) collapsed.
# Prints each command that is not found and "N passed, N failed" (commands); exit 1 when a
# command or a tag is missing, 2 on usage errors, else 0.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

docs=("$@")
if [ "${#docs[@]}" -eq 0 ]; then
    docs=(deploy/README.md)
fi
for d in "${docs[@]}"; do
    [ -f "$d" ] || { echo "deploy-doc-check: no such document: $d" >&2; exit 2; }
done

python3 - "${docs[@]}" <<'EOF'
import os, re, sys

TAG = re.compile(r"^<!--\s*tested-by:\s*(.*?)\s*-->$")


def norm(text):
    text = re.sub(r"\\\n", " ", text)
    text = text.replace('"', "").replace("'", "")
    return re.sub(r"\s+", " ", text).strip()


passed = failed = 0
for doc in sys.argv[1:]:
    lines = open(doc, encoding="utf-8").read().split("\n")
    i = 0
    last = ""  # the nearest non-blank line before the current one
    while i < len(lines):
        line = lines[i]
        if not line.startswith("```"):
            if line.strip():
                last = line.strip()
            i += 1
            continue
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        block = lines[start:j]
        i = j + 1
        m = TAG.match(last)
        last = ""
        if not m:
            print(f"{doc}:{start}: code block without a <!-- tested-by: FILE --> comment")
            failed += 1
            continue
        parts = [p.strip() for p in m.group(1).split(";")]
        test, aliases = parts[0], []
        for p in parts[1:]:
            if "=>" not in p:
                print(f"{doc}:{start - 1}: alias without '=>': {p}")
                failed += 1
                continue
            a, b = (s.strip() for s in p.split("=>", 1))
            aliases.append((a, b))
        if not os.path.isfile(test):
            print(f"{doc}:{start - 1}: tested-by names a missing file: {test}")
            failed += 1
            continue
        haystack = norm(open(test, encoding="utf-8", errors="replace").read())
        cmd, first = "", start
        for k, text in enumerate(block + [""]):
            if not cmd:
                first = start + k + 1
            if text.rstrip().endswith("\\"):
                cmd += text.rstrip()[:-1] + " "
                continue
            cmd += text
            c = cmd.strip()
            cmd = ""
            if not c or c.startswith("#"):
                continue
            if c.startswith("$ "):
                c = c[2:]
            want = c
            for a, b in aliases:
                want = want.replace(a, b)
            if norm(want) in haystack:
                passed += 1
            else:
                print(f"{doc}:{first}: not run by {test}: {c}")
                failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
EOF
