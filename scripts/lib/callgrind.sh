#!/bin/sh
# Sourced by the crates' benches/callgrind.sh: `per_pair PACKAGE N
# VARIANT...` builds PACKAGE's example alloc_count and prints, for each
# VARIANT (its first argument), the instructions of one alloc+free pair
# as callgrind counts them:
# (Ir(N pairs) - Ir(0 pairs)) / N, so the setup is not counted.
# CALLGRIND_PROFILE names cargo's profile (release unless set; scripts/bench
# --smoke takes test, whose build cargo test has made).
per_pair() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/h-$1}"
    profile=${CALLGRIND_PROFILE:-release}
    cargo build -q --profile "$profile" -p "$1" --example alloc_count
    # cargo's folder of the profile: test builds land in debug/.
    dir=$profile
    [ "$profile" = test ] && dir=debug
    bin="$CARGO_TARGET_DIR/$dir/examples/alloc_count"
    n=$2
    shift 2
    for a in "$@"; do
        base=$(callgrind_ir "$bin" "$a" 0)
        full=$(callgrind_ir "$bin" "$a" "$n")
        echo "$a: $(((full - base) / n)) instructions per alloc+free (Ir $full - $base, N=$n)"
    done
}

# `callgrind_ir BIN ARGS...`: the instructions BIN ARGS runs.
callgrind_ir() {
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1
    sed -n 's/^summary: //p' "$out"
    rm -f "$out"
}
