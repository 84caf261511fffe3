#!/usr/bin/env python3
"""The baseline people start from: a file upload written like the classic socket tutorials.

Client: a 4-byte native `struct.pack('i')` header length, a JSON header dict (command, file name,
size, md5), then the body in 1 KiB `send`s. Server: reads the length, the header, then loops on
`recv(1024)` writing the file. Over 127.0.0.1, in one process with a server thread.
Prints one JSON line: {"bytes": N, "seconds": S, "bytes_per_s": R}.
"""
import hashlib
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time

size = int(sys.argv[1]) if len(sys.argv) > 1 else 64 << 20
data = os.urandom(size)
out_dir = tempfile.mkdtemp(prefix="tutorial-")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
done = threading.Event()


def server():
    conn, _ = srv.accept()
    header_len = struct.unpack("i", conn.recv(4))[0]
    header = json.loads(conn.recv(header_len).decode())
    remaining = header["filesize"]
    with open(os.path.join(out_dir, header["filename"]), "wb") as f:
        while remaining > 0:
            chunk = conn.recv(1024)
            if not chunk:
                break
            f.write(chunk)
            remaining -= len(chunk)
    conn.close()
    done.set()


threading.Thread(target=server, daemon=True).start()
client = socket.socket()
client.connect(("127.0.0.1", port))
start = time.perf_counter()
header = json.dumps({"cmd": "put", "filename": "upload.bin", "filesize": size,
                     "md5": hashlib.md5(data).hexdigest()}).encode()
client.send(struct.pack("i", len(header)))
client.send(header)
view = memoryview(data)
for i in range(0, size, 1024):
    client.send(view[i:i + 1024])
done.wait(600)
seconds = time.perf_counter() - start
client.close()
ok = os.path.getsize(os.path.join(out_dir, "upload.bin")) == size
os.remove(os.path.join(out_dir, "upload.bin"))
os.rmdir(out_dir)
print(json.dumps({"bytes": size, "seconds": seconds, "bytes_per_s": size / seconds, "complete": ok}))
