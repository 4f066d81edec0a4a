#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# process: user programs (tools/utest, in the ramdisk archive) run as
# processes of one domain each: printing through write, anonymous memory,
# copy-on-write, partial munmap and mprotect (the program is killed, the
# kernel goes on and runs another), bad pointers to every pointer-taking
# system call and an unknown one, the populate fault count; and the
# kernel's own pmap checks (scenario=pmap). Each
# guest checks that its free page count is back to where it started.
#   contig-reclaim (scenario=user-contig, 2 vCPUs): with no free 2 MiB run
#       left but half of memory free in scattered pages, a 2 MiB
#       /dev/physobj mapping gets its superpage by contiguous reclaim,
#       which moves the process's own pages while a thread of it reads and
#       writes them (tools/utest/src/bin/contig.rs).
#   loan-grant (scenario=user-loan): GRANT_USER to dom0 of memory the
#       process has: a written 4 MiB lent read-only allocates no page, the
#       owner's writes copy each page once, the originals are freed once
#       at DEALLOC_GREF; 4 MiB never touched is backed by one page; and the
#       time of a loan against ALLOC_GREF and a copy (tools/utest/src/bin/loan.rs).
. scripts/lib/xl.sh

# user_case CASE [SCENARIO [XL OVERRIDE...]]: boots a guest with
# scenario=SCENARIO (CASE if not given) and the xl overrides, and checks
# its result, named CASE.
user_case() {
    local _name _why _case _scenario
    _name=xenguest-user
    _case=$1
    _scenario=${2:-$1}
    shift
    [ $# -gt 0 ] && shift
    guest_create "$_name" configs/xenguest-a.cfg "cmdline=\"scenario=$_scenario loglevel=info\"" "$@" ||
        { fail "$_case" "create"; return; }
    guest_unpause "$_name"
    guest_wait "$_name"
    grep -h '^process \|^pmap\|^populate\|^hello\|^anon\|^cow\|^efault\|^munmap\|^mprotect\|^contig\|^loan' "$(guest_log "$_name")" |
        sed 's/\r$//; s/^/  /'
    if _why=$(guest_result "$_name" "$_scenario"); then
        pass "$_case"
    else
        fail "$_case" "$_why"
        show_log "$_name"
    fi
}

for c in pmap user-hello user-anon user-cow user-munmap user-mprotect user-efault user-populate; do
    run_case user_case "$c"
done
run_case user_case contig-reclaim user-contig 'vcpus=2'
run_case user_case loan-grant user-loan
finish
