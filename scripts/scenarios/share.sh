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

run_case pair_at_step share-mapper-destroyed-during-revoke revoke-mapper \
    "scenario=revoke-sharer pages=16" xenguest-b before-unmap xenguest-b xenguest-a revoke-sharer \
    "saw its mapper gone during the revoke, reaped every deferred grant, back at its baseline" \
    "sharer: the mapper's domain is gone before its unmap"
finish
