#!/usr/bin/env bash
# Cost benchmark: 1 000 listeners + 20 000 established loopback connections in a fresh
# network namespace, then one table comparing acceptq's LISTEN dump with `ss -ltn` and
# /proc/net/tcp, the per-report dump of accept-queue children (queue_wait_max; one listener of the
# bench's own with a non-empty queue), the cost of `acceptq --once`, and the sampler's CPU share
# at --sample 100ms. Two more namespaces, one with the same listeners and no connection and one
# empty, give the whole-process comparisons with ss, nstat and /proc/net/tcp their baselines.
#
#   sudo tests/bench/run.sh            # from the repository root; needs root (ip netns)
#
# Environment: LISTENERS (1000), CONNS (20000), PROCS (4 server + 4 client processes, so none
# nears the 20 000-fd cap), SAMPLER_SECONDS (10). Exit status 1 when a target is missed, 2 on a
# setup error. The namespace and every process in it are removed on any exit.
set -euo pipefail

LISTENERS=${LISTENERS:-1000}
CONNS=${CONNS:-20000}
PROCS=${PROCS:-4}
SAMPLER_SECONDS=${SAMPLER_SECONDS:-10}
# The load holds its sockets at most this long, whatever happens to this script; the cleanup
# ends it as soon as the bench is done. Far longer than a run: on a loaded machine a run has
# taken over 160 s, and a load gone before the sampler's turn left it 0 or 1 listener rows.
LOAD_SECONDS=$((SAMPLER_SECONDS + 3600))

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH="$ROOT/tests/bench"
NS="aq-bench-$$"
BARE="aq-bench-bare-$$"
EMPTY="aq-bench-empty-$$"
LOAD_PID=
BARE_PID=
OUT=$(mktemp -d)

cleanup() {
    local rc=$?
    set +e
    for pid in $LOAD_PID $BARE_PID; do
        kill "$pid" 2>/dev/null
    done
    for ns in "$NS" "$BARE" "$EMPTY"; do
        if ip netns list 2>/dev/null | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do
                kill -9 "$pid" 2>/dev/null
            done
            ip netns del "$ns"
        fi
    done
    for pid in $LOAD_PID $BARE_PID; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

if [ "$(id -u)" != 0 ]; then
    echo "run.sh: needs root to create a network namespace" >&2
    exit 2
fi
for tool in ip ss nstat python3 cargo; do
    command -v "$tool" >/dev/null || { echo "run.sh: needs $tool" >&2; exit 2; }
done

echo "== building (release): acceptq and the bench program" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
CARGO_TARGET_DIR="$ROOT/target/bench" \
    cargo build --release --quiet --manifest-path "$BENCH/Cargo.toml"
ACCEPTQ="$ROOT/target/release/acceptq"
BENCH_BIN="$ROOT/target/bench/release/acceptq-bench"

echo "== netns $NS: $LISTENERS listeners, $CONNS connections over $PROCS + $PROCS processes" >&2
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# Room for 20 000 client ports next to 1 000 listening ones.
ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"

start=$(date +%s%N)
ip netns exec "$NS" python3 "$BENCH/load.py" "$LISTENERS" "$CONNS" "$PROCS" "$LOAD_SECONDS" \
    >"$OUT/load" &
LOAD_PID=$!
for _ in $(seq 1 600); do
    grep -q '^ready' "$OUT/load" 2>/dev/null && break
    kill -0 "$LOAD_PID" 2>/dev/null || { echo "run.sh: load generator died" >&2; exit 2; }
    sleep 0.1
done
grep -q '^ready' "$OUT/load" || { echo "run.sh: load not ready within 60 s" >&2; exit 2; }
established=$(ip netns exec "$NS" ss -tnH state established | wc -l)
echo "== load ready in $(( ($(date +%s%N) - start) / 1000000 )) ms: $(cat "$OUT/load");" \
    "ss counts $established established sockets (both ends)" >&2

echo "== netns $BARE: the same $LISTENERS listeners, no connection; netns $EMPTY: nothing" >&2
for ns in "$BARE" "$EMPTY"; do
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
done
ip netns exec "$BARE" python3 "$BENCH/load.py" "$LISTENERS" 0 "$PROCS" "$LOAD_SECONDS" \
    >"$OUT/bare" &
BARE_PID=$!
for _ in $(seq 1 600); do
    grep -q '^ready' "$OUT/bare" 2>/dev/null && break
    kill -0 "$BARE_PID" 2>/dev/null || { echo "run.sh: bare load died" >&2; exit 2; }
    sleep 0.1
done
grep -q '^ready' "$OUT/bare" || { echo "run.sh: bare load not ready within 60 s" >&2; exit 2; }

echo "== kernel $(uname -r), $(nproc) cores; command: $0" >&2
ip netns exec "$NS" "$BENCH_BIN" "$ACCEPTQ" "$LISTENERS" "$SAMPLER_SECONDS" \
    "/run/netns/$BARE" "/run/netns/$EMPTY"
