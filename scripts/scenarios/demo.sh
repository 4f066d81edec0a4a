#!/bin/sh
# The two-domain demo: two domains of our kernel boot under xl, each prints
# a banner with its domain id, memory size and command line, and both power
# off. Run from the project root on a Xen host (or via scripts/demo).
. scripts/lib/xl.sh

for g in a b; do
    guest_create "xenguest-$g" "configs/xenguest-$g.cfg" || fail "create-$g" "xl create failed"
done
ida=$(guest_domid xenguest-a)
idb=$(guest_domid xenguest-b)
guest_unpause xenguest-a
guest_unpause xenguest-b
guest_wait xenguest-a
guest_wait xenguest-b

for g in a b; do
    name=xenguest-$g
    id=$(eval echo "\$id$g")
    log=$(guest_log "$name")
    show_log "$name"
    if ! why=$(guest_result "$name" banner); then
        fail "boot-$g" "$why"
    elif ! grep -q "^xenguest: domain $id on Xen" "$log"; then
        fail "boot-$g" "banner does not name domain $id"
    else
        # 32 MiB configured: the memory map must report most of it.
        kib=$(sed -n 's/.*, \([0-9]*\) KiB RAM.*/\1/p' "$log")
        if [ "${kib:-0}" -lt 30000 ] || [ "${kib:-0}" -gt 32768 ]; then
            fail "boot-$g" "memory map reports ${kib:-no} KiB for a 32 MiB domain"
        else
            pass "boot-$g (domain $id, $kib KiB)"
        fi
    fi
done
finish
