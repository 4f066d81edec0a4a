#!/bin/sh
# Runs the named scenarios of scripts/scenarios/ one after another, in one
# Xen host (dom0 runs it from the project root). Exits 1 if any failed.
times=${XENGUEST_LOGS:-/tmp/xenguest-logs}/case-times
rm -f "$times"
rc=0
for name in "$@"; do
    echo "== scenario $name"
    sh "scripts/scenarios/$name.sh" || rc=1
done
# Issue 12's ratio: the time of the cases run in PV (pv-X) against their
# PVH twins (X) in this same run, of the pairs where both passed.
if [ -f "$times" ]; then
    awk '
        { t[$1] = $2 }
        END {
            for (c in t)
                if (c ~ /^pv-/ && (substr(c, 4) in t)) {
                    n++; pv += t[c]; pvh += t[substr(c, 4)]
                }
            if (n > 0 && pvh > 0)
                printf "PV/PVH suite time: %d case(s) run both ways, PV %.1f s, PVH %.1f s, ratio %.2f\n", n, pv / 100, pvh / 100, pv / pvh
        }' "$times"
fi
exit $rc
