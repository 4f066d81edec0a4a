#!/bin/sh
# The two-domain demo: two domains of our kernel boot under xl; each prints
# a banner with its domain id, memory size and command line; domain A then
# grants 256 pages to domain B, which maps them all with one batched grant
# hypercall, checks them and writes a reply that A checks
# (docs/share-protocol.md); both power off. Run from the project root on a
# Xen host (or via scripts/demo).
. scripts/lib/xl.sh
. scripts/lib/share.sh

share_pair share-256 share 256
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
finish
