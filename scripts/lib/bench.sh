#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# The emulated host's part of scripts/bench (docs/benchmarks.md), run in
# dom0 from the project root:
#     sh scripts/lib/bench.sh PAGES ROUNDS TRANSFER_PAGES
# Prints the `BENCH` lines of every benchmark as they come, for the host's
# benchplot, then one result line per part ("PASS bench-ours", ...):
#   bench-ours:  our gnt-share shares PAGES pages with our gnt-map in mode
#                bench: the clock, the map sweep with populate and with one
#                fault per page, the transfer of TRANSFER_PAGES pages;
#   bench-linux: our gnt-share shares PAGES pages with dom0, whose
#                xen-interop -b maps them through Linux's gntdev.
# ROUNDS rounds of every figure.
. scripts/lib/xl.sh
. scripts/lib/share.sh

PAGES=$1
ROUNDS=$2
TRANSFER=$3
TOOL=target/dom0-tools/xen-interop
# Each part's time limit, in seconds.
GUEST_TIMEOUT=${BENCH_TIMEOUT:-1500}

# MiB of RAM: the kernel and programs, the shared pages, and for the
# mapper also its two transfer buffers (the pair's domains get the same).
SHARER_MIB=$((44 + PAGES / 256))
MAPPER_MIB=$((SHARER_MIB + TRANSFER / 128))
# Grant frames of the sharer: 512 references a frame, 8 reserved.
FRAMES=$(((PAGES + 8 + 511) / 512))
[ "$FRAMES" -lt 32 ] && FRAMES=32

echo "BENCH config pages=$PAGES rounds=$ROUNDS transfer_pages=$TRANSFER sharer_mib=$SHARER_MIB mapper_mib=$MAPPER_MIB"
xl info | awk '$1 ~ /^(xen_version|cpu_mhz|nr_cpus|total_memory)$/ && $2 == ":" {
    printf "BENCH host %s=%s\n", $1, $3 }'
echo "BENCH host dom0_kernel=$(uname -r) dom0_type=$(cat /sys/hypervisor/guest_type 2>/dev/null || echo unknown)"

# bench_follow NAME: prints NAME's new BENCH lines every 2 s until it
# shuts down or the time limit passes; then waits for it as guest_wait
# does. The newest line waits for the next round: xenconsoled may have
# written only part of it.
bench_follow() {
    local _log _seen _n _end
    _log=$(guest_log "$1")
    _seen=0
    _end=$(($(date +%s) + GUEST_TIMEOUT))
    while :; do
        case $(guest_state "$1") in
            "" | *s*) break ;;
        esac
        [ "$(date +%s)" -gt "$_end" ] && break
        _n=$(($(tr -d '\r' <"$_log" 2>/dev/null | grep -c '^BENCH ') - 1))
        if [ "$_n" -gt "$_seen" ]; then
            tr -d '\r' <"$_log" | grep '^BENCH ' | sed -n "$((_seen + 1)),${_n}p"
            _seen=$_n
        fi
        sleep 2
    done
    guest_wait "$1" 60
    tr -d '\r' <"$_log" 2>/dev/null | grep '^BENCH ' | sed -n "$((_seen + 1)),\$p"
}

# bench_ours CASE: our sharer and our mapper in mode bench. A try that
# failed by a fault of the emulated host (run_case's rules, scripts/lib/
# xl.sh) before B printed any figure is made again, up to 3 tries: its
# lines stream, so run_case cannot wrap it, and a try with no BENCH line
# leaves nothing for scripts/bench to read twice.
bench_ours() {
    local _try
    for _try in 1 2 3; do
        xl dmesg -c >/dev/null 2>&1
        pair_create "$1" "gntdev-map mode=bench" "scenario=gntdev-share pages=$PAGES" \
            "memory=$MAPPER_MIB" "max_grant_frames=$FRAMES" || return
        xenstore-write "/local/domain/$PAIR_B_ID/data/bench/rounds" "$ROUNDS" \
            "/local/domain/$PAIR_B_ID/data/bench/transfer-pages" "$TRANSFER"
        guest_unpause xenguest-a
        guest_unpause xenguest-b
        bench_follow xenguest-b
        guest_wait xenguest-a
        grep -h '^gnt-map: FAIL\|^gnt-share: FAIL\|^COUNTERS mapper ' "$(guest_log xenguest-a)" "$(guest_log xenguest-b)" |
            sed 's/\r$//; s/^/  /'
        if [ "$_try" != 3 ] && ! bench_passed && ! grep -q '^BENCH ' "$(guest_log xenguest-b)" &&
            { emulation_fault || guest_triple_fault; }; then
            echo "  $1: the emulated host faulted (Xen's dump above) before any figure; running the case again"
            xen_triple_fault "$PAIR_A_ID"
            xen_triple_fault "$PAIR_B_ID"
            destroy_all
            continue
        fi
        pair_judge "$1" gntdev-share gntdev-map "$PAGES pages, $ROUNDS rounds, transfer of $TRANSFER pages"
        return
    done
}

# bench_passed: whether both domains of the bench pair passed.
bench_passed() {
    guest_result xenguest-a gntdev-share >/dev/null && guest_result xenguest-b gntdev-map >/dev/null
}

# bench_linux CASE: our sharer grants to dom0, whose xen-interop maps the
# grants through Linux's gntdev (-b: the sweep first), then runs the
# protocol's gntdev variant to its end.
bench_linux() {
    local _out _id _pid _trc _why _r
    _out=$XENGUEST_LOGS/$1.tool
    if ! guest_create xenguest-a configs/xenguest-a.cfg \
        "cmdline=\"scenario=gntdev-share pages=$PAGES peer=0 loglevel=info\"" \
        "memory=$SHARER_MIB" "max_grant_frames=$FRAMES"; then
        fail "$1" "xl create failed"
        return
    fi
    _id=$(guest_domid xenguest-a)
    "$TOOL" -t "$GUEST_TIMEOUT" -g -b "$ROUNDS" map "$_id" >"$_out" 2>&1 &
    _pid=$!
    guest_unpause xenguest-a
    wait "$_pid"
    _trc=$?
    guest_wait xenguest-a
    grep '^BENCH ' "$_out"
    if [ "$_trc" -ne 0 ]; then
        _r=$(grep '^RESULT ' "$_out" | tail -n 1)
        fail "$1" "dom0: ${_r:-no RESULT, status $_trc}"
        tail -n 20 "$_out" | sed 's/^/  dom0 | /'
        show_log xenguest-a
    elif ! _why=$(guest_result xenguest-a gntdev-share); then
        fail "$1" "guest: $_why"
        show_log xenguest-a
    else
        pass "$1 ($PAGES pages granted to dom0, $ROUNDS rounds)"
    fi
}

if [ ! -x "$TOOL" ]; then
    fail bench-linux "no $TOOL (scripts/lib/tools.sh builds it)"
    finish
    exit
fi
# Not run_case: its output comes at the case's end, and these print
# their lines as they come; each wait has its own limit.
bench_ours bench-ours
destroy_all
bench_linux bench-linux
destroy_all
finish
