# Build dom0's initramfs: a cached base (busybox, Xen's tools and libraries,
# the Xen kernel modules, /init) plus a small per-run overlay holding the
# project files and the command to run. Linux unpacks concatenated cpio
# archives in order, so the overlay needs no rebuild of the base.
# Source after common.sh and host-packages.sh.
# shellcheck shell=bash

# Bump when the base's contents or /init change.
BASE_STAMP=v8
DOM0_KERNEL_MODULES=(xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs)
# xenctx: a stuck guest's registers and stack for the harness (xl.sh).
# vchan-socket-proxy (xen-utils-4.17, over libxenvchan from libxenmisc4.17):
# the vchan scenarios' unmodified peer.
# libxl-save-helper: libxl runs it for `xl save`, `restore` and `migrate`.
XEN_TOOLS=(xl xenstored xenconsoled xen-init-dom0 xenconsole xenctx vchan-socket-proxy
    libxl-save-helper)

dom0_kernel() {
    local k
    for k in "$HOSTROOT"/boot/vmlinuz-*-amd64; do
        [[ -e $k ]] || die "no dom0 kernel in $HOSTROOT/boot"
        echo "$k"
        return
    done
}

# copy_with_libs FILE DEST_DIR: copy a binary and every library ldd names.
copy_with_libs() {
    local bin=$1 dest=$2 lib
    install -D -m 755 "$bin" "$dest/usr/bin/$(basename "$bin")"
    while read -r lib; do
        # Libraries from the unpacked packages keep their path inside it.
        local target=${lib#"$HOSTROOT"}
        [[ -e $dest$target ]] && continue
        install -D -m 755 "$(readlink -f "$lib")" "$dest$target"
    done < <(host_env ldd "$bin" | grep -o '/[^ ]*\.so[^ ]*')
}

build_base_initramfs() {
    local out=$CACHE/dom0-base.cpio.gz
    [[ -e $out && -e $CACHE/dom0-base.$BASE_STAMP ]] && return 0
    progress "building dom0 initramfs (busybox, xl, xenstored, xenconsoled, vchan-socket-proxy)"
    local tree=$CACHE/dom0-base
    rm -rf "$tree"
    mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,etc/xen,lib/modules,proc,sys,dev,tmp,run,root}
    mkdir -p "$tree"/var/{run/xen,run/xenstored,lib/xen,lib/xenstored,log/xen/console,lock}
    install -m 755 "$HOSTROOT/bin/busybox" "$tree/bin/busybox"
    local xbin=$HOSTROOT/usr/lib/xen-4.17/bin t m
    for t in "${XEN_TOOLS[@]}"; do
        copy_with_libs "$xbin/$t" "$tree"
    done
    copy_with_libs "$HOSTROOT/usr/bin/xenstore" "$tree"
    # libxl runs its save helper by this path.
    mkdir -p "$tree/usr/lib/xen-4.17/bin"
    ln -sf /usr/bin/libxl-save-helper "$tree/usr/lib/xen-4.17/bin/libxl-save-helper"
    # Xen's user libraries for the dom0 tools (target/dom0-tools, tools.sh).
    for t in libxengnttab.so.1 libxenevtchn.so.1 libxenstore.so.4; do
        install -D -m 755 "$(readlink -f "$HOSTROOT/usr/lib/x86_64-linux-gnu/$t")" \
            "$tree/usr/lib/x86_64-linux-gnu/$t"
    done
    for t in read write ls list rm chmod exists watch; do
        ln -sf xenstore "$tree/usr/bin/xenstore-$t"
    done
    # glibc loads libgcc_s at exit (pthread_cancel); ldd does not list it,
    # and without it every `xl create` aborts after creating the domain.
    install -D -m 644 "$(readlink -f /lib/x86_64-linux-gnu/libgcc_s.so.1)" \
        "$tree/lib/x86_64-linux-gnu/libgcc_s.so.1"
    cp "$HOSTROOT/etc/xen/xl.conf" "$tree/etc/xen/"
    for m in "${DOM0_KERNEL_MODULES[@]}"; do
        find "$HOSTROOT/lib/modules" -name "$m.ko*" -exec cp {} "$tree/lib/modules/" \;
    done
    (cd "$tree" && find . | host_env "$HOSTROOT/bin/cpio" --quiet -o -H newc | gzip -1 > "$out")
    touch "$CACHE/dom0-base.$BASE_STAMP"
}

# build_overlay OUT RUN_SCRIPT [EXTRA_FILE...]: the project tree as dom0
# sees it under /project (the guest kernel at the path the configs name,
# configs/, scripts/), extra files under /project/extra, /xenhost/run and
# dom0's /init (scripts/lib/dom0-init).
build_overlay() {
    local out=$1 run=$2
    shift 2
    local tree
    tree=$(mktemp -d "$CACHE/overlay.XXXXXX")
    mkdir -p "$tree/project/$(dirname "$KERNEL_REL")" "$tree/project/scripts" "$tree/xenhost"
    cp "$ROOT/$KERNEL_REL" "$tree/project/$KERNEL_REL"
    cp -r "$ROOT/configs" "$tree/project/"
    cp -r "$ROOT/scripts/scenarios" "$ROOT/scripts/lib" "$tree/project/scripts/"
    if [[ -d $ROOT/target/user ]]; then
        mkdir -p "$tree/project/target"
        cp -r "$ROOT/target/user" "$tree/project/target/"
    fi
    if [[ -d $ROOT/target/dom0-tools ]]; then
        mkdir -p "$tree/project/target"
        cp -r "$ROOT/target/dom0-tools" "$tree/project/target/"
    fi
    if (($# > 0)); then
        mkdir -p "$tree/project/extra"
        cp -r "$@" "$tree/project/extra/"
    fi
    install -m 755 "$run" "$tree/xenhost/run"
    # /init here, not in the cached base: a change to it counts at once.
    install -m 755 "$ROOT/scripts/lib/dom0-init" "$tree/init"
    (cd "$tree" && find . | host_env "$HOSTROOT/bin/cpio" --quiet -o -H newc | gzip -1 > "$out")
    rm -rf "$tree"
}
