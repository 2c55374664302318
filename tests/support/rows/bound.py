#!/usr/bin/env python3
"""Test helper: device-bound listeners and clients inside a network namespace, one command a line.

Commands (answers start with "ok" or "err"):
  listen ADDR PORT BACKLOG [dev=NAME] [scope=NAME] [reuseport]  -> ok ID PORT
  connect ADDR PORT N [dev=NAME] [scope=NAME]                   -> ok  (N non-blocking connects)
  pid                                                           -> ok PID
  quit
dev=NAME binds the socket to a device (SO_BINDTODEVICE); scope=NAME gives an IPv6 link-local
address that device as its scope (fe80::1%NAME), which binds it to the device as well.
Listeners never accept; clients are kept open until quit.
"""
import os
import socket
import sys

listeners = []
clients = []


def make(addr, options):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if "dev" in options:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, options["dev"].encode())
    return s


def sockaddr(s, addr, port, options):
    if s.family == socket.AF_INET6:
        scope = socket.if_nametoindex(options["scope"]) if "scope" in options else 0
        return (addr, port, 0, scope)
    return (addr, port)


def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main():
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd, args = parts[0], parts[1:]
        options = dict(a.split("=", 1) for a in args if "=" in a)
        flags = [a for a in args if "=" not in a]
        try:
            if cmd == "listen":
                addr, port, backlog = flags[0], int(flags[1]), int(flags[2])
                s = make(addr, options)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if "reuseport" in flags[3:]:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind(sockaddr(s, addr, port, options))
                s.listen(backlog)
                listeners.append(s)
                reply("ok %d %d" % (len(listeners) - 1, s.getsockname()[1]))
            elif cmd == "connect":
                addr, port, n = flags[0], int(flags[1]), int(flags[2])
                for _ in range(n):
                    c = make(addr, options)
                    c.setblocking(False)
                    try:
                        c.connect(sockaddr(c, addr, port, options))
                    except (BlockingIOError, InterruptedError):
                        pass
                    clients.append(c)
                reply("ok")
            elif cmd == "pid":
                reply("ok %d" % os.getpid())
            elif cmd == "quit":
                return
            else:
                reply("err unknown command " + cmd)
        except Exception as e:  # the test reads the message
            reply("err %s" % e)


if __name__ == "__main__":
    main()
