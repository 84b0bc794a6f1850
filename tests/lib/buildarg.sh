# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source it
# tests/lib/buildarg.sh - the preamble of a suite run as `SCRIPT BUILD_DIR`; sourced, never run.
#
# buildarg "$@" (the suite's arguments): exits 2 with the usage unless there is exactly one;
# changes to the repository root and sets root (physical path), build (BUILD_DIR, absolute)
# and PY (Debian's python3, which has python3-h2 and python3-yaml).
buildarg() {
    if [ $# -ne 1 ]; then
        echo "usage: $0 BUILD_DIR" >&2
        exit 2
    fi
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
    root=$(pwd -P)
    case $1 in
        /*) build=$1 ;;
        *) build=$root/$1 ;;
    esac
    PY=/usr/bin/python3
}
