#!/bin/sh
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
gntdev_pair gntdev-demo "$PAGES"
# The counters of B's kernel for its one mapping.
sed -n 's/^mapper: gnt-map exited with status [0-9]*; gntdev: \([0-9]*\) mapping(s), \([0-9]*\) map hypercall(s), \([0-9]*\) populate(s), \([0-9]*\) unmap hypercall(s), \([0-9]*\) notify byte(s) cleared, \([0-9]*\) event(s) sent, \([0-9]*\) EAGAIN retries.*/\1 \2 \3 \4 \5 \6 \7/p' \
    "$(guest_log xenguest-b)" | tr -d '\r' | {
    read -r maps calls pops unmaps cleared sent retries && [ "$maps" -gt 0 ] || exit 0
    faults=$(sed -n 's/^gnt-map: .* \([0-9]*\) page fault(s).*/\1/p' "$(guest_log xenguest-b)" | tr -d '\r')
    echo "  counters, $PAGES pages in $maps mapping(s):"
    echo "    map hypercalls per mapping:   $((calls / maps)) ($retries EAGAIN retries apart)"
    echo "    page faults per mapping:      $((faults / maps)) ($((pops / maps)) populate)"
    echo "    unmap hypercalls per mapping: $((unmaps / maps))"
    echo "    unmap notify: $cleared byte(s) cleared, $sent event(s) sent"
}
for g in a b; do
    name=xenguest-$g
    id=$(eval echo "\$PAIR_$(echo $g | tr ab AB)_ID")
    log=$(guest_log "$name")
    show_log "$name"
    if ! grep -q "^xenguest: domain $id on Xen" "$log"; then
        fail "banner-$g" "no banner naming domain $id"
    else
        # 32 MiB configured: the memory map must report most of it.
        kib=$(sed -n 's/.*, \([0-9]*\) KiB RAM.*/\1/p' "$log")
        if [ "${kib:-0}" -lt 30000 ] || [ "${kib:-0}" -gt 32768 ]; then
            fail "banner-$g" "memory map reports ${kib:-no} KiB for a 32 MiB domain"
        else
            pass "banner-$g (domain $id, $kib KiB)"
        fi
    fi
done
# 256 KiB each way: in-page rings (what the proxy asks for) are slow
# under emulation.
SIZE=262144
dom0_case vchan-demo server client
finish
