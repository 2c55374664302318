#!/usr/bin/env python3
"""Test helper: a supervisor that binds a listener, forks a worker holding it, and on command
closes its own copy of the fd while living on (as preforking servers do).

Commands (answers start with "ok" or "err"):
  start   -> ok PORT SUPERVISOR_PID WORKER_PID   (listener on 127.0.0.1, an ephemeral port)
  close   -> ok                                  (the supervisor closes its fd; the worker keeps it)
  quit                                           (the worker is killed too)
"""
import os
import signal
import socket
import sys

listener = None
worker = None


def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main():
    global listener, worker
    for line in sys.stdin:
        cmd = line.strip()
        if not cmd:
            continue
        try:
            if cmd == "start":
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.bind(("127.0.0.1", 0))
                listener.listen(8)
                worker = os.fork()
                if worker == 0:
                    # The worker holds the listener and nothing of the test's pipes.
                    devnull = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1):
                        os.dup2(devnull, fd)
                    while True:
                        signal.pause()
                reply("ok %d %d %d" % (listener.getsockname()[1], os.getpid(), worker))
            elif cmd == "close":
                listener.close()
                reply("ok")
            elif cmd == "quit":
                break
            else:
                reply("err unknown command " + cmd)
        except Exception as e:  # the test reads the message
            reply("err %s" % e)
    if worker:
        os.kill(worker, signal.SIGKILL)


if __name__ == "__main__":
    main()
