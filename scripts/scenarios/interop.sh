#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# interop: our kernel against a peer none of us wrote. dom0's tools/xen-interop,
# built on Xen's libxengnttab/libxenevtchn/libxenstore, runs the share
# protocol of docs/share-protocol.md with one guest, in both roles:
#   dom0-shares: dom0 grants 16 pages, the guest (scenario=share-mapper) maps;
#   dom0-maps:   the guest (scenario=share-sharer) grants 16 pages, dom0 maps;
# and its gntdev variant (tool option -g) with the guest's user programs on
# our /dev/xen/gntdev against Linux's gntalloc and gntdev:
#   gntdev-dom0-shares: dom0 shares with xengntshr, the guest's gnt-map
#                (scenario=gntdev-map) maps and exits with its unmap notify;
#   gntdev-dom0-maps: the guest's gnt-share (scenario=gntdev-share) shares,
#                dom0 maps with xengnttab and notifies as it unmaps.
# pv-interop-*: the same four with the guest in PV (INTEROP_TYPE, xl's
# type=).
# Each case passes when both dom0's tool and the guest report PASS.
# Run from the project root on a Xen host (or via scripts/test).
. scripts/lib/xl.sh

TOOL=target/dom0-tools/xen-interop
# Near the top of u32: the page pattern wraps inside the first pages.
SEED=4294966000
# The gntdev variant's notify byte is the top byte of the last word: a
# pattern that wraps ends below 2^24 and that byte would read 0 before any
# notify. This one carries into the top byte (0xff) within page 0 instead.
GNTDEV_SEED=4278190000
PAGES=16
# Each wait of the tool; the guest gets longer to come and go.
TOOL_TIMEOUT=${INTEROP_TIMEOUT:-30}

# interop_case CASE GUEST_SCENARIO GUEST_ARGS TOOL_ARGS...: creates
# xenguest-a paused with GUEST_SCENARIO, GUEST_ARGS and peer=0, starts the tool (TOOL_ARGS, with DOMID
# replaced by the guest's id), unpauses the guest and judges both.
interop_case() {
    local _case _scn _gargs _out _id _args _a _pid _trc _role _seed _r _why
    _case=$1
    _scn=$2
    _gargs=$3
    shift 3
    _out=$XENGUEST_LOGS/$_case.tool
    if ! guest_create xenguest-a configs/xenguest-a.cfg \
        "cmdline=\"scenario=$_scn $_gargs peer=0 loglevel=info\"" "type=\"${INTEROP_TYPE:-pvh}\""; then
        fail "$_case" "xl create failed"
        return
    fi
    _id=$(guest_domid xenguest-a)
    _args=""
    for _a in "$@"; do
        [ "$_a" = DOMID ] && _a=$_id
        _args="$_args $_a"
    done
    # The tool publishes or watches first; the guest then finds it.
    # shellcheck disable=SC2086
    "$TOOL" -t "$TOOL_TIMEOUT" $_args >"$_out" 2>&1 &
    _pid=$!
    guest_unpause xenguest-a
    wait_peer "$_pid" xenguest-a
    _trc=$?
    guest_wait xenguest-a
    sed 's/^/  dom0 | /' "$_out"
    grep -h '^gnt-\|^sharer:\|^mapper:' "$(guest_log xenguest-a)" | sed 's/\r$//; s/^/  guest | /'
    _role=$(counter_in "$_out" interop role)
    # The seed as dom0 used it: its own, or the one the guest published.
    _seed=$(counter_in "$_out" interop seed)
    if [ "$_trc" -ne 0 ]; then
        _r=$(grep '^RESULT ' "$_out" | tail -n 1)
        fail "$_case" "dom0: ${_r:-no RESULT, status $_trc}"
        show_log xenguest-a
    elif ! _why=$(guest_result xenguest-a "$_scn"); then
        fail "$_case" "guest: $_why"
        show_log xenguest-a
    else
        pass "$_case (domain $_id, $PAGES pages, seed ${_seed:-?}, dom0 ${_role:-?} and guest $_scn)"
    fi
}

if [ ! -x "$TOOL" ]; then
    fail interop "no $TOOL (scripts/lib/tools.sh builds it)"
    finish
    exit
fi
run_case interop_case interop-dom0-shares share-mapper "" share DOMID "$PAGES" "$SEED"
run_case interop_case interop-dom0-maps share-sharer "pages=$PAGES seed=$SEED" map DOMID
run_case interop_case interop-gntdev-dom0-shares gntdev-map "" -g share DOMID "$PAGES" "$GNTDEV_SEED"
run_case interop_case interop-gntdev-dom0-maps gntdev-share "pages=$PAGES" -g map DOMID
# The guest in PV (kernel/src/arch/pv.rs): where it shares, its grant
# entries name machine frames; where it maps, the kernel's mapper maps
# each grant at its hole frame's address in the kernel's page table, and
# gnt-map's populate maps them straight into the process's page table
# (kernel/src/arch/pv_grant.rs).
INTEROP_TYPE=pv
run_case interop_case pv-interop-dom0-shares share-mapper "" share DOMID "$PAGES" "$SEED"
run_case interop_case pv-interop-dom0-maps share-sharer "pages=$PAGES seed=$SEED" map DOMID
run_case interop_case pv-interop-gntdev-dom0-shares gntdev-map "" -g share DOMID "$PAGES" "$GNTDEV_SEED"
run_case interop_case pv-interop-gntdev-dom0-maps gntdev-share "pages=$PAGES" -g map DOMID
INTEROP_TYPE=
finish
