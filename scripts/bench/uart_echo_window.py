#!/usr/bin/env python3
"""A raw byte echo through the QEMU board's UART0, optionally paced like host-cli's put window.

    uart_echo_window.py PORT BYTES [FRAME WINDOW]

PORT is the pty of UART0 (`/dev/pts/N`) or `tcp:P` for QEMU's `-serial tcp:127.0.0.1:P,server=on`.
The board must be in echo mode (`host-cli --to 127.0.0.1:TCP exec uart echo`). Without FRAME and
WINDOW the sender streams, as `scripts/firmware.sh bench`'s echo client does; with them it keeps
at most WINDOW frames of FRAME bytes unechoed (an echoed frame stands for an acknowledged chunk:
FRAME 1527, WINDOW 4 is put's window of 1.5 KiB frames). Checks the echo bit for bit; prints the
seconds from the first byte sent to the last received and KiB/s. Bounded: 20 s of silence ends it.
Used for the put-versus-echo notes in docs/BENCHMARKS.md ("Firmware transfers over the UART").
"""
import os
import select
import socket
import sys
import termios
import time
import tty

path, n = sys.argv[1], int(sys.argv[2])
frame, window = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (4096, 0)
if path.startswith("tcp:"):
    sock = socket.create_connection(("127.0.0.1", int(path[4:])), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    fd = sock.fileno()
else:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)
data = os.urandom(n)
sent, got = 0, bytearray()
t0 = time.perf_counter()
while len(got) < n:
    # Streaming: send whenever the port takes more. Windowed: only while fewer than WINDOW whole
    # frames are unechoed.
    limit = n if window == 0 else min(n, (len(got) // frame + window) * frame)
    want_write = sent < limit
    r, w, _ = select.select([fd], [fd] if want_write else [], [], 20)
    if not r and not w:
        sys.exit("echo: silence after %d of %d bytes" % (len(got), n))
    if w:
        try:
            sent += os.write(fd, data[sent:min(limit, sent + frame)])
        except BlockingIOError:
            pass
    if r:
        got += os.read(fd, 65536)
dt = time.perf_counter() - t0
if bytes(got) != data:
    sys.exit("echo differs (%d bytes back)" % len(got))
print("%.3f s  %.2f KiB/s" % (dt, n / dt / 1024))
