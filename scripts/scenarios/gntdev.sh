#!/bin/sh
# gntdev: user processes share and map grants through /dev/xen/gntdev
# (tools/utest's gnt-share in domain A, gnt-map in domain B, over the
# tools/gnttab library, with /dev/xen/xenstore and /dev/xen/evtchn for the
# protocol of docs/share-protocol.md, gntdev variant). B maps all N pages
# as one mapping (one map hypercall, one page fault), verifies them, replies
# and exits WITHOUT unmapping: its kernel tears the mapping down at exit and
# fires the unmap notify (byte cleared + event) that A waits for. Each
# kernel checks that free pages, grant references and hole frames are back
# to where they started, and prints them.
. scripts/lib/xl.sh
. scripts/lib/share.sh

# gntdev_pair CASE PAGES [XL OVERRIDE...]: one run of the demo pair.
gntdev_pair() {
    _case=$1 _pages=$2
    shift 2
    pair_run "$_case" gntdev-map "scenario=gntdev-share pages=$_pages" "$@" || return
    _la=$(guest_log xenguest-a)
    _lb=$(guest_log xenguest-b)
    grep -h '^gnt-\|^sharer:\|^mapper:' "$_la" "$_lb" | sed 's/\r$//; s/^/  /'
    if ! _why=$(guest_result xenguest-a gntdev-share); then
        fail "$_case" "A: $_why"
        show_log xenguest-a
        show_log xenguest-b
    elif ! _why=$(guest_result xenguest-b gntdev-map); then
        fail "$_case" "B: $_why"
        show_log xenguest-b
    else
        _counts=$(sed -n 's/^gnt-map: mapped [0-9]* pages in \([0-9]*\) mapping(s): \([0-9]*\) map hypercall(s), \([0-9]*\) page fault(s).*/\1 mapping(s), \2 map hypercall(s), \3 fault(s)/p' "$_lb")
        _unmaps=$(sed -n 's/^mapper: .* \([0-9]*\) unmap hypercall(s).*/\1/p' "$_lb")
        pass "$_case ($_pages pages: $_counts, $_unmaps unmap hypercall(s); notify on exit)"
    fi
}

# bad input to the device: each refused with its errno, kernel alive, free
# pages back to baseline.
if guest_create xenguest-bad configs/xenguest-a.cfg 'cmdline="scenario=gntdev-bad loglevel=info"'; then
    guest_unpause xenguest-bad
    guest_wait xenguest-bad
    grep -h '^gnt-bad\|^process ' "$(guest_log xenguest-bad)" | sed 's/\r$//; s/^/  /'
    if why=$(guest_result xenguest-bad gntdev-bad); then
        pass gntdev-bad
    else
        fail gntdev-bad "$why"
        show_log xenguest-bad
    fi
else
    fail gntdev-bad "create"
fi

gntdev_pair gntdev-1 1
gntdev_pair gntdev-16 16
gntdev_pair gntdev-1024 1024
finish
