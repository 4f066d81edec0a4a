# The share protocol between two of our domains (docs/share-protocol.md),
# for scenario scripts. Source after xl.sh.
# shellcheck shell=sh

# share_pair CASE PREFIX PAGES: domain A (xenguest-a) runs PREFIX-sharer
# with PAGES pages, domain B (xenguest-b) runs PREFIX-mapper; prints the
# protocol lines of both and one result line. B is created first, paused,
# so that A's command line can name it; B learns A's id from the
# data/xenguest-peer node the toolstack writes in its xenstore home.
share_pair() {
    _case=$1 _prefix=$2 _pages=$3
    if ! guest_create xenguest-b configs/xenguest-b.cfg \
        "cmdline=\"scenario=$_prefix-mapper loglevel=info\""; then
        fail "$_case" "xl create of B failed"
        return
    fi
    _idb=$(guest_domid xenguest-b)
    if ! guest_create xenguest-a configs/xenguest-a.cfg \
        "cmdline=\"scenario=$_prefix-sharer peer=$_idb pages=$_pages loglevel=info\""; then
        fail "$_case" "xl create of A failed"
        xl destroy xenguest-b
        return
    fi
    _ida=$(guest_domid xenguest-a)
    xenstore-write "/local/domain/$_idb/data/xenguest-peer" "$_ida"
    guest_unpause xenguest-a
    guest_unpause xenguest-b
    guest_wait xenguest-a
    guest_wait xenguest-b
    SHARE_A_ID=$_ida
    SHARE_B_ID=$_idb
    grep -h '^sharer:\|^mapper:' "$(guest_log xenguest-a)" "$(guest_log xenguest-b)" | sed 's/^/  /'
    if ! _why=$(guest_result xenguest-a "$_prefix-sharer"); then
        fail "$_case" "A: $_why"
        show_log xenguest-a
    elif ! _why=$(guest_result xenguest-b "$_prefix-mapper"); then
        fail "$_case" "B: $_why"
        show_log xenguest-b
    else
        _calls=$(sed -n 's/.* with \([0-9]*\) map hypercall.*/\1/p' "$(guest_log xenguest-b)")
        pass "$_case ($_pages pages, $_calls map hypercall(s))"
    fi
}
