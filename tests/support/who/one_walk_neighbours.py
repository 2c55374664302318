#!/usr/bin/env python3
"""Sockets a real host keeps around queued ports, for the one walk (SYN queue and waits in one
request) to be told apart: `one_walk_neighbours.py MODE`, in a namespace of its own (nftables
rules are added to its table `inet f`). Prints "ready" once all is in place, then holds every
socket until stdin closes.

MODE neighbours: 127.0.0.1:7001 (backlog 32) with, on its own port, server-side TIME_WAIT and
  FIN_WAIT2 sockets, accepted connections in CLOSE_WAIT, one in LAST_ACK, and queued: 3
  established, 2 whose clients closed (CLOSE_WAIT), 1 reset by its client, and 5 request
  sockets; 127.0.0.1:7002 with 4 request sockets only; a dual-stack [::]:7003 with 2
  IPv4-mapped and 1 IPv6 queued and 2 IPv4-mapped requests; a v6-only [::]:7004 (3 queued)
  beside 0.0.0.0:7004 (2 queued); 0.0.0.0:7005 bound to lo (2 queued); 127.0.0.5:7007 (1
  queued); an SO_REUSEPORT group of 3 on 127.0.0.1:7006 (9 queued); and 127.0.0.1:7100 with
  TIME_WAIT sockets of both sides and 2 accepted connections.
MODE fastopen (net.ipv4.tcp_fastopen=3 in the namespace): 127.0.0.1:7201 with 2 Fast Open
  children held in SYN_RECV, 3 request sockets and 1 established child; a dual-stack [::]:7203
  with 3 Fast Open children (2 IPv6, 1 IPv4-mapped) and 1 IPv4-mapped request socket;
  127.0.0.1:7202 with 2 established children. Each Fast Open client first fetches its cookie.
"""
import socket
import struct
import subprocess
import sys
import time

A4, A6 = socket.AF_INET, socket.AF_INET6
keep = []


def nft(rule):
    subprocess.run(["nft"] + rule.split(), check=True)


def drop_final_acks(ports, sports):
    nft("add rule inet f in tcp dport { %s } tcp sport %s tcp flags & (syn|ack|fin|rst) == ack drop"
        % (", ".join(map(str, ports)), sports))


def listen(fam, addr, port, backlog=16, v6only=None, reuseport=False, dev=None, fastopen=False):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    if dev:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    if fastopen:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
    s.bind((addr, port))
    s.listen(backlog)
    keep.append(s)
    return s


def client(fam, sport=0):
    c = socket.socket(fam, socket.SOCK_STREAM)
    if sport:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("::" if fam == A6 else "0.0.0.0", sport))
    keep.append(c)
    return c


def connect(fam, host, port, sport=0):
    """A client whose handshake completed."""
    c = client(fam, sport)
    c.connect((host, port))
    return c


def half_open(fam, host, port, sport):
    """A client whose final ACK the rules drop: a request socket on the server."""
    c = client(fam, sport)
    c.setblocking(False)
    try:
        c.connect((host, port))
    except BlockingIOError:
        pass


def neighbours():
    q = listen(A4, "127.0.0.1", 7001, 32)
    for _ in range(4):  # server-side TIME_WAIT: the server closes first
        c = connect(A4, "127.0.0.1", 7001)
        a, _ = q.accept()
        a.close()
        time.sleep(0.05)
        c.close()
    for _ in range(2):  # server-side FIN_WAIT2, orphaned
        connect(A4, "127.0.0.1", 7001)
        q.accept()[0].close()
    for _ in range(2):  # accepted, in CLOSE_WAIT, with a file
        c = connect(A4, "127.0.0.1", 7001)
        keep.append(q.accept()[0])
        c.close()
    c = connect(A4, "127.0.0.1", 7001, sport=40001)  # LAST_ACK: the client's last ACK dropped
    a, _ = q.accept()
    c.close()
    time.sleep(0.05)
    nft("add rule inet f in tcp sport 40001 tcp dport 7001 drop")
    a.close()
    for _ in range(3):
        connect(A4, "127.0.0.1", 7001)
    for _ in range(2):
        connect(A4, "127.0.0.1", 7001).close()
    r = connect(A4, "127.0.0.1", 7001)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    keep.remove(r)
    r.close()
    drop_final_acks([7001, 7002, 7003], "41000-41099")
    for i in range(5):
        half_open(A4, "127.0.0.1", 7001, 41000 + i)
    listen(A4, "127.0.0.1", 7002)
    for i in range(4):
        half_open(A4, "127.0.0.1", 7002, 41010 + i)
    listen(A6, "::", 7003, v6only=False)
    for _ in range(2):
        connect(A4, "127.0.0.1", 7003)
    connect(A6, "::1", 7003)
    for i in range(2):
        half_open(A4, "127.0.0.1", 7003, 41020 + i)
    listen(A6, "::", 7004, v6only=True)
    listen(A4, "0.0.0.0", 7004)
    for _ in range(2):
        connect(A4, "127.0.0.1", 7004)
    for _ in range(3):
        connect(A6, "::1", 7004)
    listen(A4, "0.0.0.0", 7005, dev="lo")
    for _ in range(2):
        connect(A4, "127.0.0.1", 7005)
    listen(A4, "127.0.0.5", 7007)
    connect(A4, "127.0.0.5", 7007)
    for _ in range(3):
        listen(A4, "127.0.0.1", 7006, reuseport=True)
    for _ in range(9):
        connect(A4, "127.0.0.1", 7006)
    o = listen(A4, "127.0.0.1", 7100)
    for _ in range(3):
        c = connect(A4, "127.0.0.1", 7100)
        o.accept()[0].close()
        time.sleep(0.05)
        c.close()
    for _ in range(2):
        connect(A4, "127.0.0.1", 7100)
        keep.append(o.accept()[0])


def fastopen_client(fam, host, port, sport):
    c = client(fam, sport)
    c.sendto(b"hello", socket.MSG_FASTOPEN, (host, port))


def fastopen():
    l4 = listen(A4, "127.0.0.1", 7201, fastopen=True)
    l6 = listen(A6, "::", 7203, v6only=False, fastopen=True)
    for fam, host, port, lis in [(A4, "127.0.0.1", 7201, l4), (A6, "::1", 7203, l6),
                                 (A4, "127.0.0.1", 7203, l6)]:
        w = socket.socket(fam, socket.SOCK_STREAM)  # fetches the cookie
        w.sendto(b"x", socket.MSG_FASTOPEN, (host, port))
        lis.settimeout(5)
        lis.accept()[0].close()
        w.close()
    drop_final_acks([7201, 7203], "43000-43099")
    for i in range(2):
        fastopen_client(A4, "127.0.0.1", 7201, 43000 + i)
    for i in range(3):
        half_open(A4, "127.0.0.1", 7201, 43010 + i)
    connect(A4, "127.0.0.1", 7201)
    for i in range(2):
        fastopen_client(A6, "::1", 7203, 43020 + i)
    fastopen_client(A4, "127.0.0.1", 7203, 43030)
    half_open(A4, "127.0.0.1", 7203, 43040)
    listen(A4, "127.0.0.1", 7202)
    for _ in range(2):
        connect(A4, "127.0.0.1", 7202)


def main():
    nft("add table inet f")
    nft("add chain inet f in { type filter hook input priority 0 ; }")
    {"neighbours": neighbours, "fastopen": fastopen}[sys.argv[1]]()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
