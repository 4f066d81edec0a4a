#!/bin/sh
# shellcheck shell=dash  # sh with `local` (scripts/lib/xl.sh)
# bench: the emulated host's part of scripts/bench (scripts/lib/bench.sh)
# at scripts/bench --smoke's size: 1024 pages, 2 rounds, a transfer of
# 256 pages. scripts/test runs it in the suite's boot and hands its lines
# to `scripts/bench --smoke --lines` (the bench-smoke case), so that the
# benchmark cannot rot; its own cases pass when every part ran.
exec sh scripts/lib/bench.sh 1024 2 256
