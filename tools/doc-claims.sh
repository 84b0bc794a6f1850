#!/usr/bin/env bash
# Usage: tools/doc-claims.sh [DOC ...]     (default: docs/security-whitepaper.md and .en.md)
#
# Checks that every test a document cites exists. A citation is a code span (backticks) that starts
# with "tests/":
#   `tests/<path>::<case>`  the file exists and holds the case:
#       tests/integration/*.c  an entry of a case table: {"<case>", fn} or {"...", <case>}
#       tests/unit/*.c         a cmocka_unit_test...(<case> entry
#       other files (*.sh ...) a string literal starting with <case> ("<case>...")
#   `tests/<path>`          the file exists.
# With no arguments, the two documents must also cite the same tests (twins).
# Prints each missing citation and exits 1 when any is missing (2 on usage errors), else 0.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

docs=("$@")
if [ "${#docs[@]}" -eq 0 ]; then
    docs=(docs/security-whitepaper.md docs/security-whitepaper.en.md)
fi

# A code span that starts with tests/ (a span never crosses a line here).
# shellcheck disable=SC2016 # backticks are literal here
cite_re='`tests/[^`]+`'
checked=0
missing=()

# has_case FILE CASE: 0 when FILE declares test case CASE.
has_case() {
    local file=$1 name=$2
    case $file in
    tests/integration/*.c)
        grep -qF "{\"$name\"," "$file" && return 0
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || return 1
        grep -qE "(^|[[:space:],])${name}\},?[[:space:]]*$" "$file"
        ;;
    tests/unit/*.c)
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || return 1
        grep -qE "cmocka_unit_test[A-Za-z_]*\([[:space:]]*${name}[[:space:]]*[,)]" "$file"
        ;;
    *)
        grep -qF "\"$name" "$file"
        ;;
    esac
}

for doc in "${docs[@]}"; do
    if [ ! -f "$doc" ]; then
        echo "doc-claims: $doc: no such file" >&2
        exit 2
    fi
    while IFS= read -r cite; do
        checked=$((checked + 1))
        file=${cite%%::*}
        if [ "$file" = "$cite" ]; then
            [ -e "$file" ] || missing+=("$doc: $cite (no such file)")
            continue
        fi
        name=${cite#*::}
        if [ ! -f "$file" ]; then
            missing+=("$doc: $cite (no such file)")
        elif [ -z "$name" ] || ! has_case "$file" "$name"; then
            missing+=("$doc: $cite (no such test case)")
        fi
    done < <(grep -oE "$cite_re" "$doc" | tr -d '`')
done

# The Japanese document and its English twin must cite the same tests.
if [ "$#" -eq 0 ] && [ -f "${docs[0]}" ] && [ -f "${docs[1]}" ]; then
    while IFS= read -r line; do
        missing+=("twin: $line")
    done < <(comm -3 <(grep -oE "$cite_re" "${docs[0]}" | tr -d '`' | sort -u) \
        <(grep -oE "$cite_re" "${docs[1]}" | tr -d '`' | sort -u) |
        sed -E "s|^\t(.*)|\1 (only in ${docs[1]})|; t; s|^(.*)$|\1 (only in ${docs[0]})|")
fi

if [ "$checked" -eq 0 ]; then
    echo "doc-claims: no test citations found in ${docs[*]}" >&2
    exit 1
fi
if [ "${#missing[@]}" -ne 0 ]; then
    printf 'doc-claims: missing: %s\n' "${missing[@]}"
    echo "doc-claims: ${#missing[@]} of $checked citations missing"
    exit 1
fi
echo "doc-claims: all $checked citations found"
