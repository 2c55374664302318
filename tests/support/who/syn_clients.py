#!/usr/bin/env python3
"""who.rs helper: N non-blocking IPv4 connects to HOST:PORT, kept open until stdin closes.

usage: syn_clients.py HOST PORT N
The driver connects to the listener's own address; this one lets an IPv4 client reach a
dual-stack `[::]` listener (the kernel then sees v4-mapped addresses). Prints "ok" once the
SYNs are sent.
"""
import socket
import sys


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    clients = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect((host, port))
        except (BlockingIOError, InterruptedError):
            pass
        clients.append(c)
    sys.stdout.write("ok\n")
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
