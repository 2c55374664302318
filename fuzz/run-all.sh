#!/usr/bin/env bash
# Runs every target once for SECONDS (default 600) each, one at a time, one job, niced, then
# minimises each corpus. Logs go to fuzz/logs/ (not committed).
set -u
cd "$(dirname "$0")"
secs=${1:-600}
mkdir -p logs
for t in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$t"
    nice -n 10 cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 \
        >"logs/$t.log" 2>&1
    echo "$t: exit $?" >>logs/summary
    nice -n 10 cargo +nightly fuzz cmin "$t" >"logs/$t.cmin.log" 2>&1
done
