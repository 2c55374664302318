#!/usr/bin/env python3
"""who.rs helper: listener churn on 127.0.0.1, each listener on a port of its own.

usage:
  churn.py steady FIRST N BUSY CLIENTS
      N listeners on ports FIRST.. held until stdin closes; the first BUSY have backlog 1 and
      CLIENTS connects each (a full queue whose retransmitted SYNs keep adding drops).
      Prints "ok" once they are all listening.
  churn.py churn FIRST COUNT BATCH PERIOD DEADLINE LOG BUSY CLIENTS
      Every PERIOD seconds opens the next BATCH listeners (ports FIRST, FIRST+1, ...; BUSY of them
      made busy as above), then closes the previous batch with its clients, so at most 2*BATCH
      are open at once. Stops after COUNT listeners or DEADLINE seconds, whichever comes first,
      closes everything, writes "PORT OPEN_TIME_NS" per listener to LOG (wall clock, taken
      before the socket was created) and prints "done OPENED".
"""
import socket
import sys
import time


def listener(port, backlog):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(backlog)
    return s


def connect(port, n, into):
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except (BlockingIOError, InterruptedError):
            pass
        into.append(c)


def close_all(socks):
    for s in socks:
        s.close()


def steady(first, n, busy, clients):
    held, conns = [], []
    for i in range(n):
        held.append(listener(first + i, 1 if i < busy else 16))
        if i < busy:
            connect(first + i, clients, conns)
    sys.stdout.write("ok\n")
    sys.stdout.flush()
    sys.stdin.read()


def churn(first, count, batch, period, deadline, log, busy, clients):
    start = time.monotonic()
    opened = 0
    opened_at = []
    prev = []
    n = 0
    while opened < count and time.monotonic() - start < deadline:
        pause = start + n * period - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        cur = []
        for i in range(min(batch, count - opened)):
            port = first + opened
            opened_at.append((port, time.time_ns()))
            cur.append(listener(port, 1 if i < busy else 16))
            if i < busy:
                connect(port, clients, cur)
            opened += 1
        close_all(prev)
        prev = cur
        n += 1
    close_all(prev)
    with open(log, "w") as f:
        for port, t in opened_at:
            f.write("%d %d\n" % (port, t))
    sys.stdout.write("done %d\n" % opened)
    sys.stdout.flush()


def main():
    mode, a = sys.argv[1], sys.argv[2:]
    if mode == "steady":
        steady(int(a[0]), int(a[1]), int(a[2]), int(a[3]))
    elif mode == "churn":
        churn(int(a[0]), int(a[1]), int(a[2]), float(a[3]), float(a[4]), a[5], int(a[6]), int(a[7]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
