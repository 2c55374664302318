#!/usr/bin/env python3
"""Benchmark load: LISTENERS listeners on 127.0.0.1 and CONNS established loopback connections,
spread over GROUPS server processes (each holds its listeners and accepts its share) and GROUPS
client processes (each holds its share of client sockets), so no process nears the 20 000-fd cap.

    load.py LISTENERS CONNS GROUPS MAX_SECONDS

Prints "ready LISTENERS CONNS" on stdout once every connection is accepted, then holds them until
MAX_SECONDS have passed since start or it is signalled; every child dies with it.
"""
import os
import selectors
import signal
import socket
import sys
import time

BACKLOG = 1024


def server(n_listeners, n_accept, out_fd, deadline):
    listeners = []
    for _ in range(n_listeners):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(BACKLOG)
        s.setblocking(False)
        listeners.append(s)
    os.write(out_fd, (" ".join(str(s.getsockname()[1]) for s in listeners) + "\n").encode())
    sel = selectors.DefaultSelector()
    for s in listeners:
        sel.register(s, selectors.EVENT_READ)
    accepted = []
    told = False
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            while True:
                try:
                    conn, _ = key.fileobj.accept()
                except (BlockingIOError, InterruptedError):
                    break
                accepted.append(conn)
        if not told and len(accepted) >= n_accept:
            os.write(out_fd, b"accepted\n")
            told = True
            # Everything is in; just hold the sockets.
            for s in listeners:
                sel.unregister(s)
            time.sleep(max(0.0, deadline - time.monotonic()))
    os._exit(0)


def client(ports, n_conns, out_fd, deadline):
    sel = selectors.DefaultSelector()
    socks = []
    pending = 0
    for i in range(n_conns):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        err = c.connect_ex(("127.0.0.1", ports[i % len(ports)]))
        socks.append(c)
        if err not in (0, 115):  # EINPROGRESS
            os.write(out_fd, ("error connect %d\n" % err).encode())
            os._exit(1)
        sel.register(c, selectors.EVENT_WRITE)
        pending += 1
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                os.write(out_fd, ("error so_error %d\n" % err).encode())
                os._exit(1)
            sel.unregister(key.fileobj)
            pending -= 1
    os.write(out_fd, b"connected\n" if not pending else b"error timeout\n")
    time.sleep(max(0.0, deadline - time.monotonic()))
    os._exit(0)


def read_line(fd):
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit("load: a child died early")
        data += chunk
    return data.decode().strip()


def main():
    n_listeners, n_conns, groups, max_seconds = (int(a) for a in sys.argv[1:5])
    deadline = time.monotonic() + max_seconds
    children = []

    def kill_children():
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(*_):
        kill_children()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        servers = []
        for g in range(groups):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                server(n_listeners // groups, n_conns // groups, w, deadline)
            os.close(w)
            children.append(pid)
            ports = [int(p) for p in read_line(r).split()]
            servers.append((r, ports))
        clients = []
        for g in range(groups):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                client(servers[g][1], n_conns // groups, w, deadline)
            os.close(w)
            children.append(pid)
            clients.append(r)
        for r in clients:
            line = read_line(r)
            if line != "connected":
                raise SystemExit("load: client: " + line)
        for r, _ in servers:
            line = read_line(r)
            if line != "accepted":
                raise SystemExit("load: server: " + line)
        print("ready %d %d" % (n_listeners // groups * groups, n_conns // groups * groups), flush=True)
        time.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        kill_children()


if __name__ == "__main__":
    main()
