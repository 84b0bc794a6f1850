# shellcheck shell=bash
# tests/lib/proc.sh - processes seen through /proc; sourced, never run.
#
# proc_alive PID: 0 when PID names a running process; 1 when PID is empty, the process is
# gone, or it is a zombie (it has ended; only its parent's wait is missing).
proc_alive() {
    local stat
    [ -n "${1:-}" ] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}
