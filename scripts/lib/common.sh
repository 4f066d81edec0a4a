# Shared settings for the project's scripts. Source it; do not run it.
# shellcheck shell=bash
# The settings are for the scripts that source this file:
# shellcheck disable=SC2034

set -euo pipefail

# Project root, whatever the caller's working directory.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Everything the scripts download or build for the emulated host lives here.
CACHE=${XENHOST_CACHE:-$ROOT/.cache/xenhost}
# Debian packages unpacked with dpkg-deb -x: QEMU, Xen, dom0's Linux, xl.
HOSTROOT=$CACHE/root
# The guest kernel as the configs in configs/ name it (relative to ROOT).
KERNEL_REL=target/x86_64-unknown-none/release/kernel
GUEST_TARGET=x86_64-unknown-none

# progress MESSAGE: one line on stderr, so stdout keeps only results.
progress() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 2
}

# ensure_rust_target: the guest target, added with rustup when missing.
ensure_rust_target() {
    if ! rustup target list --installed 2>/dev/null | grep -qx "$GUEST_TARGET"; then
        progress "adding the $GUEST_TARGET target with rustup"
        rustup target add "$GUEST_TARGET" >&2
    fi
}

# The user programs' archive, the guests' boot module (configs' ramdisk=).
USER_ARCHIVE_REL=target/user/programs.tar
# User programs are linked at the bottom of user space (0x80_0000_0000),
# beyond the reach of the target's 32-bit absolute addressing: they are
# compiled position-independent (rip-relative) and linked static, no PIE,
# without debug info to keep the archive small.
USER_RUSTFLAGS="-C relocation-model=pic -C strip=debuginfo"

# build_guest: the guest kernel, release build, at $ROOT/$KERNEL_REL, and
# the user programs of tools/utest packed into $ROOT/$USER_ARCHIVE_REL.
build_guest() {
    ensure_rust_target
    progress "building the guest kernel and user programs"
    (cd "$ROOT" && cargo build --quiet --release -p kernel --target "$GUEST_TARGET")
    (cd "$ROOT" && RUSTFLAGS=$USER_RUSTFLAGS \
        cargo build --quiet --release -p utest --bins --target "$GUEST_TARGET")
    local out=$ROOT/target/$GUEST_TARGET/release programs=()
    local src
    # One program per bin/NAME.rs or bin/NAME/main.rs, as cargo finds them.
    for src in "$ROOT"/tools/utest/src/bin/*.rs "$ROOT"/tools/utest/src/bin/*/main.rs; do
        [[ -e $src ]] || continue
        if [[ $src == */main.rs ]]; then
            programs+=("$(basename "$(dirname "$src")")")
        else
            programs+=("$(basename "$src" .rs)")
        fi
    done
    mkdir -p "$ROOT/target/user"
    tar --format=ustar -C "$out" -cf "$ROOT/$USER_ARCHIVE_REL.tmp" "${programs[@]}"
    mv "$ROOT/$USER_ARCHIVE_REL.tmp" "$ROOT/$USER_ARCHIVE_REL"
}
