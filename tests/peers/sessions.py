#!/usr/bin/env python3
"""Hostile and careless TCP peers for the session-rule tests, stdlib only.

  sessions.py HOST PORT hold N FILE
                                   open N connections, each sends one Echo and reads its answer,
                                   then creates FILE and stays silent; prints "evicted K" once
                                   K >= 1 of them was reset or closed by the device (or after 30 s)
  sessions.py HOST PORT reconnect N
                                   N times: connect, one Echo, close, at once connect again;
                                   prints "reconnected N" (a refusal raises and exits non-zero)

Frames are built by hand from docs/PROTOCOL.md §2 (little-endian header, CRC-32 of the payload
and of header bytes 0..20), as a client in another language would.
"""
import socket
import struct
import sys
import time
import zlib

ECHO = 0x02


def frame(kind, request_id, body=b""):
    head = struct.pack("<2sBBBBHII", b"\xe7\x54", 1, kind, 0, 0, 0, request_id, len(body))
    head += struct.pack("<I", zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head)) + body


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the device closed the connection")
        data += chunk
    return data


def echo(sock, request_id, body):
    sock.sendall(frame(ECHO, request_id, body))
    head = read_exact(sock, 24)
    meta_len, rid, body_len = struct.unpack_from("<HII", head, 6)
    rest = read_exact(sock, meta_len + body_len)
    if rid != request_id or rest[meta_len:] != body:
        raise ValueError(f"unexpected answer {head.hex()} {rest.hex()}")


def hold(host, port, n, ready):
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        echo(s, i + 1, b"holding")
        socks.append(s)
    with open(ready, "w") as f:
        f.write("held\n")
    gone = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not gone:
        for i, s in enumerate(socks):
            s.settimeout(0.1)
            try:
                if s.recv(1) == b"":
                    gone.add(i)
            except socket.timeout:
                pass
            except OSError:
                gone.add(i)
    print(f"evicted {len(gone)}", flush=True)


def reconnect(host, port, n, *_):
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        echo(s, i + 1, b"again")
        s.close()
    print(f"reconnected {n}", flush=True)


def main():
    host, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    {"hold": hold, "reconnect": reconnect}[mode](host, port, n, *sys.argv[5:])


if __name__ == "__main__":
    main()
