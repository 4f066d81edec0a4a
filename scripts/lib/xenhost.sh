# Boot the emulated Xen host (Xen 4.17 + Debian's Linux dom0 in QEMU under
# software emulation) and run one command in dom0.
# Source after common.sh, host-packages.sh and initramfs.sh.
# shellcheck shell=bash

# gnttab_max_frames: Xen 4.17 refuses a domain whose max_grant_frames
# (xl's config) exceeds it (default 64); the gntdev-65536 case needs 129
# frames in its sharer, and 256 is the room our kernel reserves.
XEN_CMDLINE="console=com1 com1=115200,8n1 dom0_mem=512M,max:512M dom0_max_vcpus=1 gnttab_max_frames=256 loglvl=all guest_loglvl=all console_timestamps=boot"
DOM0_CMDLINE="console=hvc0 earlyprintk=xen loglevel=1 rdinit=/init"
# QEMU's TCG threading: multi (a host thread each emulated CPU, the
# default again: under single, 2 suite runs in a row failed on stalls) or
# single (both on one host thread). On these 2-core machines
# single ran the whole suite in 5 minutes instead of 9, and smp-stress in
# 104 s instead of 212; under multi, guests triple-faulted with Xen's own
# rip and rsp in the dump of their vCPU (cr2 = that rip, cr3 Xen's: the
# emulated SVM world switch loaded the host's state as the guest's), and
# once with rip at a guest rdtsc that Xen emulates; one smp-stress run in
# three or four. (Under both, a guest now and then
# takes an interrupt with RFLAGS.IF clear: kernel/src/arch/trap.rs.)
# Under single, an idle vCPU is sometimes not woken by its timer until
# another event comes: 2 of 8 fuzz seeds stalled so (0 of the same 8
# under multi), and one suite run of 8 failed life-shutdown on it.
# Domains of a pair no longer run at the same time under single: compare
# their throughput only with figures taken the same way.
XENHOST_TCG_THREAD=${XENHOST_TCG_THREAD:-multi}
# The emulated CPU: AMD's SVM with nested paging for Xen's HVM guests.
XENHOST_CPU=${XENHOST_CPU:-qemu64,+svm,+npt,+rdrand}
# Seconds one boot may take before it is killed and counted as failed.
XENHOST_TIMEOUT=${XENHOST_TIMEOUT:-600}
# Seconds dom0 may stay silent on the serial line (no line of its command's
# output, no milestone, no heartbeat: scripts/lib/dom0-init prints one
# every 20 s) before the host is taken for wedged and stopped (status 126).
# A CI run once spent its whole 40-minute limit in such a host: after a
# PASS line, nothing more came from dom0.
XENHOST_STALL=${XENHOST_STALL:-240}

xen_binary() {
    local xen=$CACHE/xen-4.17.elf
    if [[ ! -e $xen ]]; then
        zcat "$HOSTROOT/boot/xen-4.17-amd64.gz" > "$xen.tmp" && mv "$xen.tmp" "$xen"
    fi
    echo "$xen"
}

# xenhost_run NAME RUN_SCRIPT [EXTRA_FILE...]
# Prints dom0's output (the lines of RUN_SCRIPT) on stdout, progress on
# stderr, keeps the whole serial log in $CACHE/runs/NAME/serial.log and
# returns RUN_SCRIPT's status; 124 when the time limit passed, 125 when dom0
# never reported an exit status (Xen or dom0 died), 126 when dom0 stayed
# silent for XENHOST_STALL seconds (the host wedged) and was stopped.
xenhost_run() {
    local name=$1 run=$2
    shift 2
    ensure_host_packages
    build_base_initramfs
    local dir=$CACHE/runs/$name
    rm -rf "$dir"
    mkdir -p "$dir"
    build_overlay "$dir/overlay.cpio.gz" "$run" "$@"
    cat "$CACHE/dom0-base.cpio.gz" "$dir/overlay.cpio.gz" > "$dir/initrd"
    local xen kernel
    xen=$(xen_binary)
    kernel=$(dom0_kernel)
    progress "booting Xen 4.17 and dom0 in QEMU (software emulation) for '$name'"
    local start=$SECONDS
    echo 125 > "$dir/rc"
    : > "$dir/alive"
    _xenhost_watchdog "$dir" &
    local watchdog=$!
    set +e
    timeout --kill-after=5 "$XENHOST_TIMEOUT" env \
        LD_LIBRARY_PATH="$HOSTROOT/usr/lib/x86_64-linux-gnu:$HOSTROOT/lib/x86_64-linux-gnu" \
        "$HOSTROOT/usr/bin/qemu-system-x86_64" \
        -L "$HOSTROOT/usr/share/qemu" -L "$HOSTROOT/usr/share/seabios" \
        -machine pc -accel "tcg,thread=$XENHOST_TCG_THREAD" -cpu "$XENHOST_CPU" \
        -smp 2 -m 2048 -display none -vga none -net none -no-reboot \
        -serial stdio -monitor none -pidfile "$dir/qemu.pid" \
        -kernel "$xen" -append "$XEN_CMDLINE" \
        -initrd "$kernel $DOM0_CMDLINE,$dir/initrd" </dev/null 2>"$dir/qemu.err" |
        tee "$dir/serial.log" | _xenhost_filter "$dir" "$start"
    local qemu_status=${PIPESTATUS[0]}
    kill "$watchdog" 2>/dev/null
    wait "$watchdog" 2>/dev/null
    set -e
    local rc
    rc=$(cat "$dir/rc")
    if [[ -e $dir/stalled ]]; then
        progress "dom0 was silent for ${XENHOST_STALL}s (the emulated host wedged): stopped; serial log: $dir/serial.log"
        tail -n 5 "$dir/serial.log" | tr -d '\r' | sed 's/^/  last serial line | /' >&2
        rc=126
    elif ((qemu_status == 124)); then
        progress "time limit of ${XENHOST_TIMEOUT}s passed; serial log: $dir/serial.log"
        rc=124
    elif ((rc == 125)); then
        progress "dom0 gave no exit status (QEMU status $qemu_status); serial log: $dir/serial.log"
        grep -E '\(XEN\).*(Panic|FATAL)|Kernel panic' "$dir/serial.log" >&2 || true
        [[ -s $dir/qemu.err ]] && cat "$dir/qemu.err" >&2
    fi
    progress "'$name' finished in $((SECONDS - start)) s with status $rc"
    return "$rc"
}

# Reads the serial line: "@@ " lines are dom0's command output, "@@XENHOST"
# lines are milestones, "@@HB" dom0's heartbeat; everything else (Xen's
# log) stays in the log file. Each line from dom0 renews DIR/alive for
# _xenhost_watchdog.
_xenhost_filter() {
    local dir=$1 start=$2 line
    while IFS= read -r line; do
        line=${line//$'\r'/}
        case $line in
            "@@"*) : > "$dir/alive" ;;
        esac
        case $line in
            "@@ "*) printf '%s\n' "${line#@@ }" ;;
            "@@XENHOST exit "*) echo "${line#@@XENHOST exit }" > "$dir/rc" ;;
            "@@XENHOST "*) progress "${line#@@XENHOST } ($((SECONDS - start)) s)" ;;
        esac
    done
}

# _xenhost_watchdog DIR: stops the host's QEMU (DIR/qemu.pid) once dom0
# has been silent (DIR/alive not renewed) for XENHOST_STALL seconds, and
# leaves DIR/stalled behind.
_xenhost_watchdog() {
    local dir=$1 quiet
    while sleep 10; do
        quiet=$(($(date +%s) - $(stat -c %Y "$dir/alive")))
        if ((quiet >= XENHOST_STALL)); then
            : > "$dir/stalled"
            [[ -s $dir/qemu.pid ]] && kill "$(cat "$dir/qemu.pid")" 2>/dev/null
            return
        fi
    done
}
