#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# lifecycle: the toolstack's requests through the control/ nodes
# (kernel/src/control.rs).
#   life-shutdown: a pair where B maps 16 of A's pages through gntdev and
#       holds them; a junk value in B's control/shutdown is ignored (a log
#       line, B runs on); `xl sysrq B t` prints B's report (its process,
#       its gntdev mapping); then `xl shutdown -w B`: B ends with reason
#       poweroff within seconds, its process killed and its mapping torn
#       down with the unmap notify, which A sees; A ends cleanly, back at
#       its baseline (every grant ended, none left for a dead peer);
#   life-reboot: the same pair and `xl reboot B`: B ends with reason
#       reboot (its on_reboot applies), A as above;
#   life-sysrq: `xl sysrq X t` prints the kernel's report (processes,
#       threads, memory, grants, gntdev) and the domain runs on; then
#       `xl sysrq X c` crashes it through a kernel page fault: it ends with
#       reason crash and its console has the register dump.
#   life-save-cancel: a guest shares 16 pages with dom0 (gnt-share);
#       `xl save -c` checkpoints it, which Xen reports to it as a
#       cancelled suspend: the same domain runs on, and dom0's
#       tools/xen-interop then maps, verifies and unmaps its pages;
#   life-save-restore: a guest on 2 vCPUs shares 256 pages with dom0
#       across a move (gnt-share moves=1): dom0 maps and verifies them,
#       `xl save` and `xl restore` move the domain, and dom0 maps the same
#       references again under its new domain id and verifies them: our
#       grants came back with the domain; it then ends at its baseline;
#   life-migrate: the same with `xl migrate` to this host;
#   life-save-mapper: the pair of life-shutdown, and B, which maps A's
#       pages, is moved by `xl save` and `xl restore`: B's suspend ends
#       its process (foreign mappings cannot move), whose teardown unmaps
#       with the notify; A sees it and ends at its baseline, and B resumes
#       in its new domain and ends at its own.
#   pv-life-save-cancel, pv-life-save-restore, pv-life-migrate:
#       life-save-cancel, life-save-restore and life-migrate with the
#       guest in PV (kernel/src/arch/pv_suspend.rs:
#       the p2m tree in the shared info, the start info named in rdx, Xen's
#       frames unmapped for the save; the grants name the new domain's
#       machine frames after the move).
# The features B advertises (control/feature-*) are checked too.
. scripts/lib/xl.sh
. scripts/lib/share.sh

# life_pair CASE: starts the holding pair and waits until B verified A's
# pages and A read the verdict; a FAIL line and 1 otherwise.
life_pair() {
    pair_start "$1" "gntdev-map mode=hold" "scenario=gntdev-share pages=16" || return 1
    if ! pair_wait_state 60 verified || ! guest_wait_line xenguest-a 60 "gnt-share: mapper verified"; then
        fail "$1" "B never verified the pages, or A never read the verdict"
        show_log xenguest-a
        show_log xenguest-b
        destroy_all
        return 1
    fi
}

# life_features: B's control/feature-* nodes as "poweroff reboot suspend".
life_features() {
    local _f _out
    _out=
    for _f in poweroff reboot suspend; do
        _out="$_out$(xenstore-read "/local/domain/$PAIR_B_ID/control/feature-$_f" 2>/dev/null || echo -) "
    done
    echo "${_out% }"
}

# life_a_ended CASE: whether A saw B's unmap notify and ended at its
# baseline; a FAIL line with A's console otherwise.
life_a_ended() {
    local _why
    if ! tr -d '\r' <"$(guest_log xenguest-a)" | grep -q '^gnt-share: unmap notify seen'; then
        fail "$1" "A did not see B's unmap notify"
    elif ! _why=$(guest_result xenguest-a gntdev-share); then
        fail "$1" "A: $_why"
    else
        return 0
    fi
    show_log xenguest-a
    return 1
}

# life_end CASE COMMAND REASON DETAIL...: runs COMMAND (xl shutdown or
# reboot of B, bounded), then judges: B ended with REASON and said why,
# A saw the unmap notify and ended cleanly at its baseline.
life_end() {
    local _case _cmd _reason _t0 _ms _how _why
    _case=$1 _cmd=$2 _reason=$3
    _t0=$(now_cs)
    if ! timeout 60 sh -c "$_cmd" >"$XENGUEST_LOGS/life.out" 2>&1; then
        fail "$_case" "'$_cmd' failed: $(tr '\n' ' ' <"$XENGUEST_LOGS/life.out")"
        show_log xenguest-b
        destroy_all
        return
    fi
    guest_wait xenguest-b 30
    _ms=$((($(now_cs) - _t0) * 10))
    guest_wait xenguest-a
    show_lines xenguest-a xenguest-b
    tr -d '\r' <"$(guest_log xenguest-b)" | grep '^control: \|^RESULT ' | sed 's/^/  B | /'
    _how=$(guest_end xenguest-b)
    if [ "$_how" != "$_reason" ]; then
        fail "$_case" "B ended: $_how, not $_reason"
        show_log xenguest-b
    elif ! tr -d '\r' <"$(guest_log xenguest-b)" | grep -q "^control: $_reason requested by the toolstack: ending 1 process"; then
        fail "$_case" "B did not say it ended its process for the $_reason request"
        show_log xenguest-b
    elif ! life_a_ended "$_case"; then
        :
    else
        shift 3
        pass "$_case ('$_cmd' to B's end: $_ms ms, reason $_reason; A saw the unmap notify and is back at its baseline$*)"
    fi
}

# life_shutdown CASE: junk, a sysrq report, then xl shutdown -w.
life_shutdown() {
    local _feat _log
    life_pair "$1" || return
    _feat=$(life_features)
    xenstore-write "/local/domain/$PAIR_B_ID/control/shutdown" bogus
    xl sysrq xenguest-b t
    _log=$(guest_log xenguest-b)
    if [ "$_feat" != "1 1 1" ]; then
        fail "$1" "B's control/feature-poweroff, -reboot, -suspend read '$_feat', not '1 1 1'"
    elif ! guest_wait_line xenguest-b 20 'control: unknown shutdown request "bogus" ignored'; then
        fail "$1" "B did not log the junk shutdown request"
    elif ! guest_wait_line xenguest-b 20 'COUNTERS sysrq '; then
        fail "$1" "no sysrq report from B"
    elif [ "$(counter xenguest-b sysrq processes)" != 1 ] || [ "$(counter xenguest-b sysrq gntdev_holes)" != 1 ] ||
        ! tr -d '\r' <"$_log" | grep -q '^  pid [0-9]* gnt-map: 1 thread'; then
        fail "$1" "B's sysrq report does not show its process and its one gntdev mapping"
    else
        # The junk value is still there, unacknowledged: xl overwrites it.
        life_end "$1" "xl shutdown -w xenguest-b" poweroff "; features '1 1 1', junk request ignored, sysrq report"
        return
    fi
    show_log xenguest-b
    destroy_all
}

# life_reboot CASE: xl reboot.
life_reboot() {
    life_pair "$1" || return
    life_end "$1" "xl reboot xenguest-b" reboot
}

# life_sysrq CASE: sysrq t, then c, on an idle domain.
life_sysrq() {
    local _name _how
    _name=xenguest-life
    guest_create "$_name" configs/xenguest-a.cfg 'cmdline="scenario=pass-then-hang loglevel=info"' ||
        { fail "$1" "xl create failed"; return; }
    guest_unpause "$_name"
    if ! guest_wait_line "$_name" 30 "RESULT pass-then-hang PASS"; then
        fail "$1" "the domain did not start"
        show_log "$_name"
        guest_destroy "$_name"
        return
    fi
    xl sysrq "$_name" t
    if ! guest_wait_line "$_name" 20 'COUNTERS sysrq ' ||
        ! tr -d '\r' <"$(guest_log "$_name")" | grep -q '^sysrq report at [0-9]* ms'; then
        fail "$1" "no report for sysrq t"
        show_log "$_name"
        guest_destroy "$_name"
        return
    fi
    xl sysrq "$_name" c
    guest_wait "$_name" 30
    _how=$(guest_end "$_name")
    if [ "$_how" != crash ]; then
        fail "$1" "the domain ended: $_how, not crash"
        show_log "$_name"
    elif ! tr -d '\r' <"$(guest_log "$_name")" | grep -q '^FATAL: unhandled exception: page fault' ||
        ! tr -d '\r' <"$(guest_log "$_name")" | grep -q '^  rip 0x'; then
        fail "$1" "no register dump of the sysrq crash"
        show_log "$_name"
    else
        pass "$1 (sysrq t: the report, with $(counter "$_name" sysrq free_pages) free pages; sysrq c: kernel page fault, register dump, reason crash)"
    fi
}

# dom0's peer for the share protocol (scripts/scenarios/interop.sh).
TOOL=target/dom0-tools/xen-interop
# How long each of the tool's waits may take.
TOOL_TIMEOUT=60

# life_map CASE DOMID ROUND: dom0 maps DOMID's share, verifies it, replies
# and unmaps with the notify (the protocol's gntdev variant); a FAIL line
# and 1 if it does not pass.
life_map() {
    local _out _rc
    _out=$XENGUEST_LOGS/$1.tool$3
    # The verdict of an earlier round must not be read as this one's.
    xenstore-rm /local/domain/0/data/xenguest/map 2>/dev/null
    "$TOOL" -t "$TOOL_TIMEOUT" -g map "$2" >"$_out" 2>&1
    _rc=$?
    sed "s/^/  dom0 ($3) | /" "$_out"
    if [ "$_rc" -ne 0 ]; then
        fail "$1" "dom0's mapping of domain $2's share, $3: $(grep '^RESULT ' "$_out" | tail -n 1)"
        return 1
    fi
}

# life_abort CASE [WHY [NAME]]: a FAIL line (unless life_map printed it)
# with the console of the sharer NAME (xenguest-a) and, if it still
# runs, where it is (guest_hang); no domain is left.
life_abort() {
    [ -n "${2:-}" ] && fail "$1" "$2"
    show_log "${3:-xenguest-a}"
    # Where it is, if it still runs (its vCPUs, its kernel's report).
    guest_hang "${3:-xenguest-a}"
    destroy_all
}

# life_xl HOW NAME: checkpoints or moves domain NAME, bounded in time:
# checkpoint (`xl save -c`), save-restore (`xl save`, then `xl restore`)
# or migrate (to this host); the output is in life.out, the save file is
# removed, and the status is xl's.
life_xl() {
    local _rc _save
    _save=$XENGUEST_LOGS/life.save
    case $1 in
        checkpoint)
            timeout 120 xl save -c "$2" "$_save" >"$XENGUEST_LOGS/life.out" 2>&1
            ;;
        save-restore)
            timeout 120 xl save "$2" "$_save" >"$XENGUEST_LOGS/life.out" 2>&1 &&
                timeout 120 xl restore "$_save" >>"$XENGUEST_LOGS/life.out" 2>&1
            ;;
        migrate)
            timeout 180 xl migrate -s '' "$2" 'xl migrate-receive' >"$XENGUEST_LOGS/life.out" 2>&1
            ;;
    esac
    _rc=$?
    rm -f "$_save"
    return "$_rc"
}

# life_xl_failure: the last lines of life_xl's output, on one line.
life_xl_failure() {
    tail -n 3 "$XENGUEST_LOGS/life.out" | tr '\n' ' '
}

# life_end_share NAME: waits for the sharing guest's end and shows its
# lines about the share and the suspends.
life_end_share() {
    guest_wait "$1"
    tr -d '\r' <"$(guest_log "$1")" | grep '^control: \|^suspend: \|^gnt-share: \|^sharer: ' |
        sed 's/^/  A | /'
}

# life_save_cancel CASE [NAME]: xl save -c of a sharing guest NAME
# (xenguest-a; its config is configs/NAME.cfg).
life_save_cancel() {
    local _n _id _ms _t0
    _n=${2:-xenguest-a}
    guest_create "$_n" "configs/$_n.cfg" \
        'cmdline="scenario=gntdev-share pages=16 peer=0 loglevel=info"' ||
        { fail "$1" "xl create failed"; return; }
    _id=$(guest_domid "$_n")
    guest_unpause "$_n"
    if ! guest_wait_line "$_n" 60 "gnt-share: shared"; then
        life_abort "$1" "the guest did not share its pages" "$_n"
        return
    fi
    _t0=$(now_cs)
    if ! life_xl checkpoint "$_n"; then
        life_abort "$1" "xl save -c failed: $(life_xl_failure)" "$_n"
        return
    fi
    _ms=$((($(now_cs) - _t0) * 10))
    if [ "$(guest_domid "$_n")" != "$_id" ] ||
        ! guest_wait_line "$_n" 30 "suspend: cancelled, the same domain runs on"; then
        life_abort "$1" "the guest did not run on as the same domain after the checkpoint" "$_n"
        return
    fi
    life_map "$1" "$_id" "after the checkpoint" || { life_abort "$1" "" "$_n"; return; }
    life_end_share "$_n"
    if ! _why=$(guest_result "$_n" gntdev-share); then
        fail "$1" "guest: $_why"
        show_log "$_n"
    else
        pass "$1 (domain $_id checkpointed by 'xl save -c' in $_ms ms, ran on as itself; dom0 then mapped and verified its 16 pages; baseline back)"
    fi
}

# life_move CASE HOW [NAME]: a sharing guest NAME (xenguest-a) moved by
# HOW (save-restore or migrate) between two rounds of dom0 mapping its
# pages.
life_move() {
    local _n _id _id2 _t0 _ms _log _why _rc
    _n=${3:-xenguest-a}
    _log=$(guest_log "$_n")
    guest_create "$_n" "configs/$_n.cfg" \
        'cmdline="scenario=gntdev-share pages=256 peer=0 moves=1 loglevel=info"' 'vcpus=2' ||
        { fail "$1" "xl create failed"; return; }
    _id=$(guest_domid "$_n")
    guest_unpause "$_n"
    life_map "$1" "$_id" "before the move" || { life_abort "$1" "" "$_n"; return; }
    if ! guest_wait_line "$_n" 60 "gnt-share: round done"; then
        life_abort "$1" "the guest did not end its first round" "$_n"
        return
    fi
    _t0=$(now_cs)
    life_xl "$2" "$_n"
    _rc=$?
    _ms=$((($(now_cs) - _t0) * 10))
    if [ "$2" = migrate ]; then
        # xenconsoled logs the incoming domain under its name then; the
        # guest's earlier lines stay in the old log.
        sed 's/^/  before the move | /' "$_log" | tr -d '\r' | grep 'gnt-share\|suspend'
        ln -sf "$(guest_log "$_n--incoming")" "$_log"
    fi
    _id2=$(guest_domid "$_n")
    if [ "$_rc" -ne 0 ] || [ -z "$_id2" ] || [ "$_id2" = "$_id" ]; then
        life_abort "$1" "'$2' failed (status $_rc, domain ${_id2:-gone}): $(life_xl_failure)" "$_n"
        return
    fi
    if ! guest_wait_line "$_n" 60 "gnt-share: the domain moved"; then
        life_abort "$1" "the guest's process did not see the move" "$_n"
        return
    fi
    life_map "$1" "$_id2" "after the move" || { life_abort "$1" "" "$_n"; return; }
    life_end_share "$_n"
    if ! _why=$(guest_result "$_n" gntdev-share); then
        fail "$1" "guest: $_why"
        show_log "$_n"
    elif ! tr -d '\r' <"$_log" | grep -q "^suspend: resumed in domain $_id2: 2 vCPU(s)"; then
        fail "$1" "the guest did not report its resume in domain $_id2 on 2 vCPUs"
        show_log "$_n"
    else
        pass "$1 (domain $_id to $_id2 by $2 in $_ms ms on 2 vCPUs; dom0 mapped and verified the same 256 grants before and after; baseline back)"
    fi
}

# life_save_mapper CASE: xl save and xl restore of a domain that maps
# its peer's pages.
life_save_mapper() {
    local _t0 _ms _id2 _why
    life_pair "$1" || return
    _t0=$(now_cs)
    if ! life_xl save-restore xenguest-b; then
        fail "$1" "xl save or restore of B failed: $(life_xl_failure)"
        show_log xenguest-b
        destroy_all
        return
    fi
    _ms=$((($(now_cs) - _t0) * 10))
    _id2=$(guest_domid xenguest-b)
    guests_wait xenguest-a xenguest-b
    show_lines xenguest-a xenguest-b
    tr -d '\r' <"$(guest_log xenguest-b)" | grep '^suspend: \|^mapper: ' | sed 's/^/  B | /'
    if ! life_a_ended "$1"; then
        :
    elif ! tr -d '\r' <"$(guest_log xenguest-b)" |
        grep -q '^suspend: 1 process(es) holding foreign grant mappings ended' ||
        ! tr -d '\r' <"$(guest_log xenguest-b)" | grep -q "^suspend: resumed in domain $_id2:"; then
        fail "$1" "B did not end its mapping process before the suspend, or did not resume in domain $_id2"
        show_log xenguest-b
    elif ! _why=$(guest_result xenguest-b gntdev-map); then
        fail "$1" "B: $_why"
        show_log xenguest-b
    else
        pass "$1 (B moved to domain $_id2 in $_ms ms; its mapping process ended first, A saw the unmap notify; both back at their baselines)"
    fi
}

life_save_restore() {
    life_move "$1" save-restore
}

life_migrate() {
    life_move "$1" migrate
}

life_save_cancel_pv() {
    life_save_cancel "$1" xenguest-a-pv
}

life_save_restore_pv() {
    life_move "$1" save-restore xenguest-a-pv
}

life_migrate_pv() {
    life_move "$1" migrate xenguest-a-pv
}

run_case life_shutdown life-shutdown
run_case life_reboot life-reboot
run_case life_sysrq life-sysrq
if [ -x "$TOOL" ]; then
    run_case life_save_cancel life-save-cancel
    run_case life_save_restore life-save-restore
    run_case life_migrate life-migrate
    run_case life_save_mapper life-save-mapper
    run_case life_save_cancel_pv pv-life-save-cancel
    run_case life_save_restore_pv pv-life-save-restore
    run_case life_migrate_pv pv-life-migrate
else
    fail life-save "no $TOOL (scripts/lib/tools.sh builds it)"
fi
finish
