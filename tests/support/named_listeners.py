#!/usr/bin/env python3
"""Listeners owned by processes with chosen names (comm), for tests of how names are written.

Usage: named_listeners.py HEXNAME...   (each name hex-encoded, so any byte can be passed)
For each name a child process sets its comm to that name (prctl PR_SET_NAME, at most 15
bytes) and listens on 127.0.0.1, port chosen by the kernel, backlog 1, never accepting. Prints
one line "ok PORT..." (in the order of the names) once all listen, then waits for stdin to
close, and ends its children.
"""
import ctypes
import os
import signal
import socket
import sys

PR_SET_NAME = 15


def child(name, w):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        os._exit(3)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    os.write(w, b"%d\n" % s.getsockname()[1])
    os.close(w)
    signal.pause()


def main():
    kids, ports = [], []
    for hexname in sys.argv[1:]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            child(bytes.fromhex(hexname), w)
        os.close(w)
        kids.append(pid)
        ports.append(os.read(r, 32).decode().strip())
        os.close(r)
    sys.stdout.write("ok %s\n" % " ".join(ports))
    sys.stdout.flush()
    sys.stdin.read()
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
