#!/usr/bin/env bash
# A report's own instructions per listener row, repeatable on a shared or virtual machine:
# `acceptq --once --no-process --no-syn-queue` under callgrind in a namespace holding LISTENERS
# listeners and no connection, less the same in an empty namespace, divided by LISTENERS, for
# each format. What is left is building, ranking and encoding the rows, and decoding the dump's
# records (the kernel's side of the dump is not counted by callgrind).
#
#   sudo tests/bench/callgrind.sh [ACCEPTQ]    # default: target/release/acceptq, built here
#
# Needs root (ip netns), valgrind and python3. Both namespaces are removed on any exit.
set -euo pipefail

LISTENERS=${LISTENERS:-1000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NS="aq-cg-$$"
EMPTY="aq-cg-empty-$$"
LOAD_PID=
OUT=$(mktemp -d)

cleanup() {
    local rc=$?
    set +e
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
    for ns in "$NS" "$EMPTY"; do
        if ip netns list 2>/dev/null | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do
                kill -9 "$pid" 2>/dev/null
            done
            ip netns del "$ns"
        fi
    done
    [ -n "$LOAD_PID" ] && wait "$LOAD_PID" 2>/dev/null
    rm -rf "$OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

for tool in ip valgrind python3; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: needs $tool" >&2; exit 2; }
done
ACCEPTQ=${1:-}
if [ -z "$ACCEPTQ" ]; then
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    ACCEPTQ="$ROOT/target/release/acceptq"
fi

for ns in "$NS" "$EMPTY"; do
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
done
ip netns exec "$NS" python3 "$ROOT/tests/bench/load.py" "$LISTENERS" 0 1 600 >"$OUT/load" &
LOAD_PID=$!
for _ in $(seq 1 600); do
    grep -q '^ready' "$OUT/load" 2>/dev/null && break
    sleep 0.1
done
grep -q '^ready' "$OUT/load" || { echo "callgrind.sh: listeners not ready" >&2; exit 2; }

# Instructions of one run in namespace $1 with format $2.
instructions() {
    ip netns exec "$1" valgrind --tool=callgrind --callgrind-out-file="$OUT/cg" \
        "$ACCEPTQ" --once --no-process --no-syn-queue --format "$2" >/dev/null 2>"$OUT/err"
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$OUT/cg"
}

echo "| format | instructions, $LISTENERS listeners | empty namespace | per row |"
echo "|---|---|---|---|"
for format in influx prometheus collectd json; do
    with=$(instructions "$NS" "$format")
    without=$(instructions "$EMPTY" "$format")
    echo "| $format | $with | $without | $(( (with - without) / LISTENERS )) |"
done
