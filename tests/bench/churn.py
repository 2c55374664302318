#!/usr/bin/env python3
"""Churn for the soak (soak.sh): listeners and network namespaces made and removed without end.

    churn.py run SECONDS     listener churn in this namespace, and namespace churn, for SECONDS
    churn.py hold SECONDS    (inside a namespace) three listeners, one with a full queue

`run` keeps a pool of POOL listeners on 127.0.0.1; every TICK it closes a few at random (with
the clients queued on them) and opens as many new ones, one in three with 1..BACKLOG+3
connections never accepted, so queues fill and overflow. Every NS_EVERY seconds it makes a
namespace that lives NS_LIFE seconds, alternately a named one (`ip netns add`, then a holder
process in it, then `ip netns del`) and one held only by a process (`unshare --net`). It prints
`stats LISTENERS NAMESPACES ALIVE` (made so far, namespaces alive) every STATS seconds, and
removes all it made on SIGTERM or at the end.
"""
import os
import random
import signal
import socket
import subprocess
import sys
import time

POOL = 200
TICK = 0.1
REPLACE = 3
BACKLOG = 4
NS_EVERY = 3.0
NS_LIFE = 15.0
STATS = 5.0
HERE = os.path.abspath(__file__)


class Stop(Exception):
    pass


def on_term(*_):
    raise Stop()


def listener(queued):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(BACKLOG)
    clients = []
    for _ in range(queued):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex(s.getsockname())
        clients.append(c)
    return s, clients


def close(entry):
    s, clients = entry
    for c in clients:
        c.close()
    s.close()


def hold(seconds):
    signal.signal(signal.SIGTERM, on_term)
    held = [listener(0), listener(0), listener(BACKLOG + 3)]
    try:
        time.sleep(seconds)
    except Stop:
        pass
    for entry in held:
        close(entry)


class Namespaces:
    """Namespaces made by `run`, each with its holder process."""

    def __init__(self):
        self.alive = []  # (deadline, name or None, process)
        self.made = 0

    def make(self, life):
        self.made += 1
        hold = [sys.executable, HERE, "hold", str(life)]
        if self.made % 2:
            name = "soak-%d-%d" % (os.getpid(), self.made)
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            proc = subprocess.Popen(["ip", "netns", "exec", name] + hold)
        else:
            name = None
            script = 'ip link set lo up && exec "$@"'
            proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script, "sh"] + hold)
        self.alive.append((time.monotonic() + life, name, proc))

    def reap(self, everything=False):
        kept = []
        for deadline, name, proc in self.alive:
            if everything and proc.poll() is None:
                proc.terminate()
            if everything or proc.poll() is not None or time.monotonic() > deadline + 5:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                if name is not None:
                    subprocess.run(["ip", "netns", "del", name], check=False)
            else:
                kept.append((deadline, name, proc))
        self.alive = kept


def run(seconds):
    signal.signal(signal.SIGTERM, on_term)
    end = time.monotonic() + seconds
    rng = random.Random(16)
    pool = []
    opened = 0
    spaces = Namespaces()
    next_ns = next_stats = time.monotonic()
    try:
        while time.monotonic() < end:
            for _ in range(REPLACE if len(pool) >= POOL else POOL - len(pool)):
                if len(pool) >= POOL:
                    close(pool.pop(rng.randrange(len(pool))))
                queued = rng.randint(1, BACKLOG + 3) if rng.random() < 1 / 3 else 0
                pool.append(listener(queued))
                opened += 1
            now = time.monotonic()
            if now >= next_ns:
                spaces.make(NS_LIFE)
                next_ns = now + NS_EVERY
            spaces.reap()
            if now >= next_stats:
                print("stats %d %d %d" % (opened, spaces.made, len(spaces.alive)), flush=True)
                next_stats = now + STATS
            time.sleep(TICK)
    except Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        spaces.reap(everything=True)
        for entry in pool:
            close(entry)
    print("stats %d %d %d" % (opened, spaces.made, len(spaces.alive)), flush=True)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "hold"):
        sys.exit(__doc__)
    seconds = float(sys.argv[2])
    if sys.argv[1] == "run":
        run(seconds)
    else:
        hold(seconds)


if __name__ == "__main__":
    main()
