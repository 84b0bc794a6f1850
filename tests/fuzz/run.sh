#!/usr/bin/env bash
# Usage: tests/fuzz/run.sh [fuzz_name ...]        (make fuzz)
#
# Builds every tests/fuzz/fuzz_*.c (or only the named ones) as a clang-14
# libFuzzer binary with ASan+UBSan, linked with common/*.c (as an archive; a
# target named fuzz_<service>_* also with services/<service>/*.c but main.c,
# as the unit tests are), and runs
# each for FUZZ_SECONDS (default 30; the long mode is 300 or more, `make fuzz-long`)
# on a temporary copy of its seed corpus
# tests/fuzz/corpus/<name without fuzz_>/ (the repository copy is never
# modified). A tests/fuzz/<name>.dict is passed as -dict when present.
# Crash inputs go to build-fuzz/artifacts/. Prints one line per target and
# exits non-zero when any target fails to build or finds a crash.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 2

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
CC_FUZZ=${CC_FUZZ:-clang-14}
OUT=${FUZZ_OUT:-build-fuzz} # FUZZ_OUT: another build directory
PKGS=(libevent libevent_pthreads libevent_openssl libnghttp2 hiredis json-c libpq openssl)
SAN="address,undefined"
CFLAGS_FUZZ=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all -Icommon)

if ! [[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] || [ "$FUZZ_SECONDS" -lt 1 ]; then
    echo "fuzz: FUZZ_SECONDS must be a positive integer" >&2
    exit 2
fi
if ! command -v "$CC_FUZZ" >/dev/null; then
    echo "fuzz: $CC_FUZZ not found (apt-get install clang-14)" >&2
    exit 2
fi
if ! pkg-config --exists "${PKGS[@]}"; then
    echo "fuzz: missing development packages: run 'make deps'" >&2
    exit 2
fi
read -r -a PKG_CFLAGS <<<"$(pkg-config --cflags "${PKGS[@]}")"
read -r -a PKG_LIBS <<<"$(pkg-config --libs "${PKGS[@]}")"

mkdir -p "$OUT/obj" "$OUT/bin" "$OUT/artifacts" "$OUT/logs"

# archive LIB SRC...: compiles the sources once with coverage instrumentation (no fuzzer
# main) into $OUT/obj/<dir>/ and archives them, as in the Makefile: a target links only
# the objects it needs.
archive() {
    local lib=$1 src obj dir
    shift
    local objs=()
    for src in "$@"; do
        dir=$(dirname "$src")
        obj="$OUT/obj/${dir//\//_}/$(basename "${src%.c}").o"
        mkdir -p "$(dirname "$obj")"
        if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] ||
            [ -n "$(find common "$dir" -name '*.h' -newer "$obj")" ]; then
            if ! "$CC_FUZZ" "${CFLAGS_FUZZ[@]}" -fsanitize=fuzzer-no-link,$SAN \
                "${PKG_CFLAGS[@]}" -c "$src" -o "$obj"; then
                echo "fuzz: cannot compile $src" >&2
                return 1
            fi
        fi
        objs+=("$obj")
    done
    rm -f "$lib"
    ar rcs "$lib" "${objs[@]}"
}
lib="$OUT/libcommon-fuzz.a"
archive "$lib" common/*.c || exit 1

if [ $# -gt 0 ]; then
    targets=()
    for t in "$@"; do
        targets+=("tests/fuzz/${t%.c}.c")
    done
else
    targets=(tests/fuzz/fuzz_*.c)
fi
if [ ! -e "${targets[0]}" ]; then
    echo "fuzz: no targets in tests/fuzz/" >&2
    exit 1
fi

failed=0
for src in "${targets[@]}"; do
    name=$(basename "${src%.c}")
    short=${name#fuzz_}
    bin="$OUT/bin/$name"
    log="$OUT/logs/$name.log"

    # fuzz_<service>_*: the service's modules too (not main.c)
    libs=()
    svc=${short%%_*}
    if [ "$svc" != "$short" ] && [ -d "services/$svc" ]; then
        svc_srcs=()
        for s in services/"$svc"/*.c; do
            [ "$(basename "$s")" = main.c ] || svc_srcs+=("$s")
        done
        if ! archive "$OUT/lib$svc-fuzz.a" "${svc_srcs[@]}"; then
            echo "$name: BUILD FAILED"
            failed=1
            continue
        fi
        libs+=("$OUT/lib$svc-fuzz.a")
    fi
    if ! "$CC_FUZZ" "${CFLAGS_FUZZ[@]}" -fsanitize=fuzzer,$SAN "${PKG_CFLAGS[@]}" "$src" \
        "${libs[@]}" "$lib" -o "$bin" "${PKG_LIBS[@]}" -largon2 -lunistring -lpthread -lm; then
        echo "$name: BUILD FAILED"
        failed=1
        continue
    fi

    work=$(mktemp -d "${TMPDIR:-/tmp}/phr-fuzz-$short.XXXXXX")
    if [ -d "tests/fuzz/corpus/$short" ]; then
        cp -R "tests/fuzz/corpus/$short/." "$work/"
    fi
    dict=()
    if [ -f "tests/fuzz/$name.dict" ]; then
        dict=(-dict="tests/fuzz/$name.dict")
    fi

    "$bin" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$name-" "${dict[@]}" \
        "$work" >"$log" 2>&1
    rc=$?
    rm -rf "$work"

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-unknown}
    if [ $rc -eq 0 ]; then
        echo "$name: ok, $execs execs in ${FUZZ_SECONDS}s"
    else
        failed=1
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "$name: FAILED (exit $rc) after $execs execs; input ${art:-none}; log $log"
        grep -m 3 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$log" |
            sed 's/^/    /'
    fi
done
exit $failed
