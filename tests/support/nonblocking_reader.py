#!/usr/bin/env python3
"""Runs a command (acceptq --format json ...) with its stdout on a pipe set O_NONBLOCK, reads
nothing for a while so the pipe fills and writes would block, then drains it; twice. Checks that
every line that arrived is whole JSON and every report is whole (its listener rows, then its
acceptq_netns row counting them).

Prints "ok LINES REPORTS BIGGEST_REPORT_BYTES" and exits 0, or "bad: WHY" and exits 1.
Usage: nonblocking_reader.py COMMAND ARGS...
"""
import json
import os
import select
import subprocess
import sys
import time

STALL = 1.5  # seconds not reading: the pipe (64 KiB) fills well before
DRAIN = 1.0  # seconds reading everything


def drain(fd, seconds, out):
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        out.extend(chunk)


def main():
    r, w = os.pipe()
    # The flag belongs to the open file description the child shares: its writes to fd 1
    # return EAGAIN once the pipe is full.
    os.set_blocking(w, False)
    child = subprocess.Popen(sys.argv[1:], stdout=w)
    os.close(w)
    data = bytearray()
    try:
        for _ in range(2):
            time.sleep(STALL)
            drain(r, DRAIN, data)
    finally:
        # Closing our end makes acceptq exit (stdout gone); a report cut here is not its fault.
        os.close(r)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    lines = bytes(data).split(b"\n")[:-1]  # the piece after the last newline may be cut by us
    reports, rows, biggest, size = 0, 0, 0, 0
    for n, raw in enumerate(lines):
        size += len(raw) + 1
        try:
            m = json.loads(raw)
        except ValueError:
            print(f"bad: line {n} is not whole JSON: {raw[:200]!r}")
            return 1
        if m["name"] == "acceptq_listener":
            rows += 1
            continue
        want = m["fields"]["listeners"]
        if rows != want:
            print(f"bad: report {reports} has {rows} listener rows, its acceptq_netns says {want}")
            return 1
        reports += 1
        biggest = max(biggest, size)
        rows, size = 0, 0
    print(f"ok {len(lines)} {reports} {biggest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
