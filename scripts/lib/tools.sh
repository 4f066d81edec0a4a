# Build dom0's user programs (tools/xen-interop, tools/vchan-interop) on the host, against the
# Xen headers and libraries of the unpacked Debian packages, into
# target/dom0-tools/. The dom0 overlay copies that folder to
# /project/target/dom0-tools/ (see build_overlay in initramfs.sh).
# Source after common.sh and host-packages.sh; call build_dom0_tools.
# shellcheck shell=bash

DOM0_TOOLS_OUT=$ROOT/target/dom0-tools

# build_dom0_tools: compiles each tool when its source or the Xen headers
# are newer than the binary.
build_dom0_tools() {
    ensure_host_packages
    build_dom0_tool xen-interop xengnttab.h -lxengnttab -lxenevtchn -lxenstore
    build_dom0_tool vchan-interop libxenvchan.h -lxenvchan -lxengnttab -lxenevtchn -lxenstore
}

# build_dom0_tool NAME HEADER LIB...: tools/NAME/NAME.c into
# $DOM0_TOOLS_OUT/NAME, against the unpacked Xen headers and LIBs.
build_dom0_tool() {
    local name=$1 header=$2
    shift 2
    local src=$ROOT/tools/$name/$name.c
    local out=$DOM0_TOOLS_OUT/$name
    local inc=$HOSTROOT/usr/include
    local lib=$HOSTROOT/usr/lib/x86_64-linux-gnu
    [[ -e $src ]] || return 0
    if [[ -e $out && $out -nt $src && $out -nt $inc/$header && $out -nt ${BASH_SOURCE[0]} ]]; then
        return 0
    fi
    command -v gcc >/dev/null || die "gcc is needed to build the dom0 tools"
    progress "building the dom0 tool $name"
    mkdir -p "$DOM0_TOOLS_OUT"
    # The .so links of libxen-dev point into the same folder; -rpath-link
    # lets ld find their own dependencies (libxentoolcore, libxencall, ...)
    # there too. At run time dom0's LD_LIBRARY_PATH finds them.
    gcc -std=c11 -O2 -g -Wall -Wextra -Werror \
        -isystem "$inc" -o "$out.tmp" "$src" \
        -L"$lib" -Wl,-rpath-link,"$lib" -Wl,-rpath-link,"$HOSTROOT/lib/x86_64-linux-gnu" \
        "$@"
    mv "$out.tmp" "$out"
}
