#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# process: user programs (tools/utest, in the ramdisk archive) run as
# processes of one domain each: printing through write, anonymous memory,
# copy-on-write, partial munmap and mprotect (the program is killed, the
# kernel goes on and runs another), bad pointers to every pointer-taking
# system call and an unknown one, the populate fault count; and the
# kernel's own pmap checks (scenario=pmap). Each
# guest checks that its free page count is back to where it started.
. scripts/lib/xl.sh

# user_case SCENARIO: boots a guest with scenario=SCENARIO and checks its
# result; the case is named after the scenario.
user_case() {
    local _name _why
    _name=xenguest-user
    guest_create "$_name" configs/xenguest-a.cfg "cmdline=\"scenario=$1 loglevel=info\"" ||
        { fail "$1" "create"; return; }
    guest_unpause "$_name"
    guest_wait "$_name"
    grep -h '^process \|^pmap\|^populate\|^hello\|^anon\|^cow\|^efault\|^munmap\|^mprotect' "$(guest_log "$_name")" |
        sed 's/\r$//; s/^/  /'
    if _why=$(guest_result "$_name" "$1"); then
        pass "$1"
    else
        fail "$1" "$_why"
        show_log "$_name"
    fi
}

for c in pmap user-hello user-anon user-cow user-munmap user-mprotect user-efault user-populate; do
    run_case user_case "$c"
done
finish
