#!/bin/sh
# share: domain A grants N pages to domain B, which maps all N with one
# batched hypercall, verifies them, replies and unmaps; A checks the reply
# and ends access (docs/share-protocol.md). N = 1, 256 and 1024. Then the
# revoke variant: A ends access while B still maps; the ends are deferred
# and reaped after B unmaps.
. scripts/lib/xl.sh

# pair CASE SCENARIO_PREFIX PAGES
pair() {
    case=$1 prefix=$2 pages=$3
    guest_create xenguest-b configs/xenguest-b.cfg \
        "cmdline=\"scenario=$prefix-mapper loglevel=info\"" || { fail "$case" "create B"; return; }
    idb=$(guest_domid xenguest-b)
    guest_create xenguest-a configs/xenguest-a.cfg \
        "cmdline=\"scenario=$prefix-sharer peer=$idb pages=$pages loglevel=info\"" ||
        { fail "$case" "create A"; xl destroy xenguest-b; return; }
    ida=$(guest_domid xenguest-a)
    # B learns A's id only now: it is paused, so its command line cannot
    # change; it reads the peer from xenstore instead.
    xenstore-write "/local/domain/$idb/data/xenguest-peer" "$ida"
    guest_unpause xenguest-a
    guest_unpause xenguest-b
    guest_wait xenguest-a
    guest_wait xenguest-b
    grep -h '^sharer:\|^mapper:' "$(guest_log xenguest-a)" "$(guest_log xenguest-b)" | sed 's/^/  /'
    if ! why=$(guest_result xenguest-a "$prefix-sharer"); then
        fail "$case" "A: $why"
        show_log xenguest-a
    elif ! why=$(guest_result xenguest-b "$prefix-mapper"); then
        fail "$case" "B: $why"
        show_log xenguest-b
    else
        calls=$(sed -n 's/.* with \([0-9]*\) map hypercall.*/\1/p' "$(guest_log xenguest-b)")
        pass "$case ($pages pages, $calls map hypercall(s))"
    fi
}

pair share-1 share 1
pair share-256 share 256
pair share-1024 share 1024
pair revoke-64 revoke 64
finish
