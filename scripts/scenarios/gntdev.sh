#!/bin/sh
# gntdev: user processes share and map grants through /dev/xen/gntdev
# (tools/utest's gnt-share in domain A, gnt-map in domain B, over the
# tools/gnttab library, with /dev/xen/xenstore and /dev/xen/evtchn for the
# protocol of docs/share-protocol.md, gntdev variant). B maps all N pages
# as one mapping (one map hypercall, one page fault), verifies them, replies
# and exits WITHOUT unmapping: its kernel tears the mapping down at exit and
# fires the unmap notify (byte cleared + event) that A waits for. Each
# kernel checks that free pages, grant references and hole frames are back
# to where they started, and prints them. Then the failure cases: B writes
# to a read-only mapping of the grants (killed, kernel alive), and `xl
# destroy` of either domain while B maps A's pages (the survivor ends
# cleanly).
. scripts/lib/xl.sh
. scripts/lib/share.sh

# bad input to the device: each refused with its errno, kernel alive, free
# pages back to baseline.
if guest_create xenguest-bad configs/xenguest-a.cfg 'cmdline="scenario=gntdev-bad loglevel=info"'; then
    guest_unpause xenguest-bad
    guest_wait xenguest-bad
    grep -h '^gnt-bad\|^process \|^bad:' "$(guest_log xenguest-bad)" | sed 's/\r$//; s/^/  /'
    if why=$(guest_result xenguest-bad gntdev-bad); then
        pass gntdev-bad
    else
        fail gntdev-bad "$why"
        show_log xenguest-bad
    fi
else
    fail gntdev-bad "create"
fi

# gntdev_ro_write: B verifies as usual, then maps the grants again
# read-only, must fail to mprotect that mapping writable (EACCES: issue
# 14 defect 1) and writes to it: its kernel must kill it (status 139),
# tear both mappings down (the first one's notify lets A finish) and be
# back at its baseline.
gntdev_ro_write() {
    pair_run gntdev-ro-write "gntdev-map mode=ro-write" "scenario=gntdev-share pages=16" || return
    show_lines xenguest-a xenguest-b
    _m=$(sed -n 's/^mapper: gnt-map exited with status \([0-9]*\); gntdev: \([0-9]*\) mapping(s).* \([0-9]*\) unmap hypercall(s).*/status \1, \2 mappings, \3 unmap hypercalls/p' "$(guest_log xenguest-b)")
    pair_judge gntdev-ro-write gntdev-share gntdev-map \
        "mprotect(READ|WRITE) refused with EACCES, write to the read-only mapping killed the process: $_m; kernel alive, baseline restored"
}

# gntdev_mode CASE MODE PAGES LINE: a pair run with gnt-map in mode MODE
# (kernel/src/scenario/gntdev.rs); passes when both sides pass, with the
# text after "gnt-map: LINE" in B's output as the result's detail.
gntdev_mode() {
    _case=$1 _mode=$2 _pages=$3 _line=$4
    pair_run "$_case" "gntdev-map mode=$_mode" "scenario=gntdev-share pages=$_pages" || return
    show_lines xenguest-a xenguest-b
    pair_judge "$_case" gntdev-share gntdev-map \
        "$(sed -n "s/^gnt-map: $_line//p" "$(guest_log xenguest-b)" | tr -d '\r')"
}

# gntdev_destroyed CASE VICTIM SURVIVOR SURVIVOR_SCENARIO: B maps A's 16
# pages and holds them (mode=hold); once B has verified them, the test
# destroys VICTIM and the survivor must end cleanly: B unmaps the pages
# of its dead peer; A sees its mapper gone, unshares, and its kernel reaps
# the grants once Xen has released the dead domain's mappings. Either way
# the survivor's kernel is back at its baseline.
gntdev_destroyed() {
    _case=$1 _victim=$2 _survivor=$3 _scn=$4
    pair_start "$_case" "gntdev-map mode=hold" "scenario=gntdev-share pages=16" || return
    if ! pair_wait_state 60 verified; then
        fail "$_case" "B never verified the pages"
        xl destroy xenguest-a
        xl destroy xenguest-b
        show_log xenguest-a
        show_log xenguest-b
        return
    fi
    xl destroy "$_victim"
    echo "  xl destroy $_victim while B maps A's pages"
    guest_wait "$_survivor"
    show_lines "$_survivor"
    if ! _why=$(guest_result "$_survivor" "$_scn"); then
        fail "$_case" "$_survivor: $_why"
        show_log "$_survivor"
    else
        pass "$_case ($_survivor ended cleanly, back at its baseline)"
    fi
}

gntdev_pair gntdev-1 1
gntdev_pair gntdev-16 16
gntdev_pair gntdev-1024 1024
# 65536 pages (256 MiB) in one mapping: A needs the RAM to share them and
# 129 grant frames (65536 references plus the 8 reserved, 512 a frame;
# Xen's gnttab_max_frames allows it, scripts/lib/xenhost.sh), B a
# fictitious page per mapped frame (one per page of its RAM) and 256
# maptrack frames (within xl's default of 1024).
# Under emulation on a loaded host it has taken up to 93 s.
GUEST_TIMEOUT=240 gntdev_pair gntdev-65536 65536 memory=300 max_grant_frames=256
# The benchmark against a peer in the same run: the same grants mapped
# with populate (1 fault) and once more with one fault per page, as
# FreeBSD's gntdev takes.
gntdev_mode gntdev-compare-1024 compare 1024 "benchmark, "
# GRANT_COPY across domains: B writes its replies with grant copies and
# reads every page back with them; A checks the replies.
gntdev_mode gntdev-copy-1024 copy 1024 "grant copy: "
# XSA-361: batch maps with a bad reference first, in the middle and last
# each fail as a whole and are rolled back (gnt-map mode 5).
gntdev_mode xsa-361-bad-ref-first-middle-last xsa-361 16 "xsa-361: "
# Issue 14 defect 4: the SEND_EVENT notify of a map never mmapped is sent
# at its release (gnt-map mode 6).
gntdev_mode gntdev-notify-unmapped notify-unmapped 16 "notify-unmapped: "
gntdev_ro_write
gntdev_destroyed gntdev-sharer-destroyed xenguest-a xenguest-b gntdev-map
gntdev_destroyed gntdev-mapper-destroyed xenguest-b xenguest-a gntdev-share
finish
