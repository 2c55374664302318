#!/usr/bin/env python3
"""who.rs helper: holds one listener under a chosen process name (comm).

usage: hold.py NAME ADDR PORT BACKLOG [fork]
Sets its comm to NAME, listens on ADDR:PORT (0: any free port), and with `fork` forks a child
that shares the listening socket (the way pre-forking servers do). Prints
"ok PORT PID [CHILD_PID]" once listening, then waits for EOF on stdin and exits (the child too).
"""
import os
import socket
import sys


def set_comm(name):
    with open("/proc/self/comm", "w") as f:
        f.write(name)


def main():
    name, addr, port, backlog = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    fork = "fork" in sys.argv[5:]
    set_comm(name)
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(backlog)
    pids = [os.getpid()]
    if fork:
        child = os.fork()
        if child == 0:
            sys.stdin.read()  # the parent's stdin: EOF ends both
            os._exit(0)
        pids.append(child)
    sys.stdout.write("ok %d %s\n" % (s.getsockname()[1], " ".join(map(str, pids))))
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
