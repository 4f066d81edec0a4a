#!/bin/sh
# process: user programs (tools/utest, in the ramdisk archive) run as
# processes of one domain each: printing through write, anonymous memory,
# copy-on-write, partial munmap and mprotect (the program is killed, the
# kernel goes on and runs another), bad pointers to every pointer-taking
# system call and an unknown one, the populate fault count; and the
# kernel's own pmap checks (scenario=pmap). Each
# guest checks that its free page count is back to where it started.
. scripts/lib/xl.sh

# run SCENARIO: boots a guest with scenario=SCENARIO and checks its result.
run() {
    name=xenguest-user
    guest_create "$name" configs/xenguest-a.cfg "cmdline=\"scenario=$1 loglevel=info\"" ||
        { fail "$1" "create"; return; }
    guest_unpause "$name"
    guest_wait "$name"
    log=$(guest_log "$name")
    grep -h '^process \|^pmap\|^populate\|^hello\|^anon\|^cow\|^efault\|^munmap\|^mprotect' "$log" |
        sed 's/\r$//; s/^/  /'
    if why=$(guest_result "$name" "$1"); then
        pass "$1"
    else
        fail "$1" "$why"
        show_log "$name"
    fi
}

for c in pmap user-hello user-anon user-cow user-munmap user-mprotect user-efault user-populate; do
    run "$c"
done
finish
