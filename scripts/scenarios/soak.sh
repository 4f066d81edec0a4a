#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# soak (issue 14): long runs that must leak nothing.
#   soak-map-10000: B (gnt-map mode=soak) maps, checks and unmaps 16 of
#       A's 256 shared grants at a time, 10,000 times on one thread: one
#       map and one unmap hypercall per mapping (B's kernel checks both),
#       no wrong word, and each kernel back at its baseline.
#   soak-rounds-100 (scripts/scenarios/share.sh, in the suite's boot: its
#       rate of VM exits is low) runs 100 rounds of the share protocol.
#   smp-stress (scripts/scenarios/smp.sh, run from here): 10,000
#       map/touch/unmap cycles of gntdev and anonymous mappings on four
#       threads of a 4-vCPU domain.
# scripts/test runs this file in a boot of its own under single-threaded
# TCG: at this rate of VM exits, multi-threaded TCG's emulation of SVM
# loads Xen's own state into the guest (rip e008:ffff82d0..., in 2 of 2
# soak runs and 1 of 3 smp-stress runs), which no guest can survive.
. scripts/lib/xl.sh
. scripts/lib/share.sh

# soak_detail PAGES: B's soak line and its kernel's counters.
soak_detail() {
    local _k="counter xenguest-b mapper"
    echo "$(sed -n 's/^gnt-map: soak: //p' "$(guest_log xenguest-b)" | tr -d '\r'); $($_k mappings) mappings, $($_k map_hypercalls) map and $($_k unmap_hypercalls) unmap hypercalls; both baselines back"
}

GUEST_TIMEOUT=300
run_case gntdev_mode soak-map-10000 soak 256 soak_detail
finish
rc=$?
SMP_CASES=smp-stress sh scripts/scenarios/smp.sh || rc=1
[ "$rc" -eq 0 ]
