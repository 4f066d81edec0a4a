#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# share: domain A grants N pages to domain B, which maps all N with one
# batched hypercall, verifies them, replies and unmaps; A checks the reply
# and ends access (docs/share-protocol.md). N = 1, 256 and 1024. Then the
# revoke variant: A ends access while B still maps; the ends are deferred
# and reaped after B unmaps, and nothing leaks. share-mapper-destroyed-
# during-revoke: B, paused after its verdict, is destroyed once A's ends
# are deferred: A must see its mapper gone and reap every grant once Xen
# has released the dead domain's mappings.
. scripts/lib/xl.sh
. scripts/lib/share.sh

run_case share_pair share-1 share 1
run_case share_pair share-256 share 256
run_case share_pair share-1024 share 1024
run_case share_pair revoke-64 revoke 64

# share_destroyed_revoke CASE: the revoke variant with 16 pages; B is
# paused once it has verified (it then waits for the revoke), and
# destroyed once A's ends are deferred.
share_destroyed_revoke() {
    local _state _end
    pair_start "$1" revoke-mapper "scenario=revoke-sharer pages=16" || return
    _state=/local/domain/$PAIR_A_ID/data/xenguest/share/state
    _end=$(($(date +%s) + 60))
    if pair_wait_state 60 verified; then
        xl pause xenguest-b
        until [ "$(xenstore-read "$_state" 2>/dev/null)" = revoke-deferred ] || [ "$(date +%s)" -gt "$_end" ]; do
            sleep 0.1
        done
    fi
    if [ "$(xenstore-read "$_state" 2>/dev/null)" != revoke-deferred ]; then
        pair_abort "$1" "B never verified, or A never deferred its ends"
        return
    fi
    xl destroy xenguest-b
    echo "  xl destroy xenguest-b with A's ends deferred (revoke-deferred)"
    gntdev_survivor "$1" xenguest-a revoke-sharer \
        "saw its mapper gone during the revoke, reaped every deferred grant, back at its baseline" \
        60 "sharer: the mapper's domain is gone before its unmap"
}

run_case share_destroyed_revoke share-mapper-destroyed-during-revoke
finish
