#!/usr/bin/env python3
"""Test helper for accept-queue waits: listeners that accept one connection at a time, and clients
connected one by one (each connect returns once its handshake is done) that can close while their
connection still waits in the queue. One command per line; answers start with "ok" or "err".

  listen ADDR PORT BACKLOG [reuseport] [fastopen] [dev=NAME]  -> ok ID PORT
                                         (dev: SO_BINDTODEVICE; fastopen: TCP_FASTOPEN)
  connect ID HOST                        -> ok CLIENT   (one client to HOST and ID's port)
  fastopen ID HOST                       -> ok CLIENT   (data in the SYN: a Fast Open connect)
  close CLIENT                           -> ok          (the client closes: FIN, no RST)
  accept_one ID                          -> ok N        (accepts the oldest queued, N is 0 or 1)
  accept ID                              -> ok N        (accepts every queued connection)
  quit
Accepted connections are kept open and idle: the server never sends on them.
"""
import select
import socket
import sys

listeners = {}
clients = []
accepted = []


def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def accept(s, most):
    n = 0
    while n < most:
        try:
            conn, _ = s.accept()
        except (BlockingIOError, InterruptedError):
            break
        accepted.append(conn)
        n += 1
    return n


def main():
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd, args = parts[0], parts[1:]
        try:
            if cmd == "listen":
                addr, port, backlog = args[0], int(args[1]), int(args[2])
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                s = socket.socket(family, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if "reuseport" in args[3:]:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if "fastopen" in args[3:]:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 5)
                for a in args[3:]:
                    if a.startswith("dev="):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a[4:].encode())
                s.bind((addr, port))
                s.listen(backlog)
                s.setblocking(False)
                ident = len(listeners)
                listeners[ident] = s
                reply("ok %d %d" % (ident, s.getsockname()[1]))
            elif cmd == "connect":
                port = listeners[int(args[0])].getsockname()[1]
                host = args[1]
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                c = socket.socket(family, socket.SOCK_STREAM)
                c.setblocking(False)
                try:
                    c.connect((host, port))
                except (BlockingIOError, InterruptedError):
                    pass
                _, writable, _ = select.select([], [c], [], 5)
                err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if not writable or err:
                    raise OSError("connect to %s:%d: %s" % (host, port, err or "timeout"))
                clients.append(c)
                reply("ok %d" % (len(clients) - 1))
            elif cmd == "fastopen":
                port = listeners[int(args[0])].getsockname()[1]
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.sendto(b"hello", socket.MSG_FASTOPEN, (args[1], port))
                clients.append(c)
                reply("ok %d" % (len(clients) - 1))
            elif cmd == "close":
                clients[int(args[0])].close()
                reply("ok")
            elif cmd == "accept_one":
                reply("ok %d" % accept(listeners[int(args[0])], 1))
            elif cmd == "accept":
                reply("ok %d" % accept(listeners[int(args[0])], 1 << 30))
            elif cmd == "quit":
                return
            else:
                reply("err unknown command " + cmd)
        except Exception as e:  # the test reads the message
            reply("err %s" % e)


if __name__ == "__main__":
    main()
