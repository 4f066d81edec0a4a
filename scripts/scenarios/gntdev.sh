#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
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
# cleanly). loan-writable: the same protocol over A's own memory granted
# writable as it is (GRANT_USER) instead of pages ALLOC_GREF allocated;
# loan-readonly, loan-zero, loan-owner-exits: A's memory granted read-only
# by loan (lend_pair).
. scripts/lib/xl.sh
. scripts/lib/share.sh

# gntdev_bad CASE: bad input to the device: each refused with its errno,
# kernel alive, free pages back to baseline.
gntdev_bad() {
    local _why
    if ! guest_create xenguest-bad configs/xenguest-a.cfg 'cmdline="scenario=gntdev-bad loglevel=info"'; then
        fail "$1" "create"
        return
    fi
    guest_unpause xenguest-bad
    guest_wait xenguest-bad
    grep -h '^gnt-bad\|^process \|^bad:\|^COUNTERS bad ' "$(guest_log xenguest-bad)" | sed 's/\r$//; s/^/  /'
    if _why=$(guest_result xenguest-bad gntdev-bad); then
        pass "$1"
    else
        fail "$1" "$_why"
        show_log xenguest-bad
    fi
}

# ro_write_detail: mode ro-write: B verifies as usual, then maps the
# grants again read-only and writes to that mapping: its kernel must kill
# it (status 139), tear both mappings down (the first one's notify lets A
# finish) and be back at its baseline.
ro_write_detail() {
    local _k="counter xenguest-b mapper"
    echo "mprotect(READ|WRITE) refused with EACCES, write to the read-only mapping killed the process: status $($_k status), $($_k mappings) mappings, $($_k unmap_hypercalls) unmap hypercalls; kernel alive, baseline restored"
}

# compare_detail PAGES: mode compare, the benchmark against a peer in the
# same run: the same grants mapped with populate (1 fault) and once more
# with one fault per page, as FreeBSD's gntdev takes.
compare_detail() {
    local _b="counter xenguest-b gnt-map-benchmark"
    echo "$1 pages: populate $($_b faults) fault(s), $($_b map_hypercalls) map hypercall(s); per-page $($_b per_page_faults) fault(s), $($_b per_page_map_hypercalls) map hypercall(s)"
}

# copy_detail PAGES: mode copy, GRANT_COPY across domains: B writes its
# replies with grant copies and reads every page back with them; A checks
# the replies.
copy_detail() {
    local _c="counter xenguest-b gnt-map-copy"
    echo "$1 reply words written in $($_c write_hypercalls) copy hypercall(s), $1 pages read back in $($_c read_hypercalls) ($($_c copy_ops) copy ops); $($_c failed_segments) failed segment(s), $($_c differ) word(s) differ"
}

# xsa361_detail: mode xsa-361: batch maps with a bad reference first, in
# the middle and last each fail as a whole and are rolled back.
xsa361_detail() {
    sed -n 's/^gnt-map: xsa-361: //p' "$(guest_log xenguest-b)" | tr -d '\r'
}

# notify_unmapped_detail: mode notify-unmapped: the SEND_EVENT notify of a
# map never mmapped is sent at its release (issue 14 defect 4).
notify_unmapped_detail() {
    sed -n 's/^gnt-map: notify-unmapped: //p' "$(guest_log xenguest-b)" | tr -d '\r'
}

# large_detail PAGES: mode large, 2 MiB entries: the aligned mapping's
# entries in B's page tables, and what is left of them, of the unmap
# hypercalls and of the hole frames after B unmaps it.
large_detail() {
    local _l="counter xenguest-b gnt-map-large"
    echo "$1 pages: $($_l large_entries) 2 MiB entries (aligned=$($_l aligned)); after unmap $($_l large_after_unmap) entries, $($_l unmap_hypercalls) unmap hypercall(s), hole frames $($_l hole_frames) -> $($_l hole_frames_after)"
}

# partial_detail PAGES: mode large-partial-munmap: a munmap of 4 pages
# inside the first 2 MiB entry demotes it, the rest reads right, and the
# kernel unmaps the rest at exit with one hypercall.
partial_detail() {
    local _p="counter xenguest-b gnt-map-partial" _k="counter xenguest-b mapper"
    echo "$1 pages in $($_p large_entries) 2 MiB entries; munmap of 4 pages: $($_p demotions) demotion(s), $($_p large_left) entries left, $($_p wrong_words) wrong words in the rest; $($_k unmap_hypercalls) unmap hypercall(s) at exit"
}


# gntdev_destroyed CASE VICTIM SURVIVOR SURVIVOR_SCENARIO: B maps A's 16
# pages and holds them (mode=hold); once B has verified them and A has
# read the verdict (so that both wait for the other's end, which is what
# the case is about), the test destroys VICTIM and the survivor must end
# cleanly: B unmaps the pages of its dead peer; A sees its mapper gone,
# unshares, and its kernel reaps the grants once Xen has released the
# dead domain's mappings. Either way the survivor's kernel is back at its
# baseline.
gntdev_destroyed() {
    local _case _victim _survivor _scn
    _case=$1 _victim=$2 _survivor=$3 _scn=$4
    pair_start "$_case" "gntdev-map mode=hold" "scenario=gntdev-share pages=16" || return
    if ! pair_wait_state 60 verified || ! guest_wait_line xenguest-a 60 "gnt-share: mapper verified"; then
        pair_abort "$_case" "B never verified the pages, or A never read the verdict"
        return
    fi
    xl destroy "$_victim"
    echo "  xl destroy $_victim while B maps A's pages"
    gntdev_survivor "$_case" "$_survivor" "$_scn" "ended cleanly, back at its baseline"
}

# gntdev_destroyed_early CASE: the mapper dies after writing its verdict
# and before the sharer has read it (the flake of issue 14: A waited out
# its 120 s for a verdict that was gone). B starts only once A, its share
# ready, is paused in its wait for the verdict; B verifies and is
# destroyed; A resumes and must see its mapper gone, unshare and end
# cleanly within seconds.
gntdev_destroyed_early() {
    local _ready _end
    pair_create "$1" "gntdev-map mode=hold" "scenario=gntdev-share pages=16" || return
    guest_unpause xenguest-a
    _ready=/local/domain/$PAIR_A_ID/data/xenguest/share/state
    _end=$(($(date +%s) + 60))
    until [ "$(xenstore-read "$_ready" 2>/dev/null)" = ready ] || [ "$(date +%s)" -gt "$_end" ]; do
        sleep 0.1
    done
    xl pause xenguest-a
    guest_unpause xenguest-b
    if ! pair_wait_state 60 verified; then
        pair_abort "$1" "B never verified the pages"
        return
    fi
    xl destroy xenguest-b
    xl unpause xenguest-a
    echo "  xl destroy xenguest-b after its verdict, while A is paused before reading it"
    gntdev_survivor "$1" xenguest-a gntdev-share "saw its mapper gone before its verdict, ended cleanly" \
        30 "gnt-share: the mapper's domain is gone before its verdict"
}

run_case gntdev_bad gntdev-bad
# loan_pair CASE PAGES: the gntdev pair with the sharer's own anonymous
# memory granted writable as it is (loan=1: GRANT_USER) instead of pages
# ALLOC_GREF allocated: B must see A's words and A B's replies in the same
# pages, and both come back to their baselines.
loan_pair() {
    pair_run "$1" gntdev-map "scenario=gntdev-share pages=$2 loan=1" || return
    show_lines xenguest-a xenguest-b
    pair_judge "$1" gntdev-share gntdev-map \
        "$2 pages of A's own memory granted writable (GRANT_USER): B verified A's words, A verified B's replies"
}

# lend_pair CASE KIND: the loan pair (tools/utest/src/lend.rs): A's
# gnt-lend grants 1024 pages of its own memory read-only by loan
# (GRANT_USER), B's gnt-borrow maps them read-only; KIND readonly (A then
# writes every page: copies for A, the old words for B), zero (untouched
# memory: the one zero page backs every grant, B reads zeros) or
# owner-exits (A's process exits while B maps: B still reads A's words,
# unmaps, and A's kernel is back at its baseline of free and lent pages).
lend_pair() {
    local _a="counter xenguest-a gnt-lend" _w="counter xenguest-a gnt-lend-write" _k="counter xenguest-a lender" _e="counter xenguest-a lender-exit" _detail
    pair_run "$1" "gntdev-borrow case=$2" "scenario=gntdev-lend case=$2" || return
    show_lines xenguest-a xenguest-b
    _detail="$($_a pages) pages: $($_a grant_refs) grant refs, $($_a allocated) page(s) allocated, $($_a lent_pages) page(s) lent, $($_a zero_page_loans) zero-page loans"
    case $2 in
    readonly) _detail="$_detail; A's writes: $($_w copies) copies, B's words changed: $(counter xenguest-b gnt-borrow changed_words)" ;;
    owner-exits) _detail="$_detail; after A's exit B's words changed: $(counter xenguest-b gnt-borrow changed_words); A: $($_e lent_at_exit) page(s) lent at its exit, $($_e freed_after_exit) freed after B unmapped; free pages $($_k free_pages) -> $($_k free_pages_after), lent $($_k lent_pages) -> $($_k lent_pages_after)" ;;
    esac
    pair_judge "$1" gntdev-lend gntdev-borrow "$_detail"
}

run_case gntdev_pair gntdev-1 1
run_case gntdev_pair gntdev-16 16
run_case gntdev_pair gntdev-1024 1024
# 65536 pages (256 MiB) in one mapping: A needs the RAM to share them and
# 129 grant frames (65536 references plus the 8 reserved, 512 a frame;
# Xen's gnttab_max_frames allows it, scripts/lib/xenhost.sh), B a
# fictitious page per mapped frame (one per page of its RAM) and 256
# maptrack frames (within xl's default of 1024).
# Under emulation on a loaded host it has taken up to 93 s.
# A subshell: the longer wait is for this case alone.
(
    GUEST_TIMEOUT=240
    run_case gntdev_pair gntdev-65536 65536 memory=300 max_grant_frames=256
)
run_case loan_pair loan-writable 1024
run_case lend_pair loan-readonly readonly
run_case lend_pair loan-zero zero
run_case lend_pair loan-owner-exits owner-exits
run_case gntdev_mode gntdev-compare-1024 compare 1024 compare_detail
run_case gntdev_mode gntdev-copy-1024 copy 1024 copy_detail
run_case gntdev_mode gntdev-large-1024 large 1024 large_detail
run_case gntdev_mode gntdev-large-partial-munmap large-partial-munmap 1024 partial_detail
run_case gntdev_mode gntdev-ro-write ro-write 16 ro_write_detail
run_case gntdev_mode xsa-361-bad-ref-first-middle-last xsa-361 16 xsa361_detail
run_case gntdev_mode gntdev-notify-unmapped notify-unmapped 16 notify_unmapped_detail
run_case gntdev_destroyed gntdev-sharer-destroyed xenguest-a xenguest-b gntdev-map
run_case gntdev_destroyed gntdev-mapper-destroyed xenguest-b xenguest-a gntdev-share
run_case gntdev_destroyed_early gntdev-mapper-destroyed-early
# xl destroy of the peer at each step of the protocol (issue 14): before
# the map, B having read the share (either side destroyed); mid-notify, B
# about to exit with the mapping (its teardown's notify reaches a dead
# sharer); during the unshare (share.sh: during A's revoke). After the map
# and after the verdict: the three cases above.
run_case pair_at_step gntdev-sharer-destroyed-before-map "gntdev-map mode=dead-peer" \
    "scenario=gntdev-share pages=16" xenguest-b before-map xenguest-a xenguest-b gntdev-map \
    "killed by its fault on the dead sharer's grants, back at its baseline"
run_case pair_at_step gntdev-mapper-destroyed-before-map gntdev-map \
    "scenario=gntdev-share pages=16" xenguest-b before-map xenguest-b xenguest-a gntdev-share \
    "saw its mapper gone before its verdict, ended cleanly" \
    "gnt-share: the mapper's domain is gone before its verdict"
run_case pair_at_step gntdev-sharer-destroyed-mid-notify gntdev-map \
    "scenario=gntdev-share pages=16" xenguest-b before-exit xenguest-a xenguest-b gntdev-map \
    "tore its mapping of a dead sharer down (notify, unmap), ended cleanly"
finish
