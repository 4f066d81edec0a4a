#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# 64-bit PV: the same kernel image booted by Xen's PV loader
# (configs/xenguest-a-pv.cfg, -b-pv.cfg; kernel/src/arch/pv.rs).
# pv-banner: both PV domains boot at once, map their RAM through
# mmu_update, set up the console, xenstore, event channels, the timer and
# the grant table, and print a banner naming their domain, "(PV)" and most
# of their 32 MiB; each powers off with its scenario's PASS line, and Xen
# (run with loglvl=all guest_loglvl=all) logs no page-table or grant
# error for either domain.
# pv-pmap, pv-user-*: the kernel's pmap test and the user-mode cases of
# docs/user-mode.md (scripts/scenarios/process.sh) in a PV domain;
# pv-user-populate also wants at least 64 page-table writes per
# mmu_update call for the populate of 1024 pages and for their munmap.
# pv-smp-boot, pv-smp-preempt, pv-smp-threads: scripts/scenarios/smp.sh's
# cases in a PV domain with 4 vCPUs (TLB shootdowns by IPI and
# MMUEXT_INVLPG_LOCAL / TLB_FLUSH_LOCAL on each vCPU).
# pv-gntdev-bad: gntdev's bad-input programs (scripts/scenarios/gntdev.sh)
# in PV.
# pv-pvh-gntdev-1024: domain A in PV shares 1024 pages through gntdev
# (ALLOC_GREF: grant entries name machine frames), domain B in PVH maps
# them (one map hypercall, one fault), as gntdev-1024 does between two
# PVH domains. pv-gntdev-1, -1024, -65536: both domains in PV; B's
# populate maps every grant into its process's page table with one
# GNTTABOP_map_grant_ref (GNTMAP_contains_pte at each entry), its exit
# unmaps them by entry with one unmap (kernel/src/arch/pv_grant.rs).
# pvh-pv-gntdev-1024: a PVH sharer, a PV mapper. Each also fails on
# Xen's page-table or grant complaints about either domain, and unless
# B's exit took one unmap hypercall per mapping.
. scripts/lib/xl.sh
. scripts/lib/share.sh

# pv_xen_errors DOMID: the lines Xen logged against DOMID's page tables or
# grants (mm.c's and grant_table.c's complaints name the domain as dN).
pv_xen_errors() {
    xl dmesg 2>/dev/null | tr -d '\r' | grep "d${1}[v ]" |
        grep -i 'mm\.c\|grant_table\.c\|bad l[1-4]\|mmu_update\|page_type\|pinned\|gnttab' || true
}

# pv_banner CASE: boots both PV domains with scenario=banner.
pv_banner() {
    local _n _id _err _why _kib _domid _pv
    for _n in xenguest-a-pv xenguest-b-pv; do
        guest_create "$_n" "configs/$_n.cfg" || { fail "$1" "xl create $_n"; return; }
    done
    for _n in xenguest-a-pv xenguest-b-pv; do
        guest_unpause "$_n"
    done
    _err=
    for _n in xenguest-a-pv xenguest-b-pv; do
        guest_wait "$_n" || _err="$_err $_n hung;"
    done
    for _n in xenguest-a-pv xenguest-b-pv; do
        _id=$(guest_created_domid "$_n")
        grep -h '^xenguest: ' "$(guest_log "$_n")" | sed 's/\r$//; s/^/  /'
        _domid=$(counter "$_n" banner domid)
        _kib=$(counter "$_n" banner ram_kib)
        _pv=$(counter "$_n" banner pv)
        if ! _why=$(guest_result "$_n" banner); then
            _err="$_err $_n: $_why;"
        elif [ "$_domid" != "$_id" ] || [ "$_pv" != 1 ]; then
            _err="$_err $_n: banner names domain ${_domid:-none} pv=${_pv:-none}, expected $_id pv=1;"
        elif [ "${_kib:-0}" -lt 30000 ] || [ "${_kib:-0}" -gt 32768 ]; then
            _err="$_err $_n: ${_kib:-no} KiB for a 32 MiB domain;"
        fi
        _why=$(pv_xen_errors "$_id")
        if [ -n "$_why" ]; then
            echo "$_why" | head -n 20 | sed 's/^/  xen | /'
            _err="$_err Xen logged page-table or grant errors for $_n;"
        fi
    done
    if [ -n "$_err" ]; then
        fail "$1" "${_err% ;}"
        for _n in xenguest-a-pv xenguest-b-pv; do
            show_log "$_n"
            # Xen's own words on the domain (a crash's reason and state).
            xl dmesg 2>/dev/null | tr -d '\r' | grep "d$(guest_created_domid "$_n")[v: ]" |
                tail -n 40 | sed 's/^/  xen | /'
        done
    else
        pass "$1 (domains $(guest_created_domid xenguest-a-pv) and $(guest_created_domid xenguest-b-pv))"
    fi
}

# pv_user CASE SCENARIO [XL OVERRIDE...]: one PV domain runs SCENARIO (a user-mode case of
# docs/user-mode.md): processes on PV page tables (mmu_update), system
# calls through Xen's syscall callback, returns to user mode by the iret
# hypercall; passes on the scenario's PASS line and a poweroff, with no
# page-table error in Xen's log.
pv_user() {
    local _name _why _id _err _per _per2 _case _scn
    _name=xenguest-a-pv
    _case=$1 _scn=$2
    shift 2
    guest_create "$_name" "configs/$_name.cfg" "cmdline=\"scenario=$_scn loglevel=info\"" "$@" ||
        { fail "$_case" "create"; return; }
    set -- "$_case" "$_scn"
    guest_unpause "$_name"
    guest_wait "$_name"
    _id=$(guest_created_domid "$_name")
    grep -h '^process \|^pmap\|^populate\|^hello\|^anon\|^cow\|^efault\|^munmap\|^mprotect\|^gnt-bad\|^bad:\|^smp\|^COUNTERS pv-' "$(guest_log "$_name")" |
        sed 's/\r$//; s/^/  /'
    _err=$(pv_xen_errors "$_id")
    # Bulk page-table work goes to Xen in batches: the populate of 1024
    # pages and their munmap (tools/utest/src/bin/populate.rs).
    _per=$(counter "$_name" populate pv_populate_per_call)
    _per2=$(counter "$_name" populate pv_munmap_per_call)
    if ! _why=$(guest_result "$_name" "$2"); then
        fail "$1" "$_why"
    elif [ -n "$_err" ]; then
        fail "$1" "Xen logged page-table or grant errors"
    elif [ "$2" = user-populate ] && { [ "${_per:-0}" -lt 64 ] || [ "${_per2:-0}" -lt 64 ]; }; then
        fail "$1" "page-table writes per mmu_update call: populate ${_per:-none}, munmap ${_per2:-none}; fewer than 64"
    else
        pass "$1"
        return
    fi
    show_log "$_name"
    xl dmesg 2>/dev/null | tr -d '\r' | grep "d${_id}[v: ]" | tail -n 40 | sed 's/^/  xen | /'
}

# pv_gntdev_pair CASE PAGES [XL OVERRIDE...]: gntdev_pair (scripts/lib/
# share.sh) with the domain types PAIR_A_TYPE and PAIR_B_TYPE name: gnt-map
# in B fails unless its mapping took one fault and one map hypercall; the
# case also fails unless B's exit took one unmap hypercall per mapping
# and Xen logged no page-table or grant error for either domain.
pv_gntdev_pair() {
    local _case _pages _maps _calls _faults _unmaps _err _d
    _case=$1 _pages=$2
    shift 2
    pair_run "$_case" gntdev-map "scenario=gntdev-share pages=$_pages" "$@" || return
    show_lines xenguest-a xenguest-b
    _maps=$(counter xenguest-b mapper mappings)
    _calls=$(counter xenguest-b gnt-map map_hypercalls)
    _faults=$(counter xenguest-b gnt-map faults)
    _unmaps=$(counter xenguest-b mapper unmap_hypercalls)
    _err=
    for _d in "$PAIR_A_ID" "$PAIR_B_ID"; do
        _err="$_err$(pv_xen_errors "$_d")"
    done
    if guest_result xenguest-a gntdev-share >/dev/null && guest_result xenguest-b gntdev-map >/dev/null; then
        if [ -n "$_err" ]; then
            echo "$_err" | head -n 20 | sed 's/^/  xen | /'
            fail "$_case" "Xen logged page-table or grant errors"
            return
        elif [ "${_unmaps:-x}" != "${_maps:-y}" ]; then
            fail "$_case" "${_unmaps:-no} unmap hypercall(s) for ${_maps:-no} mapping(s)"
            show_log xenguest-b
            return
        fi
    fi
    pair_judge "$_case" gntdev-share gntdev-map \
        "$_pages pages: $_maps mapping(s), $_calls map hypercall(s), $_faults fault(s), $_unmaps unmap hypercall(s)"
}

if [ "$1" = pv-gntdev-65536 ]; then
    PAIR_A_TYPE=pv
    PAIR_B_TYPE=pv
    GUEST_TIMEOUT=300
    CASE_BUDGET=660
    run_case pv_gntdev_pair pv-gntdev-65536 65536 memory=320 max_grant_frames=256
    finish
    exit
fi
run_case pv_banner pv-banner
for c in pmap user-hello user-anon user-cow user-munmap user-mprotect user-efault user-populate; do
    run_case pv_user "pv-$c" "$c"
done
run_case pv_user pv-gntdev-bad gntdev-bad
# Four vCPUs (each started with a PV vcpu_guest_context): each runs a
# kernel thread, its timer fires and an IPI reaches it; then user
# processes preempted on them, and threads of one process faulting at
# once.
run_case pv_user pv-smp-boot smp-boot 'vcpus=4' 'memory=64'
run_case pv_user pv-smp-preempt smp-preempt 'vcpus=4' 'memory=64'
run_case pv_user pv-smp-threads smp-threads 'vcpus=4' 'memory=64'
# A PV sharer, a PVH mapper: A's gnt-share grants 1024 pages (their
# machine frames in its grant entries), B maps them with one populate.
PAIR_A_TYPE=pv
run_case pv_gntdev_pair pv-pvh-gntdev-1024 1024
# Both in PV: B's populate maps every grant straight into its process's
# page table (GNTMAP_contains_pte at each entry's machine address) with
# one map hypercall, and its exit unmaps them by entry with one unmap
# hypercall (kernel/src/arch/pv_grant.rs).
PAIR_B_TYPE=pv
run_case pv_gntdev_pair pv-gntdev-1 1
run_case pv_gntdev_pair pv-gntdev-1024 1024
# 65536 pages (256 MiB), as gntdev-65536 (scripts/scenarios/gntdev.sh)
# but with 320 MiB: without 2 MiB entries a PV mapping of 256 MiB takes
# 128 page-table pages of its domain's own RAM (`scripts/xenhost
# scripts/scenarios/pv.sh pv-gntdev-65536` runs it alone).
(
    GUEST_TIMEOUT=300
    CASE_BUDGET=660
    run_case pv_gntdev_pair pv-gntdev-65536 65536 memory=320 max_grant_frames=256
)
# A PVH sharer, a PV mapper.
PAIR_A_TYPE=
run_case pv_gntdev_pair pvh-pv-gntdev-1024 1024
PAIR_B_TYPE=
finish
