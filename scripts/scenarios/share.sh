#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# share: domain A grants N pages to domain B, which maps all N with one
# batched hypercall, verifies them, replies and unmaps; A checks the reply
# and ends access (docs/share-protocol.md). N = 1, 256 and 1024. Then the
# revoke variant: A ends access while B still maps; the ends are deferred
# and reaped after B unmaps, and nothing leaks.
. scripts/lib/xl.sh
. scripts/lib/share.sh

run_case share_pair share-1 share 1
run_case share_pair share-256 share 256
run_case share_pair share-1024 share 1024
run_case share_pair revoke-64 revoke 64
finish
