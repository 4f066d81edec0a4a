#!/bin/sh
# Instructions per 64-byte alloc+free pair, ours and linked_list_allocator's,
# each on a heap holding 10,000 live blocks among as many holes, counted by
# callgrind: (Ir(N pairs) - Ir(0 pairs)) / N, so the setup is not counted.
set -eu
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/h-kheap}"
cargo build -q --release -p kheap --example alloc_count
bin="$CARGO_TARGET_DIR/release/examples/alloc_count"
N=100000
ir() {
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" >/dev/null 2>&1
    sed -n 's/^summary: //p' "$out"
    rm -f "$out"
}
for a in ours peer; do
    base=$(ir "$a" 0)
    full=$(ir "$a" "$N")
    echo "$a: $(( (full - base) / N )) instructions per alloc+free (Ir $full - $base, N=$N)"
done
