#!/usr/bin/env python3
"""The ceiling the PC side can see: a plain kernel-TCP copy over 127.0.0.1 with large buffers.

Prints one JSON line: {"bytes": N, "seconds": S, "bytes_per_s": R}.
"""
import json
import socket
import sys
import threading
import time

size = int(sys.argv[1]) if len(sys.argv) > 1 else 256 << 20
block = bytes(1 << 20)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
got = [0]


def sink():
    conn, _ = srv.accept()
    buf = bytearray(1 << 20)
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        got[0] += n
    conn.close()


t = threading.Thread(target=sink)
t.start()
c = socket.create_connection(("127.0.0.1", port))
start = time.perf_counter()
sent = 0
while sent < size:
    c.sendall(block)
    sent += len(block)
c.shutdown(socket.SHUT_WR)
t.join(600)
seconds = time.perf_counter() - start
c.close()
print(json.dumps({"bytes": got[0], "seconds": seconds, "bytes_per_s": got[0] / seconds}))
