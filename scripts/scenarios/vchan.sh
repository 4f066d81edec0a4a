#!/bin/sh
# vchan: byte streams over libxenvchan's wire protocol (tools/vchan, the
# guest's vchan-cat via scenario=vchan, kernel/src/scenario/vchan.rs)
#   vchan-dom0-client: the guest serves, dom0's unmodified Debian
#       vchan-socket-proxy -m client connects (in-page rings, 1024/2048
#       bytes); 4 MiB each way, the CRC-32s equal on both ends;
#   vchan-dom0-server: the roles swapped (-m server, the guest connects);
#   vchan-pair: two of our domains, 64 KiB rings (order 16), 64 MiB from
#       A to B;
#   vchan-peer-dies: xl destroy of the client domain mid-stream (the
#       server sees the close within a second, ends cleanly, baseline
#       back), then kill -9 of dom0's proxy mid-stream (its kernel's unmap
#       notify clears cli_live; the same checks);
#   vchan-libxenvchan-64k: dom0's tools/vchan-interop, linked against
#       Debian's libxenvchan, with 64 KiB rings (order 16) in both roles
#       against the guest (one result line); 4 MiB each way, CRC-32s equal;
#   vchan-local: the benchmark's baseline, the pair's 64 MiB through a
#       64 KiB loopback ring in one guest process.
# Then one "vchan benchmark:" line: MiB/s of the pair, of the guest with
# dom0's libxenvchan (64 KiB rings), of two dom0 processes over
# libxenvchan (Linux's own figure, or why Linux refused), of the loopback,
# and the pair's ratio to the loopback.
# VCHAN_CASES="pair ..." runs only the named cases (names after vchan-).
# Each guest's kernel checks its baseline (free pages, grant references,
# hole frames) and that a server removed its xenstore directory.
. scripts/lib/xl.sh
. scripts/lib/share.sh
. scripts/lib/vchan.sh

# VCHAN_CASES picks some of the cases (by default all, in this order).
for c in ${VCHAN_CASES:-dom0-client dom0-server pair peer-dies libxenvchan-64k local}; do
    case $c in
        dom0-client) run_case dom0_case vchan-dom0-client server client ;;
        dom0-server) run_case dom0_case vchan-dom0-server client server ;;
        pair)
            # Its stream may take PAIR_TIMEOUT (scripts/lib/vchan.sh).
            (
                CASE_BUDGET=$((PAIR_TIMEOUT + 60))
                run_case vchan_pair vchan-pair
            )
            ;;
        peer-dies)
            # Two runs of a guest in one case: twice the budget.
            (
                CASE_BUDGET=$((4 * GUEST_TIMEOUT + 120))
                run_case vchan_peer_dies vchan-peer-dies
            )
            ;;
        libxenvchan-64k)
            (
                CASE_BUDGET=$((4 * GUEST_TIMEOUT + 120))
                run_case lib_case vchan-libxenvchan-64k
            )
            [ -x "$TOOL" ] && dom0_self
            ;;
        local) run_case vchan_local vchan-local ;;
        *) fail "vchan-$c" "no such case" ;;
    esac
done
bench_line
finish
