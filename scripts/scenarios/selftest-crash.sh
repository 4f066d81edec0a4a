#!/bin/sh
# Harness self-test: our kernel faults (scenario=fault), panics
# (scenario=panic) and overflows a kernel stack into its guard page
# (scenario=guard-overflow) on purpose. Each case MUST be reported as FAIL
# with the guest's register dump, panic message or overflow report;
# scripts/test checks that they are. Not part of the normal suite
# (scripts/test skips selftest-*).
. scripts/lib/xl.sh

for s in fault panic guard-overflow; do
    name=xenguest-$s
    if ! guest_create "$name" configs/xenguest-a.cfg "cmdline=\"scenario=$s loglevel=info\""; then
        fail "crash-$s" "xl create failed"
        continue
    fi
    guest_unpause "$name"
    guest_wait "$name"
    if why=$(guest_result "$name" "$s"); then
        pass "crash-$s"
    else
        fail "crash-$s" "$why"
        show_log "$name"
    fi
done
finish
