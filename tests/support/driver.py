#!/usr/bin/env python3
"""Test driver: holds listeners and clients inside a network namespace, one command per line.

Commands (answers start with "ok" or "err"):
  listen ADDR PORT BACKLOG [reuseport]   -> ok ID PORT
  connect ID N                           -> ok           (N non-blocking connects, kept open)
  accept ID                              -> ok COUNT     (accepts every queued connection)
  close ID                               -> ok
  reset                                  -> ok           (closes every client with an RST)
  pid                                    -> ok PID
  quit
Listeners never accept unless told to. Clients are never closed before quit, so the kernel keeps
retransmitting their SYNs into a full queue (that is what makes drops grow).
"""
import socket
import sys

listeners = {}
clients = []
accepted = []


def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


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
                s.bind((addr, port))
                s.listen(backlog)
                s.setblocking(False)
                ident = len(listeners)
                listeners[ident] = s
                reply("ok %d %d" % (ident, s.getsockname()[1]))
            elif cmd == "connect":
                s = listeners[int(args[0])]
                host, port = s.getsockname()[:2]
                for _ in range(int(args[1])):
                    c = socket.socket(s.family, socket.SOCK_STREAM)
                    c.setblocking(False)
                    try:
                        c.connect((host, port))
                    except (BlockingIOError, InterruptedError):
                        pass
                    clients.append(c)
                reply("ok")
            elif cmd == "accept":
                s = listeners[int(args[0])]
                n = 0
                while True:
                    try:
                        conn, _ = s.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    accepted.append(conn)
                    n += 1
                reply("ok %d" % n)
            elif cmd == "backlog":
                # listen() again on a listening socket: only its backlog changes.
                listeners[int(args[0])].listen(int(args[1]))
                reply("ok")
            elif cmd == "close":
                listeners.pop(int(args[0])).close()
                reply("ok")
            elif cmd == "reset":
                import struct
                for c in clients:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.close()
                clients.clear()
                reply("ok")
            elif cmd == "pid":
                import os
                reply("ok %d" % os.getpid())
            elif cmd == "quit":
                return
            else:
                reply("err unknown command " + cmd)
        except Exception as e:  # the test reads the message
            reply("err %s" % e)


if __name__ == "__main__":
    main()
