#!/usr/bin/env bash
# Usage: tools/lint.sh                                   (make lint)
#
# Static checks of the C sources, each printing one summary line:
#   1. banned functions (sprintf vsprintf strcpy strcat strncat gets atoi)
#   2. clang-format-14 --dry-run --Werror with the checked-in .clang-format
#   3. cppcheck (warning, performance, portability) on common services tools
#   4. clang-tidy-14 with the checked-in .clang-tidy on common/*.c services/*/*.c
# Every tool runs even when an earlier one fails; the exit status is non-zero
# when any of them failed. LINT_JOBS (default: number of CPUs) sets the
# clang-tidy parallelism.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

PKGS=(libevent libevent_pthreads libevent_openssl libnghttp2 hiredis json-c libpq openssl)
JOBS=${LINT_JOBS:-$(nproc 2>/dev/null || echo 2)}
LOG_DIR=${TMPDIR:-/tmp}/phr-lint.$$
mkdir -p "$LOG_DIR"
trap 'rm -rf "$LOG_DIR"' EXIT

failed=0

summary() { # name status detail
    printf 'lint: %-16s %s%s\n' "$1" "$2" "${3:+ ($3)}"
}

need() {
    if ! command -v "$1" >/dev/null; then
        summary "$2" FAILED "$1 not installed"
        failed=1
        return 1
    fi
}

# All C files of the project (not build output or var/).
mapfile -t c_files < <(
    {
        find common services tools tests -type f -name '*.[ch]' 2>/dev/null
        find . -maxdepth 1 -type f -name '*.[ch]' 2>/dev/null | sed 's|^\./||'
    } | sort -u
)

# ---- 1. banned functions ---------------------------------------------------
# \b keeps snprintf/vsnprintf/fgets/strtol out: the letter before the name
# is part of the same word.
banned='\b(sprintf|vsprintf|strcpy|strcat|strncat|gets|atoi)[[:space:]]*\('
if [ ${#c_files[@]} -gt 0 ]; then
    grep -nE "$banned" "${c_files[@]}" >"$LOG_DIR/banned" 2>/dev/null
fi
if [ -s "$LOG_DIR/banned" ]; then
    sed 's/^/    /' "$LOG_DIR/banned"
    summary "banned-functions" FAILED "$(wc -l <"$LOG_DIR/banned") use(s)"
    failed=1
else
    summary "banned-functions" ok "${#c_files[@]} files"
fi

# ---- 2. clang-format -------------------------------------------------------
if need clang-format-14 clang-format; then
    bad=0
    for f in "${c_files[@]}"; do
        if ! clang-format-14 --dry-run --Werror "$f" >"$LOG_DIR/fmt" 2>&1; then
            bad=$((bad + 1))
            echo "    $f: $(grep -c 'error:' "$LOG_DIR/fmt") place(s) differ from .clang-format"
        fi
    done
    if [ $bad -gt 0 ]; then
        summary "clang-format" FAILED "$bad file(s); run 'make format'"
        failed=1
    else
        summary "clang-format" ok "${#c_files[@]} files"
    fi
fi

# ---- 3. cppcheck -----------------------------------------------------------
if need cppcheck cppcheck; then
    dirs=()
    for d in common services tools; do
        [ -d "$d" ] && dirs+=("$d")
    done
    cppcheck --enable=warning,performance,portability --error-exitcode=1 --inline-suppr -q \
        --std=c11 -Icommon -j "$JOBS" "${dirs[@]}" >"$LOG_DIR/cppcheck" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        sed 's/^/    /' "$LOG_DIR/cppcheck"
        summary "cppcheck" FAILED "exit $rc"
        failed=1
    else
        summary "cppcheck" ok
    fi
fi

# ---- 4. clang-tidy ---------------------------------------------------------
if need clang-tidy-14 clang-tidy; then
    mapfile -t tidy_files < <(ls common/*.c services/*/*.c 2>/dev/null)
    read -r -a pkg_cflags <<<"$(pkg-config --cflags "${PKGS[@]}" 2>/dev/null)"
    export TIDY_LOG_DIR="$LOG_DIR"
    # shellcheck disable=SC2016 # the sh -c script expands its own arguments
    printf '%s\n' "${tidy_files[@]}" |
        xargs -r -P "$JOBS" -I{} sh -c \
            'f=$1; shift; out="$TIDY_LOG_DIR/tidy.$(echo "$f" | tr / _)"
             if ! clang-tidy-14 --quiet "$f" -- "$@" >"$out" 2>&1; then echo "$f" >"$out.failed"; fi' \
            sh {} -std=c11 -D_GNU_SOURCE -Icommon "${pkg_cflags[@]}"
    nfail=$(find "$LOG_DIR" -name 'tidy.*.failed' | wc -l)
    if [ "$nfail" -gt 0 ]; then
        for f in "$LOG_DIR"/tidy.*.failed; do
            grep -E '(warning|error):' "${f%.failed}" | sed 's/^/    /'
        done
        summary "clang-tidy" FAILED "$nfail of ${#tidy_files[@]} file(s)"
        failed=1
    else
        summary "clang-tidy" ok "${#tidy_files[@]} files"
    fi
fi

exit $failed
