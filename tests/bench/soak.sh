#!/usr/bin/env bash
# Soak: acceptq --all-netns --sample 50ms for 30 minutes under listener and namespace churn
# (tests/bench/churn.py: 200 listeners, about 30 replaced a second, a third of the new ones with
# queued or overflowing connections; a namespace made every 3 s and removed 15 s later, named
# ones and ones held only by a process). acceptq's resident memory, CPU and open descriptors are
# sampled every minute and printed as a table.
#
#   sudo tests/bench/soak.sh                       # from the repository root; needs root
#   sudo DURATION=3m tests/bench/soak.sh           # a short run: warm-up and period scale down
#
# Environment: DURATION (30m; s, m or h), WARMUP (a sixth of DURATION, so 5m), EVERY (seconds
# between samples: DURATION/12 up to 60), ACCEPTQ (a built binary; default: a release build).
#
# Exit 1 when memory or descriptors grow after the warm-up, or acceptq dies or reports nothing;
# 2 on a setup error. Growth compares the median of the last three samples with the median of
# the first three at or after the warm-up: RSS may rise by 5 % + 512 KiB (allocator slack), open
# descriptors by 12 (a namespace watched holds about ten, and how many are alive at a sample
# depends on where the churn is in its cycle). Threads are printed, not judged.
#
# Everything runs in its own network, mount and PID namespaces (unshare), with a fresh /run: the
# host's listeners and other namespaces (other people's tests) stay out of the figures, and on
# any exit the PID namespace's end kills every process it made and the mount namespace's end
# removes every namespace it named.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH="$ROOT/tests/bench"

seconds_of() {
    case "$1" in
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}

inside() {
    local out=$1 dur=$2 warmup=$3 every=$4 acceptq=$5
    churn_pid=''
    aq_pid=''
    # shellcheck disable=SC2317 # called by the trap
    finish() {
        set +e
        [ -n "$churn_pid" ] && kill "$churn_pid" 2>/dev/null && wait "$churn_pid"
        [ -n "$aq_pid" ] && kill "$aq_pid" 2>/dev/null
        for ns in $(ip netns list 2>/dev/null | cut -d' ' -f1); do ip netns del "$ns"; done
    }
    trap finish EXIT
    trap 'exit 2' INT TERM HUP
    # A /run of our own: `ip netns` names land there, and the host's bind mounts are hidden.
    mount -t tmpfs -o mode=0755 soak-run /run
    ip link set lo up

    python3 "$BENCH/churn.py" run "$((dur + 60))" >"$out/churn" &
    churn_pid=$!
    "$acceptq" --all-netns --sample 50ms --interval 10s --format influx \
        >"$out/reports" 2>"$out/stderr" &
    aq_pid=$!

    local hz start prev_ticks prev_t rows=()
    hz=$(getconf CLK_TCK)
    start=$(date +%s)
    prev_t=$start
    prev_ticks=0
    printf '%7s %9s %6s %5s %8s %7s %10s %10s\n' \
        elapsed rss_kib cpu_% fds netns_fd threads listeners namespaces
    while :; do
        sleep "$every" & wait $!
        local now t ticks rss fds nsfds threads cpu stats
        now=$(date +%s)
        t=$((now - start))
        if ! kill -0 "$aq_pid" 2>/dev/null; then
            echo "soak: acceptq ended after ${t}s:" >&2
            tail -5 "$out/stderr" >&2
            exit 1
        fi
        read -r -a stat <"/proc/$aq_pid/stat"
        ticks=$(( stat[13] + stat[14] ))
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$aq_pid/status")
        threads=$(awk '/^Threads:/ {print $2}' "/proc/$aq_pid/status")
        fds=$(find "/proc/$aq_pid/fd" -mindepth 1 | wc -l)
        nsfds=$(find "/proc/$aq_pid/fd" -mindepth 1 -lname 'net:*' | wc -l)
        cpu=$(awk -v d=$((ticks - prev_ticks)) -v s=$((now - prev_t)) -v hz="$hz" \
            'BEGIN { printf "%.1f", 100 * d / hz / s }')
        stats=$(tail -1 "$out/churn" 2>/dev/null || true)
        read -r _ opened made _ <<<"${stats:-stats 0 0 0}"
        printf '%4d:%02d %9d %6s %5d %8d %7d %10d %10d\n' \
            $((t / 60)) $((t % 60)) "$rss" "$cpu" "$fds" "$nsfds" "$threads" "$opened" "$made"
        rows+=("$t $rss $fds")
        prev_ticks=$ticks
        prev_t=$now
        [ "$t" -ge "$dur" ] && break
    done

    kill "$aq_pid"
    local status=0
    wait "$aq_pid" || status=$?
    aq_pid=''
    local reports
    reports=$(grep -c '^acceptq_netns' "$out/reports" || true)
    echo "acceptq: exit status $status, $reports namespace rows reported," \
        "$(wc -l <"$out/stderr") stderr lines" >&2
    # sed reads to the end: head would leave sort to die of SIGPIPE, failing the pipeline.
    sort "$out/stderr" | uniq -c | sort -rn | sed -n '1,5s/^/  /p' >&2
    [ "$status" = 0 ] || { echo "soak: acceptq exited with $status on SIGTERM" >&2; exit 1; }
    [ "$reports" -gt 0 ] || { echo "soak: acceptq reported nothing" >&2; exit 1; }

    printf '%s\n' "${rows[@]}" | awk -v warm="$warmup" '
        $1 >= warm { n++; t[n] = $1; rss[n] = $2; fds[n] = $3 }
        function med(a, i, j, k, x, y, z) {
            x = a[i]; y = a[j]; z = a[k]
            return (x <= y) ? ((y <= z) ? y : ((x <= z) ? z : x)) \
                            : ((x <= z) ? x : ((y <= z) ? z : y))
        }
        END {
            if (n < 6) { print "soak: fewer than 6 samples after the warm-up"; exit 2 }
            r0 = med(rss, 1, 2, 3); r1 = med(rss, n - 2, n - 1, n)
            f0 = med(fds, 1, 2, 3); f1 = med(fds, n - 2, n - 1, n)
            rlim = r0 * 1.05 + 512; flim = f0 + 12
            printf "after the warm-up: RSS %d -> %d KiB (limit %d), fds %d -> %d (limit %d)\n",
                r0, r1, rlim, f0, f1, flim
            bad = 0
            if (r1 > rlim) { print "soak: FAIL: resident memory grew"; bad = 1 }
            if (f1 > flim) { print "soak: FAIL: open descriptors grew"; bad = 1 }
            if (!bad) print "soak: PASS"
            exit bad
        }' >&2
}

if [ "${1:-}" = --inside ]; then
    shift
    inside "$@"
    exit
fi

if [ "$(id -u)" != 0 ]; then
    echo "soak.sh: needs root (namespaces)" >&2
    exit 2
fi
for tool in ip python3 unshare awk find pkill; do
    command -v "$tool" >/dev/null || { echo "soak.sh: needs $tool" >&2; exit 2; }
done
DUR=$(seconds_of "${DURATION:-30m}")
WARM=$(seconds_of "${WARMUP:-$((DUR / 6))}")
EVERY=${EVERY:-$(( DUR / 12 < 60 ? DUR / 12 : 60 ))}
[ "$EVERY" -ge 5 ] || EVERY=5
if [ -z "${ACCEPTQ:-}" ]; then
    echo "== building acceptq (release)" >&2
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    ACCEPTQ="$ROOT/target/release/acceptq"
fi
ACCEPTQ=$(realpath "$ACCEPTQ")
OUT=$(mktemp -d)
SOAK_PID=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local rc=$?
    set +e
    # unshare --fork ignores SIGTERM while its child runs, so the child, the namespaces' first
    # process, is told itself and tidies up; the end of the PID namespace then kills whatever
    # is left. (Told through unshare, a `kill` of this script or a `timeout` waited out the
    # whole soak.)
    if [ -n "$SOAK_PID" ]; then
        pkill -TERM -P "$SOAK_PID" 2>/dev/null
        wait "$SOAK_PID"
    fi
    rm -rf "$OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP
echo "== soak: ${DUR}s, warm-up ${WARM}s, a sample every ${EVERY}s; kernel $(uname -r)," \
    "$(nproc) cores; $ACCEPTQ" >&2
unshare --net --mount --pid --kill-child=SIGTERM --mount-proc --propagation private \
    bash "$0" --inside "$OUT" "$DUR" "$WARM" "$EVERY" "$ACCEPTQ" &
SOAK_PID=$!
status=0
wait "$SOAK_PID" || status=$?
SOAK_PID=
exit "$status"
