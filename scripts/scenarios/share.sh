#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# share: domain A grants N pages to domain B, which maps all N with one
# batched hypercall, verifies them, replies and unmaps; A checks the reply
# and ends access (docs/share-protocol.md). N = 1, 256 and 1024. Then the
# revoke variant: A ends access while B still maps; the ends are deferred
# and reaped after B unmaps, and nothing leaks. share-mapper-destroyed-
# during-revoke: B, stopped at its checkpoint before its unmap (A's ends
# deferred), is destroyed: A must see its mapper gone and reap every grant
# once Xen has released the dead domain's mappings.
# soak-rounds-100 (issue 14's soak): 100 whole rounds of the protocol's
# gntdev variant (docs/share-protocol.md, rounds), a new gnt-share in A
# and a new gnt-map in B for each, 16 pages each time: every round
# verified, one map and one unmap hypercall each, and each kernel back at
# its baseline after every process (about 2 minutes).
. scripts/lib/xl.sh
. scripts/lib/share.sh

# soak_heap NAME: the bytes NAME's kernel heap grew by after the first
# rounds of a run of rounds (kernel/src/scenario/gntdev.rs, rounds).
soak_heap() {
    tr -d '\r' <"$(guest_log "$1")" | sed -n 's/.*kernel heap \([0-9]*\) byte(s) up since round.*/\1/p' | tail -n 1
}

# soak_rounds CASE ROUNDS PAGES: the rounds run and its one result line.
soak_rounds() {
    local _k="counter xenguest-b mapper" _verified
    pair_start "$1" "gntdev-map rounds=$2" "scenario=gntdev-share rounds=$2 pages=$3" || return
    if ! guests_wait xenguest-a xenguest-b; then
        fail "$1" "the pair did not end: A $(guest_end xenguest-a), B $(guest_end xenguest-b)"
        show_log xenguest-b
        return
    fi
    _verified=$(tr -d '\r' <"$(guest_log xenguest-b)" | grep -c '^gnt-map: mapped .* 0 wrong words')
    if [ "$_verified" -ne "$2" ]; then
        fail "$1" "B verified $_verified of $2 rounds"
        show_log xenguest-b
        return
    fi
    pair_judge "$1" gntdev-share gntdev-map "$2 rounds of $3 pages, each verified; the last: $($_k map_hypercalls) map and $($_k unmap_hypercalls) unmap hypercall; both baselines back after every round; kernel heap since round 2: A +$(soak_heap xenguest-a), B +$(soak_heap xenguest-b) bytes"
}

run_case share_pair share-1 share 1
run_case share_pair share-256 share 256
run_case share_pair share-1024 share 1024
run_case share_pair revoke-64 revoke 64

run_case pair_at_step share-mapper-destroyed-during-revoke revoke-mapper \
    "scenario=revoke-sharer pages=16" xenguest-b before-unmap xenguest-b xenguest-a revoke-sharer \
    "saw its mapper gone during the revoke, reaped every deferred grant, back at its baseline" \
    "sharer: the mapper's domain is gone before its unmap"
(
    GUEST_TIMEOUT=600
    run_case soak_rounds soak-rounds-100 100 16
)
finish
