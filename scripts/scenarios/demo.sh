#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# The two-domain demo: two domains of our kernel boot under xl; each prints
# a banner with its domain id, memory size and command line. A process in
# domain A shares 256 pages through /dev/xen/gntdev, publishing the grant
# references and an event channel in xenstore; a process in domain B maps
# them all through gntdev and mmap (the device pager's populate() maps the
# whole run with one batched grant hypercall on the first fault), checks
# them and writes a reply that A checks; B exits without unmapping, and
# its kernel's unmap notify (a byte cleared and an event) tells A, which
# unshares (docs/share-protocol.md, gntdev variant). Prints both domains'
# output and the counters per mapping. Then the vchan part: dom0's
# unmodified vchan-socket-proxy (Debian's xen-utils-4.17, libxenvchan)
# talks to vchan-cat, a process in a domain of ours (tools/vchan), with
# the bytes, their CRC-32s on both ends and the throughput. Run from the project root on a Xen
# host (or via scripts/demo).
. scripts/lib/xl.sh
. scripts/lib/share.sh
. scripts/lib/vchan.sh

PAGES=256

# demo_counters: the counters of B's kernel and program per mapping.
demo_counters() {
    local _maps _k
    _maps=$(counter xenguest-b mapper mappings)
    [ "${_maps:-0}" -gt 0 ] || return 0
    _k="counter xenguest-b mapper"
    echo "  counters, $PAGES pages in $_maps mapping(s):"
    echo "    map hypercalls per mapping:   $(($($_k map_hypercalls) / _maps)) ($($_k eagain_retries) EAGAIN retries apart)"
    echo "    page faults per mapping:      $(($(counter xenguest-b gnt-map faults) / _maps)) ($(($($_k populates) / _maps)) populate)"
    echo "    unmap hypercalls per mapping: $(($($_k unmap_hypercalls) / _maps))"
    echo "    unmap notify: $($_k notify_cleared) byte(s) cleared, $($_k events_sent) event(s) sent"
}

# demo_banner CASE NAME ID: NAME's banner must name domain ID and report
# most of its 32 MiB.
demo_banner() {
    local _domid _kib
    show_log "$2"
    _domid=$(counter "$2" banner domid)
    _kib=$(counter "$2" banner ram_kib)
    if [ "$_domid" != "$3" ]; then
        fail "$1" "no banner naming domain $3 (${_domid:-none})"
    elif [ "${_kib:-0}" -lt 30000 ] || [ "${_kib:-0}" -gt 32768 ]; then
        fail "$1" "memory map reports ${_kib:-no} KiB for a 32 MiB domain"
    else
        pass "$1 (domain $3, $_kib KiB)"
    fi
}

run_case gntdev_pair gntdev-demo "$PAGES"
demo_counters
demo_banner banner-a xenguest-a "$(guest_created_domid xenguest-a)"
demo_banner banner-b xenguest-b "$(guest_created_domid xenguest-b)"
# 256 KiB each way: in-page rings (what the proxy asks for) are slow
# under emulation.
SIZE=262144
run_case dom0_case vchan-demo server client
finish
