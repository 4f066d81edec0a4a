#!/bin/sh
# Runs the named scenarios of scripts/scenarios/ one after another, in one
# Xen host (dom0 runs it from the project root). Exits 1 if any failed.
rc=0
for name in "$@"; do
    echo "== scenario $name"
    sh "scripts/scenarios/$name.sh" || rc=1
done
exit $rc
