# The vchan scenarios' cases and helpers (scripts/scenarios/vchan.sh and
# the demo's vchan part): guests running scenario=vchan (vchan-cat) against
# dom0's vchan-socket-proxy and tools/vchan-interop, or each other.
# Source after xl.sh and share.sh.
# shellcheck shell=sh

PROXY=$(command -v vchan-socket-proxy)
TOOL=target/dom0-tools/vchan-interop
SIZE=4194304
# The pair's stream, 64 MiB: a few seconds under multi-threaded TCG, more
# than 120 s on a loaded host under single-threaded TCG.
PAIR_KIB=65536
PAIR_TIMEOUT=360
# Enough for the end of any stream the test cuts short.
ENDLESS_KIB=8000000
D=$XENGUEST_LOGS/vchan
mkdir -p "$D"
rm -f "$D/bench.env"

# feed IN OUT SECONDS: writes IN, then keeps the pipe open until OUT is
# as long as IN (or SECONDS pass): vchan-socket-proxy ends at its input's
# EOF and drops what the vchan still holds for it.
feed() {
    cat "$1"
    _size=$(stat -c %s "$1")
    _end=$(($(date +%s) + $3))
    while [ "$(stat -c %s "$2" 2>/dev/null || echo 0)" -lt "$_size" ] &&
        [ "$(date +%s)" -lt "$_end" ]; do
        sleep 0.2
    done
}

# hold FLAG SECONDS: an input that stays open, empty, until FLAG exists.
hold() {
    _end=$(($(date +%s) + $2))
    while [ ! -e "$1" ] && [ "$(date +%s)" -lt "$_end" ]; do
        sleep 0.2
    done
}

# cat_line NAME: the guest's result line of vchan-cat.
cat_line() {
    grep -h '^vchan-cat: sent' "$(guest_log "$1")" | tr -d '\r' | tail -n 1
}

# field LINE sent|received: "CRC BYTES" from a vchan-cat line.
field() {
    echo "$1" | sed -n "s/.*$2 crc32 \([0-9a-f]*\) \([0-9]*\) bytes.*/\1 \2/p"
}

# rate LINE: the MiB/s of a vchan-cat line.
rate() {
    echo "$1" | sed -n 's/.* \([0-9.]*\) MiB\/s.*/\1/p'
}

# kicks LINE: its kicks per MiB.
kicks() {
    echo "$1" | sed -n 's/.*(\([0-9]*\) per MiB).*/\1/p'
}

# crc FILE: "CRC BYTES" of FILE, as vchan-cat prints them.
crc() {
    echo "$(crc32 <"$1") $(stat -c %s "$1")"
}

# wait_line NAME PATTERN SECONDS: waits until NAME's console shows PATTERN.
wait_line() {
    _end=$(($(date +%s) + $3))
    until grep -q "$2" "$(guest_log "$1")" 2>/dev/null; do
        [ "$(date +%s)" -gt "$_end" ] && return 1
        sleep 0.05
    done
}

# vchan_create CASE WORDS: creates xenguest-a paused with scenario=vchan
# and WORDS, and sets _id to its domain id; a FAIL line and 1 if xl fails.
vchan_create() {
    if ! guest_create xenguest-a configs/xenguest-a.cfg \
        "cmdline=\"scenario=vchan $2 loglevel=info\""; then
        fail "$1" "xl create failed"
        return 1
    fi
    _id=$(guest_domid xenguest-a)
}

# dom0_case CASE ROLE PROXY_MODE: the guest (xenguest-a) is ROLE, dom0's
# proxy PROXY_MODE; 4 MiB each way; both CRC pairs must match.
dom0_case() {
    _case=$1 _role=$2 _mode=$3
    if [ -z "$PROXY" ]; then
        fail "$_case" "no vchan-socket-proxy in dom0 (scripts/lib/initramfs.sh)"
        return
    fi
    head -c "$SIZE" /dev/urandom >"$D/in.bin"
    rm -f "$D/out.bin"
    vchan_create "$_case" "role=$_role peer=0 port=1 kib=$((SIZE / 1024))" || return
    if [ "$_role" = server ]; then _srv=$_id _cli=0; else _srv=0 _cli=$_id; fi
    _path=/local/domain/$_srv/data/vchan/$_cli/1
    # feed watches out.bin grow while the proxy writes it: on purpose.
    # shellcheck disable=SC2094
    feed "$D/in.bin" "$D/out.bin" 240 |
        timeout 300 "$PROXY" -m "$_mode" "$_id" "$_path" - >"$D/out.bin" 2>"$D/proxy.err" &
    _pid=$!
    guest_unpause xenguest-a
    wait_peer "$_pid" xenguest-a
    _prc=$?
    guest_wait xenguest-a
    _line=$(cat_line xenguest-a)
    grep -h '^vchan' "$(guest_log xenguest-a)" | tr -d '\r' | sed 's/^/  guest | /'
    sed 's/^/  proxy | /' "$D/proxy.err"
    _in=$(crc "$D/in.bin") _out=$(crc "$D/out.bin")
    echo "  dom0 | $PROXY -m $_mode $_id $_path -: status $_prc; sent crc32 $_in, received crc32 $_out"
    if ! _why=$(guest_result xenguest-a vchan); then
        fail "$_case" "guest: $_why"
        show_log xenguest-a
    elif [ "$(field "$_line" sent)" != "$_out" ]; then
        fail "$_case" "the guest sent $(field "$_line" sent), dom0 received $_out"
    elif [ "$(field "$_line" received)" != "$_in" ]; then
        fail "$_case" "dom0 sent $_in, the guest received $(field "$_line" received)"
    elif [ "$_prc" -ne 0 ]; then
        fail "$_case" "vchan-socket-proxy exited with $_prc"
    else
        pass "$_case (domain $_id $_role, dom0 -m $_mode, $SIZE bytes each way, CRC-32s equal; $(rate "$_line") MiB/s, $(kicks "$_line") kicks/MiB)"
    fi
}

# vchan_pair: A serves 64 MiB over 64 KiB rings, B receives them.
vchan_pair() {
    _case=vchan-pair
    _args="order=16 port=2 kib=$PAIR_KIB"
    pair_start "$_case" "vchan role=client mode=recv $_args" \
        "scenario=vchan role=server mode=send $_args" || return
    # Polled with grep, not xl: under emulation each `xl domid` of
    # guest_wait takes dom0 CPU time the guests' wake-ups wait for.
    wait_line xenguest-b '^RESULT ' "$PAIR_TIMEOUT"
    wait_line xenguest-a '^RESULT ' 30
    guests_wait xenguest-a xenguest-b
    _a=$(cat_line xenguest-a) _b=$(cat_line xenguest-b)
    echo "  A | $_a"
    echo "  B | $_b"
    if [ -n "$_a" ] && [ "$(field "$_a" sent)" != "$(field "$_b" received)" ]; then
        fail "$_case" "A sent $(field "$_a" sent), B received $(field "$_b" received)"
        return
    fi
    PAIR_RATE=$(rate "$_b")
    PAIR_KICKS="A $(kicks "$_a"), B $(kicks "$_b")"
    bench_note PAIR_RATE "$PAIR_RATE"
    bench_note PAIR_KICKS "$PAIR_KICKS"
    pair_judge "$_case" vchan vchan \
        "$((PAIR_KIB / 1024)) MiB A to B over 64 KiB rings, CRC-32s equal; B $(rate "$_b") MiB/s; kicks/MiB: A $(kicks "$_a"), B $(kicks "$_b")"
}

# close_seen T0: judges A after its peer was gone at T0 (centiseconds): A
# must print that the peer closed within a second, end and pass. Sets
# _seen to what happened, or _why (and returns 1).
close_seen() {
    if ! wait_line xenguest-a 'the peer closed' 30; then
        _why="A did not see the close"
        xl destroy xenguest-a 2>/dev/null
        show_log xenguest-a
        return 1
    fi
    _ms=$((($(now_cs) - $1) * 10))
    guest_wait xenguest-a
    grep -h '^vchan' "$(guest_log xenguest-a)" | tr -d '\r' | sed 's/^/  A | /'
    if ! _why=$(guest_result xenguest-a vchan); then
        _why="A: $_why"
        show_log xenguest-a
        return 1
    elif [ "$_ms" -gt 1000 ]; then
        _why="A saw the close after $_ms ms"
        return 1
    fi
    _seen="close seen within $_ms ms, A ended cleanly, baseline back, keys removed"
}

# peer_destroyed: xl destroy of B while A streams to it; as close_seen.
peer_destroyed() {
    _args="port=3 kib=$ENDLESS_KIB"
    pair_start vchan-peer-dies "vchan role=client mode=recv $_args" \
        "scenario=vchan role=server mode=send until-closed=1 $_args" || return
    if ! wait_line xenguest-b '^vchan-cat: client' 60; then
        _why="B never connected"
        xl destroy xenguest-a
        xl destroy xenguest-b
        show_log xenguest-b
        return 1
    fi
    sleep 2
    # Xen closes the domain's event channels (what A watches) near the end
    # of xl destroy, after the device teardown, which is slow under
    # emulation: the second counts from xl's return.
    _t=$(now_cs)
    xl destroy xenguest-b
    _t0=$(now_cs)
    echo "  xl destroy xenguest-b mid-stream (took $(((_t0 - _t) * 10)) ms)"
    close_seen "$_t0"
}

# peer_killed: kill -9 of dom0's proxy while A streams to it; as close_seen.
peer_killed() {
    rm -f "$D/stop"
    vchan_create vchan-peer-dies "role=server mode=send until-closed=1 peer=0 port=4 kib=$ENDLESS_KIB" || return
    rm -f "$D/killed.out"
    hold "$D/stop" 120 |
        "$PROXY" -m client "$_id" "/local/domain/$_id/data/vchan/0/4" - >"$D/killed.out" 2>"$D/proxy.err" &
    _pid=$!
    guest_unpause xenguest-a
    # Mid-stream: once bytes have come through (a slow host may take more
    # than a few seconds to connect), and a little more.
    _end=$(($(date +%s) + 60))
    until [ -s "$D/killed.out" ] || [ "$(date +%s)" -gt "$_end" ]; do
        sleep 0.1
    done
    sleep 1
    _t0=$(now_cs)
    kill -9 "$_pid"
    echo "  kill -9 of vchan-socket-proxy (pid $_pid) mid-stream"
    touch "$D/stop"
    wait "$_pid"
    rm -f "$D/killed.out"
    close_seen "$_t0"
}

# vchan_peer_dies: the peer domain destroyed mid-stream, then the peer
# process killed mid-stream; one result line for both.
vchan_peer_dies() {
    _case=vchan-peer-dies _why=
    if ! peer_destroyed; then
        # pair_start and vchan_create print their own FAIL line.
        [ -n "$_why" ] && fail "$_case" "xl destroy of the peer domain: $_why"
        return
    fi
    _first=$_seen _why=
    if ! peer_killed; then
        [ -n "$_why" ] && fail "$_case" "kill -9 of the peer process: $_why"
        return
    fi
    pass "$_case (xl destroy of the peer domain: $_first; kill -9 of the peer process: $_seen)"
}

# lib_role ROLE PORT: the guest (xenguest-a) is ROLE with 64 KiB rings,
# dom0's vchan-interop the other role; 4 MiB each way. Sets _seen to the
# figures, or _why (and returns 1).
lib_role() {
    _role=$1 _port=$2
    if ! vchan_create vchan-libxenvchan-64k "role=$_role peer=0 port=$_port order=16 kib=$((SIZE / 1024))"; then
        _why=
        return 1
    fi
    if [ "$_role" = server ]; then
        _path=/local/domain/$_id/data/vchan/0/$_port
        "$TOOL" client "$_id" "$_path" "$SIZE" >"$D/lib.out" 2>&1 &
    else
        _path=/local/domain/0/data/vchan/$_id/$_port
        "$TOOL" server "$_id" "$_path" "$SIZE" 65536 >"$D/lib.out" 2>&1 &
    fi
    _pid=$!
    guest_unpause xenguest-a
    wait_peer "$_pid" xenguest-a
    _trc=$?
    guest_wait xenguest-a
    _g=$(cat_line xenguest-a)
    _t=$(grep -h '^vchan-interop: sent' "$D/lib.out")
    grep -h '^vchan' "$(guest_log xenguest-a)" | tr -d '\r' | sed "s/^/  guest $_role | /"
    sed "s/^/  dom0 | /" "$D/lib.out"
    if ! _why=$(guest_result xenguest-a vchan); then
        _why="guest $_role: $_why"
        show_log xenguest-a
        return 1
    elif [ "$_trc" -ne 0 ]; then
        _why="guest $_role: dom0's vchan-interop exited with $_trc"
        return 1
    elif [ "$(field "$_g" sent)" != "$(field "$_t" received)" ] ||
        [ "$(field "$_t" sent)" != "$(field "$_g" received)" ]; then
        _why="guest $_role: CRC-32s differ"
        return 1
    fi
    # Both roles add to one figure: the other role's is in the file.
    # shellcheck disable=SC1091
    [ -f "$D/bench.env" ] && . "$D/bench.env"
    LIB_RATE="${LIB_RATE:-} $(rate "$_t")"
    bench_note LIB_RATE "$LIB_RATE"
    _seen="guest $_role: $(rate "$_g") MiB/s, dom0 $(rate "$_t") MiB/s"
}

# lib_case: vchan-libxenvchan-64k: the guest against Debian's libxenvchan
# (tools/vchan-interop) with 64 KiB rings, as server then as client; one
# result line for both.
lib_case() {
    _case=vchan-libxenvchan-64k
    if [ ! -x "$TOOL" ]; then
        fail "$_case" "no $TOOL (scripts/lib/tools.sh builds it)"
        return
    fi
    if ! lib_role server 5; then
        # vchan_create prints its own FAIL line.
        [ -n "$_why" ] && fail "$_case" "$_why"
        return
    fi
    _first=$_seen
    if ! lib_role client 6; then
        [ -n "$_why" ] && fail "$_case" "$_why"
        return
    fi
    pass "$_case (64 KiB rings, $SIZE bytes each way in each role, CRC-32s equal; $_first; $_seen)"
}

# dom0_self: two dom0 processes over libxenvchan with 64 KiB rings, dom0
# mapping its own grants: Linux's figure, or why it refused.
dom0_self() {
    _path=/local/domain/0/data/vchan/0/9
    "$TOOL" server 0 "$_path" "$SIZE" 65536 >"$D/self-server.out" 2>&1 &
    _pid=$!
    "$TOOL" client 0 "$_path" "$SIZE" >"$D/self-client.out" 2>&1
    _crc=$?
    wait "$_pid"
    sed 's/^/  dom0 self | /' "$D/self-server.out" "$D/self-client.out"
    _t=$(grep -h '^vchan-interop: sent' "$D/self-client.out")
    if [ "$_crc" -eq 0 ] && [ -n "$_t" ]; then
        SELF_RATE=$(rate "$_t")
        bench_note SELF_RATE "$SELF_RATE"
    else
        SELF_RATE="refused ($(tail -n 1 "$D/self-client.out"))"
        bench_note SELF_RATE "$SELF_RATE"
    fi
}

# vchan_local: the loopback baseline in one guest process.
vchan_local() {
    _case=vchan-local
    vchan_create "$_case" "mode=local order=16 kib=$PAIR_KIB" || return
    guest_unpause xenguest-a
    guest_wait xenguest-a
    _l=$(cat_line xenguest-a)
    echo "  guest | $_l"
    if ! _why=$(guest_result xenguest-a vchan); then
        fail "$_case" "$_why"
        show_log xenguest-a
    else
        LOCAL_RATE=$(rate "$_l")
        bench_note LOCAL_RATE "$LOCAL_RATE"
        pass "$_case ($((PAIR_KIB / 1024)) MiB through a 64 KiB loopback ring in one process, $LOCAL_RATE MiB/s)"
    fi
}

# bench_note NAME VALUE: keeps a benchmark figure for bench_line. Each
# case runs in a subshell of its own (run_case), so the figure goes
# through a file, not a variable.
bench_note() {
    printf '%s=%s\n' "$1" "$(printf '%s' "$2" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")" >>"$D/bench.env"
}

# bench_line: the benchmark's figures, from the cases that ran.
bench_line() {
    # shellcheck disable=SC1091
    [ -f "$D/bench.env" ] && . "$D/bench.env"
    _ratio=$(awk "BEGIN { if (\"${LOCAL_RATE:-0}\" + 0 > 0) printf \"%.2f\", \"${PAIR_RATE:-0}\" / \"$LOCAL_RATE\"; else print \"?\" }")
    echo "vchan benchmark: pair ${PAIR_RATE:-?} MiB/s (64 KiB rings, kicks/MiB ${PAIR_KICKS:-?}); guest with dom0 libxenvchan (64 KiB):${LIB_RATE:- ?} MiB/s; dom0 self over libxenvchan: ${SELF_RATE:-?}; in-domain loopback ${LOCAL_RATE:-?} MiB/s; pair/loopback $_ratio"
}

