# Helpers for the xl scenario scripts in scripts/scenarios/.
#
# Plain POSIX sh: the emulated host's dom0 runs busybox sh, and a user with
# a real Xen host runs the same scripts from the project root:
#     sh scripts/scenarios/demo.sh
# Each case prints one line, "PASS name" or "FAIL name: reason"; `finish`
# prints "N passed, N failed" and sets the exit status.
#
# Guest output is read from xenconsoled's per-guest logs, so xenconsoled
# must log guests: `--log=guest` (Debian: XENCONSOLED_TRACE=guest in
# /etc/default/xen). XENCONSOLED_LOG_DIR names the folder if it is not the
# default. (`xl console` needs a terminal, which a script does not have.)
# shellcheck shell=sh

: "${GUEST_TIMEOUT:=120}"
XENCONSOLED_LOG_DIR=${XENCONSOLED_LOG_DIR:-/var/log/xen/console}
XENGUEST_LOGS=${XENGUEST_LOGS:-/tmp/xenguest-logs}
mkdir -p "$XENGUEST_LOGS"
PASSED=0
FAILED=0

# guest_log NAME: the file holding NAME's console output.
guest_log() {
    echo "$XENCONSOLED_LOG_DIR/guest-$1.log"
}

# guest_create NAME CONFIG [KEY=VALUE...]: creates the domain paused, with
# a fresh console log (xenconsoled appends to an old one). Extra arguments
# override config keys, e.g. 'cmdline="scenario=fault"'.
guest_create() {
    _name=$1
    _cfg=$2
    shift 2
    rm -f "$(guest_log "$_name")"
    if ! xl create -p "$_cfg" "name=\"$_name\"" "$@" >"$XENGUEST_LOGS/$_name.xl" 2>&1; then
        sed 's/^/  xl: /' "$XENGUEST_LOGS/$_name.xl"
        return 1
    fi
}

# guest_domid NAME: prints NAME's domain id.
guest_domid() {
    xl domid "$1" 2>/dev/null
}

# guest_unpause NAME
guest_unpause() {
    xl unpause "$1"
}

# guest_wait NAME [SECONDS]: waits until NAME is gone (powered off or
# crashed and destroyed); after SECONDS it is destroyed and 1 returned.
guest_wait() {
    _name=$1
    # Real seconds: each `xl domid` takes time of its own under emulation.
    _end=$(($(date +%s) + ${2:-$GUEST_TIMEOUT}))
    _rc=0
    while xl domid "$_name" >/dev/null 2>&1; do
        if [ "$(date +%s)" -gt "$_end" ]; then
            echo "  $_name still running after ${2:-$GUEST_TIMEOUT} s: destroyed; its vCPU was at:"
            # Xen's 'd' debug key dumps every vCPU's registers into its log.
            _id=$(xl domid "$_name" 2>/dev/null)
            xl debug-keys d >/dev/null 2>&1
            xl dmesg 2>/dev/null | grep -A 3 "d${_id}v0" | grep -m 2 -i "rip" | sed 's/^/    /'
            xl destroy "$_name" >/dev/null 2>&1
            _rc=1
            break
        fi
        sleep 0.1
    done
    return $_rc
}

# guest_result NAME SCENARIO: succeeds when NAME's console shows
# "RESULT SCENARIO PASS"; otherwise prints why and fails.
guest_result() {
    _log=$(guest_log "$1")
    [ -e "$_log" ] || { echo "no console log $_log (is xenconsoled run with --log=guest?)"; return 1; }
    if grep -q "^RESULT $2 PASS" "$_log"; then
        return 0
    fi
    _line=$(grep "^RESULT $2 " "$_log" | tail -n 1)
    echo "${_line:-no RESULT line from $1}"
    return 1
}

# show_log NAME: prints NAME's console output, indented.
show_log() {
    sed -e 's/\r$//' -e "s/^/  $1 | /" "$(guest_log "$1")"
}

# pass CASE / fail CASE REASON: one result line, counted.
pass() {
    echo "PASS $1"
    PASSED=$((PASSED + 1))
}

fail() {
    echo "FAIL $1: $2"
    FAILED=$((FAILED + 1))
}

# finish: the closing count; the exit status says whether all passed.
finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
