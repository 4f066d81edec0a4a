# The share protocol between two of our domains (docs/share-protocol.md),
# for scenario scripts. Source after xl.sh.
# shellcheck shell=dash

# pair_create CASE MAPPER_SCENARIO SHARER_ARGS [XL OVERRIDE...]: creates
# domain B (xenguest-b) running MAPPER_SCENARIO (a scenario name and its
# own words) and then domain A (xenguest-a) with the command-line words
# SHARER_ARGS plus peer=B, both paused, writes A's id into B's
# data/xenguest-peer node and sets PAIR_A_ID and PAIR_B_ID. B is created
# first so that A's command line can name it; B learns A's id from
# xenstore, as split drivers find their peers. Returns 1 (after a FAIL
# line) when a domain cannot be created. PAIR_A_TYPE and PAIR_B_TYPE
# (pvh when unset) choose each domain's guest type (xl's type=).
pair_create() {
    local _case _mapper _sharer
    _case=$1 _mapper=$2 _sharer=$3
    shift 3
    if ! guest_create xenguest-b configs/xenguest-b.cfg \
        "cmdline=\"scenario=$_mapper loglevel=info\"" "type=\"${PAIR_B_TYPE:-pvh}\"" "$@"; then
        fail "$_case" "xl create of B failed"
        return 1
    fi
    PAIR_B_ID=$(guest_domid xenguest-b)
    if ! guest_create xenguest-a configs/xenguest-a.cfg \
        "cmdline=\"$_sharer peer=$PAIR_B_ID loglevel=info\"" "type=\"${PAIR_A_TYPE:-pvh}\"" "$@"; then
        fail "$_case" "xl create of A failed"
        guest_destroy xenguest-b
        return 1
    fi
    PAIR_A_ID=$(guest_domid xenguest-a)
    xenstore-write "/local/domain/$PAIR_B_ID/data/xenguest-peer" "$PAIR_A_ID"
}

# pair_abort CASE WHY: the FAIL line of a pair case that cannot go on,
# both guests' consoles, and both domains destroyed.
pair_abort() {
    fail "$1" "$2"
    show_log xenguest-a
    show_log xenguest-b
    guest_destroy xenguest-a
    guest_destroy xenguest-b
}

# pair_start CASE MAPPER_SCENARIO SHARER_ARGS [XL OVERRIDE...]:
# pair_create, then unpauses both.
pair_start() {
    pair_create "$@" || return
    guest_unpause xenguest-a
    guest_unpause xenguest-b
}

# pair_run CASE MAPPER_SCENARIO SHARER_ARGS [XL OVERRIDE...]: pair_start,
# then runs both domains to the end.
pair_run() {
    pair_start "$@" || return
    guests_wait xenguest-a xenguest-b
}

# pair_wait_state SECONDS VALUE: waits until B's map/state node (the
# protocol's HOME(B)/map/state) reads VALUE; fails after SECONDS.
pair_wait_state() {
    local _end
    _end=$(($(date +%s) + $1))
    while [ "$(xenstore-read "/local/domain/$PAIR_B_ID/data/xenguest/map/state" 2>/dev/null)" != "$2" ]; do
        [ "$(date +%s)" -gt "$_end" ] && return 1
        sleep 0.1
    done
}

# pair_judge CASE SHARER_SCENARIO MAPPER_SCENARIO DETAIL: the one result
# line of a pair run: FAIL, with the guests' logs, unless A reports PASS
# for SHARER_SCENARIO and B for MAPPER_SCENARIO; else PASS with DETAIL.
pair_judge() {
    local _why
    if ! _why=$(guest_result xenguest-a "$2"); then
        # B's end too: a stalled B is often why A failed.
        fail "$1" "A: $_why (B ended: $(guest_end xenguest-b))"
        show_log xenguest-a
        show_log xenguest-b
    elif ! _why=$(guest_result xenguest-b "$3"); then
        fail "$1" "B: $_why"
        show_log xenguest-b
    else
        pass "$1 ($4)"
    fi
}

# share_pair CASE PREFIX PAGES: domain A runs PREFIX-sharer with PAGES
# pages, domain B runs PREFIX-mapper (kernel-level sharing); prints the
# protocol lines of both and one result line.
share_pair() {
    local _case _prefix _pages
    _case=$1 _prefix=$2 _pages=$3
    pair_run "$_case" "$_prefix-mapper" "scenario=$_prefix-sharer pages=$_pages" || return
    grep -h '^sharer:\|^mapper:' "$(guest_log xenguest-a)" "$(guest_log xenguest-b)" | sed 's/^/  /'
    pair_judge "$_case" "$_prefix-sharer" "$_prefix-mapper" \
        "$_pages pages, $(counter xenguest-b mapper map_hypercalls) map hypercall(s)"
}

# show_lines NAME...: the protocol and counter lines of the named guests.
show_lines() {
    local _g
    for _g in "$@"; do
        grep -h '^fuzz: peer: \|^fuzz: [0-9]* process\|^chaos: \|^gnt-\|^sharer:\|^mapper:\|^process \|^COUNTERS ' "$(guest_log "$_g")" | sed 's/\r$//; s/^/  /'
    done
}

# gntdev_pair CASE PAGES [XL OVERRIDE...]: one run of the gntdev pair
# (gnt-share in A, gnt-map in B: the protocol's gntdev variant); prints
# both sides' lines and one result line with the counters per mapping.
gntdev_pair() {
    local _case _pages _maps _calls _faults _unmaps _retries
    _case=$1 _pages=$2
    shift 2
    pair_run "$_case" gntdev-map "scenario=gntdev-share pages=$_pages" "$@" || return
    show_lines xenguest-a xenguest-b
    _maps=$(counter xenguest-b gnt-map mappings)
    _calls=$(counter xenguest-b gnt-map map_hypercalls)
    _faults=$(counter xenguest-b gnt-map faults)
    _unmaps=$(counter xenguest-b mapper unmap_hypercalls)
    _retries=$(counter xenguest-b mapper eagain_retries)
    pair_judge "$_case" gntdev-share gntdev-map \
        "$_pages pages: $_maps mapping(s), $_calls map hypercall(s), $_faults fault(s), $_unmaps unmap hypercall(s); ${_retries:-?} EAGAIN retries; notify on exit"
}

# gntdev_mode CASE MODE PAGES DETAIL: a pair run with gnt-map in mode MODE
# (kernel/src/scenario/gntdev.rs); passes when both sides pass, with what
# the function DETAIL prints (given PAGES) as the result's detail.
gntdev_mode() {
    pair_run "$1" "gntdev-map mode=$2" "scenario=gntdev-share pages=$3" || return
    show_lines xenguest-a xenguest-b
    pair_judge "$1" gntdev-share gntdev-map "$("$4" "$3")"
}

# gntdev_survivor CASE SURVIVOR SCENARIO DETAIL [SECONDS [LINE]]: waits
# for the survivor of a destroyed pair (at most SECONDS) and judges it;
# with LINE, its console must also have a line that starts with LINE.
gntdev_survivor() {
    local _why
    guest_wait "$2" "${5:-$GUEST_TIMEOUT}"
    show_lines "$2"
    if ! _why=$(guest_result "$2" "$3"); then
        fail "$1" "$2: $_why"
        show_log "$2"
    elif [ -n "$6" ] && ! tr -d '\r' <"$(guest_log "$2")" | grep -q "^$6"; then
        fail "$1" "$2: no line \"$6\""
        show_log "$2"
    else
        pass "$1 ($2 $4)"
    fi
}

# pair_at_step CASE MAPPER_SCENARIO SHARER_ARGS WHO STEP VICTIM SURVIVOR
#     SURVIVOR_SCENARIO DETAIL [LINE]: a pair (pair_create's arguments)
# in which WHO (xenguest-a or xenguest-b) stops at its checkpoint STEP
# (tools/utest/src/checkpoint.rs, kernel/src/scenario/checkpoint.rs);
# there the test destroys VICTIM, releases WHO if it survives, and
# SURVIVOR must end as SURVIVOR_SCENARIO expects, back at its baseline,
# within 60 s (gntdev_survivor, with LINE).
pair_at_step() {
    local _case _who _step _victim _id _end
    _case=$1 _who=$4 _step=$5 _victim=$6
    pair_create "$_case" "$2" "$3" || return
    if [ "$_who" = xenguest-a ]; then _id=$PAIR_A_ID; else _id=$PAIR_B_ID; fi
    xenstore-write "/local/domain/$_id/data/xenguest-checkpoint" "$_step"
    guest_unpause xenguest-a
    guest_unpause xenguest-b
    _end=$(($(date +%s) + 60))
    until [ "$(xenstore-read "/local/domain/$_id/data/xenguest-at" 2>/dev/null)" = "$_step" ]; do
        if [ "$(date +%s)" -gt "$_end" ]; then
            pair_abort "$_case" "$_who never reached its checkpoint $_step"
            return
        fi
        sleep 0.1
    done
    xl destroy "$_victim"
    echo "  xl destroy $_victim with $_who at its checkpoint $_step"
    [ "$_victim" = "$_who" ] || xenstore-rm "/local/domain/$_id/data/xenguest-checkpoint"
    gntdev_survivor "$_case" "$7" "$8" "$9" 60 "${10}"
}
