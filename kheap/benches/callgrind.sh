#!/bin/sh
# Instructions per 64-byte alloc+free pair, ours and linked_list_allocator's,
# each on a heap holding 10,000 live blocks among as many holes, counted by
# callgrind: (Ir(N pairs) - Ir(0 pairs)) / N, so the setup is not counted.
set -eu
cd "$(dirname "$0")/../.."
. scripts/lib/callgrind.sh
per_pair kheap 100000 ours peer
