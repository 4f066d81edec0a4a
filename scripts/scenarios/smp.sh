#!/bin/sh
# smp: domains with vcpus=4. smp-boot: every vCPU is started and runs a
# kernel thread of its own, its timer fires and an IPI reaches it.
# smp-preempt: more user processes spinning forever than vCPUs, and two
# short programs still finish; the spinners are then killed.
# The emulated host has 2 CPUs (QEMU -smp 2): 4 vCPUs oversubscribe them,
# which is the harder case for preemption and IPIs.
. scripts/lib/xl.sh

# run SCENARIO: boots a 4-vCPU guest with scenario=SCENARIO.
run() {
    name=xenguest-smp
    guest_create "$name" configs/xenguest-a.cfg "cmdline=\"scenario=$1 loglevel=info\"" \
        'vcpus=4' 'memory=64' || { fail "$1" "create"; return; }
    guest_unpause "$name"
    guest_wait "$name"
    log=$(guest_log "$name")
    grep -h '^xenguest: \|^smp\|^process \|^threads' "$log" | sed 's/\r$//; s/^/  /'
    if why=$(guest_result "$name" "$1"); then
        pass "$1"
    else
        fail "$1" "$why"
        show_log "$name"
    fi
}

for c in ${SMP_CASES:-smp-boot smp-preempt smp-threads}; do
    run "$c"
done
finish
