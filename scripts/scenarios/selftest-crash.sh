#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# Harness self-test: our kernel faults (scenario=fault), panics
# (scenario=panic, under PVH and under PV) and overflows a kernel stack into its guard page
# (scenario=guard-overflow) or triple-faults (scenario=triple-fault) on
# purpose, prints a PASS line and then crashes
# (pass-then-crash) or hangs (pass-then-hang), and one case overruns its
# time budget. Every case MUST be reported as FAIL, with the guest's
# register dump, panic message or vCPU state, and the case after the
# overrun must still run; then dom0 goes silent, and the harness must stop
# the host as wedged. scripts/test checks all of it.
# Not part of the normal suite (scripts/test skips selftest-*).
. scripts/lib/xl.sh

# crash_case CASE SCENARIO [XL OVERRIDE...]: a guest that must crash;
# CASE must FAIL.
crash_case() {
    local _name _why _case _scn
    _case=$1 _scn=$2
    shift 2
    _name=xenguest-$_scn
    if ! guest_create "$_name" configs/xenguest-a.cfg "cmdline=\"scenario=$_scn loglevel=info\"" "$@"; then
        fail "$_case" "xl create failed"
        return
    fi
    guest_unpause "$_name"
    guest_wait "$_name"
    if _why=$(guest_result "$_name" "$_scn"); then
        pass "$_case"
    else
        fail "$_case" "$_why"
        show_log "$_name"
    fi
}

# stuck_case CASE: a guest that never ends, waited for far longer than
# the case's budget.
stuck_case() {
    guest_create xenguest-stuck configs/xenguest-a.cfg 'cmdline="scenario=pass-then-hang"' ||
        { fail "$1" "xl create failed"; return; }
    guest_unpause xenguest-stuck
    guest_wait xenguest-stuck 3600
    pass "$1"
}

run_case crash_case crash-fault fault
run_case crash_case crash-panic panic
# The same panic in a PV domain: its message too reaches the console.
run_case crash_case crash-pv-panic panic 'type="pv"'
run_case crash_case crash-guard-overflow guard-overflow
run_case crash_case crash-triple-fault triple-fault
run_case crash_case crash-pass-then-crash pass-then-crash
(
    GUEST_TIMEOUT=15
    run_case crash_case crash-pass-then-hang pass-then-hang
)
(
    CASE_BUDGET=20
    run_case stuck_case crash-budget
)
# The domains of the stopped case are gone.
if [ -n "$(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0')" ]; then
    fail crash-budget-cleanup "domains left after the stopped case"
    xl list | sed 's/^/  /'
    destroy_all
else
    pass crash-budget-cleanup
fi
finish
rc=$?
# A wedged host: dom0 goes silent (its heartbeat stopped, nothing more
# printed); scripts/xenhost must stop it after its stall limit (status 126)
# instead of waiting for the boot's time limit.
echo "crash-host-stall: dom0 goes silent"
kill "$(cat /tmp/xenhost-heartbeat.pid)" 2>/dev/null
sleep 100000
[ "$rc" -eq 0 ]
