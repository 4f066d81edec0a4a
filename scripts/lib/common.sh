# Shared settings for the project's scripts. Source it; do not run it.
# shellcheck shell=bash

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
