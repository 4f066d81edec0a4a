#!/bin/sh
# Instructions per 4 KiB alloc+free pair: ours (through the per-CPU page
# cache), ours through the buddy queues alone (the direct pool, which has
# no cache), and buddy_system_allocator's, counted by callgrind:
# (Ir(N pairs) - Ir(0 pairs)) / N, so setup is not counted.
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib/callgrind.sh
per_pair vm 100000 ours buddy peer
