#!/bin/sh
# Instructions per 4 KiB alloc+free pair: ours (through the per-CPU page
# cache), ours through the buddy queues alone (the direct pool, which has
# no cache), and buddy_system_allocator's,
# counted by callgrind: (Ir(N pairs) - Ir(0 pairs)) / N, so setup is not counted.
set -eu
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/h-vm}"
cargo build -q --release -p vm --example alloc_count
bin="$CARGO_TARGET_DIR/release/examples/alloc_count"
N=100000
ir() {
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" >/dev/null 2>&1
    sed -n 's/^summary: //p' "$out"
    rm -f "$out"
}
for a in ours buddy peer; do
    base=$(ir "$a" 0)
    full=$(ir "$a" "$N")
    echo "$a: $(( (full - base) / N )) instructions per alloc+free (Ir $full - $base, N=$N)"
done
