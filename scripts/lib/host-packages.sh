# Fetch and unpack the Debian packages of the emulated Xen host into $CACHE.
# Source after common.sh; call ensure_host_packages.
# shellcheck shell=bash

# Bump when the list changes, so old caches are rebuilt.
HOST_PACKAGES_STAMP=v1
HOST_PACKAGES=(
    qemu-system-x86 qemu-system-data seabios ipxe-qemu
    xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common libxen-dev
    linux-image-amd64 busybox-static cpio
)

ensure_host_packages() {
    local stamp=$CACHE/packages.$HOST_PACKAGES_STAMP
    [[ -e $stamp ]] && return 0
    progress "fetching Debian packages for the emulated Xen host (first run only)"
    local debs=$CACHE/debs
    mkdir -p "$debs/partial"
    # Package lists are needed once on a fresh machine.
    if ! apt-cache show xen-hypervisor-4.17-amd64 >/dev/null 2>&1; then
        progress "apt-get update"
        apt-get update -qq >&2
    fi
    # --download-only: nothing is installed on the machine itself. QEMU is
    # never installed: bookworm's QEMU would replace the machine's qemu-utils.
    apt-get install -y -qq --download-only --no-install-recommends \
        -o Dir::Cache::archives="$debs" \
        -o Debug::NoLocking=1 \
        "${HOST_PACKAGES[@]}" >&2
    # The dependencies the machine already has were not downloaded; the
    # dom0 image copies those from the machine (see initramfs.sh).
    progress "unpacking $(find "$debs" -name '*.deb' | wc -l) packages"
    rm -rf "$HOSTROOT"
    mkdir -p "$HOSTROOT"
    local deb
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$HOSTROOT"
    done
    touch "$stamp"
}

# Run a program from the unpacked packages with their libraries.
host_env() {
    LD_LIBRARY_PATH=$HOSTROOT/usr/lib/x86_64-linux-gnu:$HOSTROOT/lib/x86_64-linux-gnu \
        "$@"
}

# The checker of the project's shell scripts, from Debian like the rest
# and never installed on the machine: scripts/test runs it from the cache.
SHELLCHECK_ROOT=$CACHE/shellcheck
SHELLCHECK_STAMP=v1

# ensure_shellcheck: prints the path of the shellcheck binary, fetching
# and unpacking Debian's package the first time. `apt-get download`, not
# --download-only: that fetches nothing for a package the machine has
# installed. Its libraries (libffi8, libgmp10) are in every Debian base.
ensure_shellcheck() {
    local bin=$SHELLCHECK_ROOT/usr/bin/shellcheck
    if [[ ! -e $SHELLCHECK_ROOT.$SHELLCHECK_STAMP ]]; then
        progress "fetching Debian's shellcheck package (first run only)"
        local debs=$CACHE/debs-shellcheck
        rm -rf "$debs" "$SHELLCHECK_ROOT"
        mkdir -p "$debs" "$SHELLCHECK_ROOT"
        if ! apt-cache show shellcheck >/dev/null 2>&1; then
            apt-get update -qq >&2
        fi
        (cd "$debs" && apt-get download -qq shellcheck >&2)
        dpkg-deb -x "$debs"/shellcheck_*.deb "$SHELLCHECK_ROOT"
        touch "$SHELLCHECK_ROOT.$SHELLCHECK_STAMP"
    fi
    echo "$bin"
}
