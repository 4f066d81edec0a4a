#!/bin/sh
# Instructions per 4 KiB alloc+free pair, ours and buddy_system_allocator's,
# counted by callgrind: (Ir(N pairs) - Ir(0 pairs)) / N, so setup is not counted.
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib/callgrind.sh
per_pair vm 100000
