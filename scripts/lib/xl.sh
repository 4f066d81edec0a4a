# Helpers for the xl scenario scripts in scripts/scenarios/.
#
# POSIX sh and `local`, which every sh they run under has (busybox's ash,
# dash, bash), so that no helper changes its caller's names: the emulated
# host's dom0 runs busybox sh, and a user with a real Xen host runs the
# same scripts from the project root:
#     sh scripts/scenarios/demo.sh
# Each case prints one line, "PASS name" or "FAIL name: reason"; `finish`
# prints "N passed, N failed" and sets the exit status. A case run with
# run_case has a time budget: past it the case fails alone and the next
# one starts on a host without our domains.
#
# Guest output is read from xenconsoled's per-guest logs, so xenconsoled
# must log guests: `--log=guest` (Debian: XENCONSOLED_TRACE=guest in
# /etc/default/xen). XENCONSOLED_LOG_DIR names the folder if it is not the
# default. (`xl console` needs a terminal, which a script does not have.)
# shellcheck shell=dash

: "${GUEST_TIMEOUT:=120}"
XENCONSOLED_LOG_DIR=${XENCONSOLED_LOG_DIR:-/var/log/xen/console}
XENGUEST_LOGS=${XENGUEST_LOGS:-/tmp/xenguest-logs}
# Each case that passed as "CASE CENTISECONDS", the time of its last try
# (run_case), for the end of the suite (scripts/lib/suite.sh).
CASE_TIMES=$XENGUEST_LOGS/case-times
mkdir -p "$XENGUEST_LOGS"
# The result lines of this script's cases, one word each, for finish: a
# case that run_case runs is a subshell, whose variables do not return.
RESULTS=$XENGUEST_LOGS/results.$$
: >"$RESULTS"

# guest_log NAME: the file holding NAME's console output.
guest_log() {
    echo "$XENCONSOLED_LOG_DIR/guest-$1.log"
}

# guest_create NAME CONFIG [KEY=VALUE...]: creates the domain paused, with
# a fresh console log (xenconsoled appends to an old one). Extra arguments
# override config keys, e.g. 'cmdline="scenario=fault"'.
# Xen keeps the domain when it shuts down, whatever the reason
# (on_poweroff, on_reboot, on_crash = "preserve"): guest_wait then reads
# the reason from Xen itself and destroys the domain. Xen's record of the
# shutdown needs neither xl's per-domain daemon (which carries out
# "destroy") nor the guest's last words reaching the console log.
# Guests run with tsc_mode="native": without it Xen emulates every rdtsc
# here (QEMU's TCG offers no invariant TSC, and refuses invtsc), and the
# world switch back from that exit is where the emulation faults most:
# fuzz-peer's B triple-faulted 4 times in 2 full runs, each time with the
# registers of its pvclock read (rdi its vcpu_time_info), its rip twice
# the instruction after that read's rdtsc and twice Xen's own. Our kernel
# reads time only through the pvclock, which Xen keeps for the TSC as the
# guest sees it, so native mode is correct for it.
guest_create() {
    local _name _cfg
    _name=$1
    _cfg=$2
    shift 2
    rm -f "$(guest_log "$_name")" "$XENGUEST_LOGS/$_name.end" "$XENGUEST_LOGS/$_name.domid"
    if ! xl create -p "$_cfg" "name=\"$_name\"" 'on_poweroff="preserve"' \
        'on_reboot="preserve"' 'on_crash="preserve"' 'tsc_mode="native"' "$@" \
        >"$XENGUEST_LOGS/$_name.xl" 2>&1; then
        sed 's/^/  xl: /' "$XENGUEST_LOGS/$_name.xl"
        return 1
    fi
    guest_domid "$_name" >"$XENGUEST_LOGS/$_name.domid"
}

# guest_domid NAME: prints NAME's domain id.
guest_domid() {
    xl domid "$1" 2>/dev/null
}

# guest_created_domid NAME: the domain id NAME had when guest_create made
# it, also after it is gone (and when a case's subshell made it).
guest_created_domid() {
    cat "$XENGUEST_LOGS/$1.domid" 2>/dev/null
}

# guest_unpause NAME
guest_unpause() {
    xl unpause "$1"
}

# guest_state NAME: prints NAME's state flags and shutdown reason code as
# `xl list -v` shows them ("---s-- 0": shut down, poweroff; "-b---- -":
# running), nothing when there is no such domain.
guest_state() {
    xl list -v "$1" 2>/dev/null | awk 'NR == 2 { print $5, $8 }'
}

# guest_end NAME: how NAME ended, as guest_wait recorded it: poweroff,
# crash, reboot, ... (Xen's shutdown reason), destroyed (gone without a
# shutdown we saw) or hang.
guest_end() {
    cat "$XENGUEST_LOGS/$1.end" 2>/dev/null || echo "not waited for"
}

# guest_wait NAME [SECONDS]: waits until NAME has shut down, records why
# (guest_end) and destroys it; after SECONDS it is shown (guest_hang),
# destroyed, recorded as a hang and 1 returned.
guest_wait() {
    local _name _end _st _why _n
    _name=$1
    # Real seconds: each `xl list` takes time of its own under emulation.
    _end=$(($(date +%s) + ${2:-$GUEST_TIMEOUT}))
    while :; do
        _st=$(guest_state "$_name")
        case $_st in
            "")
                echo destroyed >"$XENGUEST_LOGS/$_name.end"
                return 0
                ;;
            *s*)
                # Xen's SHUTDOWN_* codes (public/sched.h).
                case ${_st#* } in
                    0) _why=poweroff ;;
                    1) _why=reboot ;;
                    2) _why=suspend ;;
                    3) _why=crash ;;
                    4) _why=watchdog ;;
                    *) _why="reason ${_st#* }" ;;
                esac
                echo "$_why" >"$XENGUEST_LOGS/$_name.end"
                # A PVH guest's triple fault is a reboot: Xen's log has the
                # vCPU's registers, which the guest itself could not print.
                [ "$_why" = reboot ] && xen_triple_fault "$(guest_domid "$_name")"
                # xenconsoled may not have copied the ring's last lines
                # yet; the domain, kept, still has them: up to 3 s.
                _n=0
                until tr -d '\r' <"$(guest_log "$_name")" 2>/dev/null | grep -q '^RESULT ' ||
                    [ "$_n" -ge 30 ]; do
                    sleep 0.1
                    _n=$((_n + 1))
                done
                guest_destroy "$_name"
                return 0
                ;;
        esac
        if [ "$(date +%s)" -gt "$_end" ]; then
            echo "  $_name still running after ${2:-$GUEST_TIMEOUT} s: destroyed"
            guest_hang "$_name"
            echo hang >"$XENGUEST_LOGS/$_name.end"
            guest_destroy "$_name"
            return 1
        fi
        sleep 0.1
    done
}

# guests_wait NAME...: guest_wait for each NAME, all waited for at once:
# once one has ended by a crash or a reboot (a PVH guest's triple fault),
# the others get PEER_GRACE seconds (20) to see it and end, not a whole
# GUEST_TIMEOUT each (a peer waiting for a dead domain held a soak case
# for 600 s). Returns 1 if any hung.
guests_wait() {
    local _end _n _first _rc
    _end=$(($(date +%s) + GUEST_TIMEOUT))
    _first=
    while [ -z "$_first" ] && [ "$(date +%s)" -le "$_end" ]; do
        for _n in "$@"; do
            case $(guest_state "$_n") in
                "" | *s*)
                    _first=$_n
                    break
                    ;;
            esac
        done
        [ -n "$_first" ] || sleep 0.2
    done
    _rc=0
    [ -z "$_first" ] || guest_wait "$_first" || _rc=1
    for _n in "$@"; do
        [ "$_n" = "$_first" ] && continue
        case $(guest_end "$_first") in
            crash | reboot) guest_wait "$_n" "${PEER_GRACE:-20}" || _rc=1 ;;
            *) guest_wait "$_n" $((_end - $(date +%s))) || _rc=1 ;;
        esac
    done
    return "$_rc"
}

# wait_peer PID NAME: waits for dom0's process PID, the peer of guest NAME,
# and returns its status; once NAME has shut down (or is gone), PID gets
# PEER_GRACE seconds (20) before it is killed: a dom0 tool waiting for a
# domain that crashed would otherwise hold its case to its own time limit.
wait_peer() {
    local _t
    _t=
    while kill -0 "$1" 2>/dev/null; do
        if [ -z "$_t" ]; then
            case $(guest_state "$2") in
                "" | *s*) _t=$(($(date +%s) + ${PEER_GRACE:-20})) ;;
            esac
        elif [ "$(date +%s)" -gt "$_t" ]; then
            echo "  dom0's peer of $2 still running ${PEER_GRACE:-20} s after $2 ended: killed"
            kill "$1" 2>/dev/null
        fi
        sleep 0.5
    done
    wait "$1"
}

# xen_triple_fault DOMID: Xen's report of DOMID's triple fault (the
# "Triple fault" line and the vCPU state dump after it), if there is one.
xen_triple_fault() {
    [ -n "$1" ] || return 0
    xl dmesg 2>/dev/null | tr -d '\r' |
        awk -v d="d$1v" 'index($0, d) && /Triple fault/ { n = 40 } n > 0 { print "  xen | " $0; n-- }'
}

# now_cs: centiseconds since dom0 booted.
now_cs() {
    sed 's/^\([0-9]*\)\.\([0-9][0-9]\).*/\1\2/' /proc/uptime
}

# guest_wait_line NAME SECONDS TEXT: waits until a line of NAME's console
# starts with TEXT; fails after SECONDS.
guest_wait_line() {
    local _end
    _end=$(($(date +%s) + $2))
    until tr -d '\r' <"$(guest_log "$1")" 2>/dev/null | grep -q "^$3"; do
        [ "$(date +%s)" -gt "$_end" ] && return 1
        sleep 0.1
    done
}

# guest_hang NAME: what a stuck guest was doing: first each vCPU's
# registers and stack from xenctx, which reads them through a domctl and
# prints nothing on Xen's console (a hang on SMP is often one vCPU waiting
# for another), and Xen's dump of the domain's event channels ('e' key),
# and of its timer queues ('a' key), taken paused and before anything is
# sent to the guest; then
# our kernel's sysrq report of every process and thread, which wakes an
# idle vCPU, and the console's last lines (usually the answer). Bounded:
# Xen's 'd' debug key, used before, dumps every vCPU on the serial line
# and once wedged the whole emulated host mid-dump.
guest_hang() {
    local _id _v
    _id=$(guest_domid "$1")
    if [ -n "$_id" ]; then
        xl pause "$_id" 2>/dev/null
        for _v in $(timeout 10 xl vcpu-list "$_id" 2>/dev/null | awk 'NR > 1 { print $3 }'); do
            echo "  $1's vCPU $_v (xenctx):"
            timeout 10 xenctx -a "$_id" "$_v" 2>&1 | head -n 70 | sed 's/^/    /'
            # Its stack too (-S): xenctx walks only stacks above its
            # kernel start (-k), Linux's by default; ours is low.
            timeout 10 xenctx -S -k 0x100000 "$_id" "$_v" 2>&1 | sed -n '/^Stack/,$p' |
                head -n 40 | sed 's/^/    /'
        done
        # Xen's view of its event channels (pending, masked, selector
        # per port): a port stuck pending swallows later events.
        timeout 10 xl debug-keys e 2>/dev/null &&
            timeout 10 xl dmesg 2>/dev/null |
            sed -n "/Event channel information for domain $_id:/,/Event channel information for domain/p" |
                head -n 40 | sed 's/^/    xen | /'
        # Xen's timer queues ('a' key): a guest that halts waits for its
        # one-shot timer (vcpu_singleshot_timer_fn), which should be there
        # with its expiry, or already have fired.
        timeout 10 xl debug-keys a 2>/dev/null &&
            timeout 10 xl dmesg 2>/dev/null |
            sed -n '/Dumping timer queues/,$p' | grep -v 'dumping timer\|^$' |
                head -n 40 | sed 's/^/    xen | /'
        xl unpause "$_id" 2>/dev/null
        # The report, if the kernel's control thread still answers.
        timeout 10 xl sysrq "$_id" t 2>/dev/null && sleep 2
    fi
    echo "  $1's console, last lines:"
    tail -n 30 "$(guest_log "$1")" 2>/dev/null | sed -e 's/\r$//' -e "s/^/    $1 | /"
}

# guest_destroy NAME: destroys NAME if it exists, bounded in time.
guest_destroy() {
    timeout 30 xl destroy "$1" >/dev/null 2>&1 || true
}

# guest_result NAME SCENARIO: succeeds when NAME's LAST result line is
# "RESULT SCENARIO PASS" (XTF's runner, too, takes a guest's last result
# line) and its domain then powered off (guest_end): a crash, a reboot or
# a hang after a PASS line is a failure. Otherwise prints why (the last
# RESULT line first) and fails.
guest_result() {
    local _log _line _how
    _log=$(guest_log "$1")
    [ -e "$_log" ] || { echo "no console log $_log (is xenconsoled run with --log=guest?)"; return 1; }
    _line=$(tr -d '\r' <"$_log" | grep '^RESULT ' | tail -n 1)
    _how=$(guest_end "$1")
    if [ "$_line" = "RESULT $2 PASS" ] && [ "$_how" = poweroff ]; then
        return 0
    fi
    case $_line in
        "") echo "no RESULT line from $1 (it ended: $_how)" ;;
        "RESULT $2 PASS") echo "$_line, then it ended: $_how" ;;
        *) echo "$_line" ;;
    esac
    return 1
}

# counter NAME WHO KEY: the value of KEY in the last "COUNTERS WHO
# KEY=VALUE..." line of NAME's console, the one line in which a guest's
# kernel or program reports a case's numbers; empty when there is none.
counter() {
    counter_in "$(guest_log "$1")" "$2" "$3"
}

# counter_in FILE WHO KEY: as counter, in FILE (a dom0 tool's output).
counter_in() {
    tr -d '\r' <"$1" | awk -v who="$2" -v key="$3=" '
        $1 == "COUNTERS" && $2 == who {
            v = ""
            for (i = 3; i <= NF; i++)
                if (index($i, key) == 1) v = substr($i, length(key) + 1)
        }
        END { print v }'
}

# show_log NAME: prints NAME's console output, indented.
show_log() {
    sed -e 's/\r$//' -e "s/^/  $1 | /" "$(guest_log "$1")"
}

# pass CASE / fail CASE REASON: one result line, counted.
pass() {
    echo "PASS $1"
    echo pass >>"$RESULTS"
}

fail() {
    echo "FAIL $1: $2"
    echo fail >>"$RESULTS"
}

# late_timer OUT: the most milliseconds, over the sysrq reports in the
# case output OUT, that a guest vCPU's one-shot timer was late: it stayed
# halted past the deadline it had armed the timer for (late_max_ms,
# kernel/src/events.rs), or the deadline it armed last has passed with no
# event pending for it ("timer last armed for -N ms ahead ... upcall
# pending 0": Xen never raised the timer, as on vCPUs running a user
# spinner in a run of smp-preempt, whose slices then never ended).
late_timer() {
    tr -d '\r' <"$1" | awk '
        / \| COUNTERS sysrq / && match($0, /late_max_ms=[0-9]+/) {
            v = substr($0, RSTART + 12, RLENGTH - 12) + 0
            if (v > m) m = v
        }
        /timer last armed for -[0-9]+ ms ahead/ && /upcall pending 0/ &&
            match($0, /armed for -[0-9]+ ms/) {
            v = substr($0, RSTART + 11, RLENGTH - 14) + 0
            if (v > m) m = v
        }
        END { if (m > 0) print m }'
}

# run_case FUNCTION CASE [ARG...]: run_case_once, and again (up to 4
# tries) while a try failed by a fault of the emulated host (a final
# run's vchan-dom0-client met the emulation's fault below in two tries
# in a row, a CI run's vchan-dom0-server in three; a faulted try costs
# about PEER_GRACE seconds since guests_wait and wait_peer):
# - the emulation's own fault in Xen's log: a guest vCPU whose saved state
#   is Xen's (a triple fault or dump with RIP e008:ffff82d0..., Xen's code
#   segment and text, in "hvm guest" context). No guest can load that
#   state; QEMU's multi-threaded TCG emulation of SVM does, now and then,
#   under many VM exits;
# - a guest vCPU's triple fault (guest_triple_fault);
# - a hang, in a case run with RETRY_HANG set to the reason (smp-threads,
#   smp-preempt: scripts/scenarios/smp.sh);
# - a late timer: a guest's sysrq report (taken when the case hung) says
#   one of its vCPUs armed its one-shot timer, halted, and was woken only
#   LATE_TIMER_MS (10 s) or more after that deadline, by the report's own
#   event: the vCPU stays halted until another event comes, pinned to one
#   emulated CPU or not (seen with a lone guest: scripts/scenarios/fuzz.sh,
#   which now idles by polling); or that a vCPU's last armed deadline is
#   that long past with no event pending (late_timer).
# The discarded try's lines are shown (prefixed "try N |"), so the
# retry is never silent.
run_case() {
    local _lines _out _try _why _late _t0
    _out=$XENGUEST_LOGS/case.out
    for _try in 1 2 3 4; do
        _lines=$(wc -l <"$RESULTS")
        xl dmesg -c >/dev/null 2>&1
        _t0=$(now_cs)
        run_case_once "$@" >"$_out" 2>&1
        _t0=$(($(now_cs) - _t0))
        _why=
        if [ "$_try" != 4 ] && grep -q '^FAIL ' "$_out"; then
            _late=$(late_timer "$_out")
            if emulation_fault; then
                _why="the emulation loaded Xen's own state into a guest vCPU (RIP e008:ffff82d0... in hvm guest context)"
            elif guest_triple_fault; then
                _why="a guest vCPU triple-faulted with its own state sane (taken for the emulation's fault; Xen's dump is above)"
            elif [ "${_late:-0}" -ge "${LATE_TIMER_MS:-10000}" ]; then
                _why="a guest vCPU halted with its timer armed was woken $_late ms past the deadline (the emulated host lost the timer)"
            elif [ -n "${RETRY_HANG:-}" ] && grep -q 'ended: hang' "$_out"; then
                _why="the guest hung, in a case that meets a known fault of the emulated host (RETRY_HANG: $RETRY_HANG)"
            fi
        fi
        if [ -n "$_why" ]; then
            sed "s/^/  try $_try | /" "$_out"
            echo "  $2: $_why; running the case again"
            head -n "$_lines" "$RESULTS" >"$RESULTS.keep"
            mv "$RESULTS.keep" "$RESULTS"
            destroy_all
            continue
        fi
        cat "$_out"
        # The time of a case that passed, for the PV/PVH ratio
        # (scripts/lib/suite.sh).
        grep -q '^FAIL ' "$_out" || echo "$2 $_t0" >>"$CASE_TIMES"
        return
    done
}

# emulation_fault: whether Xen's log holds a guest vCPU dump with Xen's
# own code segment and text address as the guest's (see run_case).
emulation_fault() {
    xl dmesg 2>/dev/null | tr -d '\r' | grep -A1 'RIP:    e008:\[<ffff82d0' | grep -q 'CONTEXT: hvm guest'
}

# guest_triple_fault: whether Xen's log since the try began has a guest
# vCPU's triple fault. Six are on record, at instants where an interrupt
# was due, with the vCPU's own registers, page tables and stack sane, in
# kernel and in user mode, in five cases (gntdev-notify-unmapped,
# smp-preempt, soak-rounds-100, fuzz-peer twice, and vchan-pair before
# them), the kernel-mode ones right after a VM exit (a hypercall's
# return, an emulated rdtsc): the interrupt's delivery and the double
# fault's both failed,
# as with descriptor tables the emulation of SVM broke, the kin of its fault
# above. Taken for the emulation's until one repeats in a retry.
guest_triple_fault() {
    xl dmesg 2>/dev/null | tr -d '\r' | grep -q 'Triple fault - invoking HVM shutdown'
}

# run_case_once FUNCTION CASE [ARG...]: runs FUNCTION CASE ARG..., which
# prints CASE's result line, for at most CASE_BUDGET seconds (default: two
# guest waits and a minute, as a pair case waits for both its domains).
# Past that the case is stopped and failed, and every domain but dom0
# destroyed, so that one stuck case costs only itself.
run_case_once() {
    local _case _budget _lines _pid _end _d
    _case=$2
    _budget=${CASE_BUDGET:-$((2 * GUEST_TIMEOUT + 60))}
    _lines=$(wc -l <"$RESULTS")
    "$@" &
    _pid=$!
    _end=$(($(date +%s) + _budget))
    while kill -0 "$_pid" 2>/dev/null; do
        if [ "$(date +%s)" -gt "$_end" ]; then
            kill "$_pid" 2>/dev/null
            wait "$_pid"
            fail "$_case" "over its budget of $_budget s: stopped, its domains destroyed"
            # What each guest was doing, before it goes.
            for _d in $(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0 { print $1 }'); do
                guest_hang "$_d"
            done
            destroy_all
            return
        fi
        sleep 0.2
    done
    wait "$_pid"
    [ "$(wc -l <"$RESULTS")" -gt "$_lines" ] || fail "$_case" "no result line"
}

# destroy_all: destroys every domain but dom0.
destroy_all() {
    local _d
    for _d in $(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0 { print $1 }'); do
        guest_destroy "$_d"
    done
}

# finish: the closing count; the exit status says whether all passed.
finish() {
    local _passed _failed
    _passed=$(grep -c '^pass' "$RESULTS")
    _failed=$(grep -c '^fail' "$RESULTS")
    rm -f "$RESULTS"
    echo "$_passed passed, $_failed failed"
    [ "$_failed" -eq 0 ]
}
