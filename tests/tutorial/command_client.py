"""The remote-command client of the tutorials, first version: a 4-byte length, then the output.

    phone.send(cmd.encode('utf-8'))
    header = phone.recv(4)
    total_size = struct.unpack('i', header)[0]
    recv_size = 0
    recv_data = b''
    while recv_size < total_size:
        res = phone.recv(1024)
        recv_data += res
        recv_size += len(res)
    print(recv_data.decode('utf-8'))

Cases: that loop with one send() per command and no newline (the tutorial's way); an unknown
command; a long output; several command lines in one segment and a line split across segments
(sticky packets).

usage: command_client.py HOST PORT [--long N]   (--long 0: no `count` command on the device)
"""
import socket
import struct
import time

from common import TIMEOUT, check, finish, option, target

HOST, PORT = target()
LONG = int(option("long", "1000"))


def recv_reply(phone):
    header = phone.recv(4)
    while len(header) < 4:  # a 4-byte header may still arrive in pieces
        more = phone.recv(4 - len(header))
        if not more:
            raise EOFError("closed in the header")
        header += more
    total_size = struct.unpack("i", header)[0]
    recv_size = 0
    recv_data = b""
    while recv_size < total_size:
        # Never more than this reply: the next one may already be on its way.
        res = phone.recv(min(1024, total_size - recv_size))
        if not res:
            raise EOFError("closed after %d of %d bytes" % (recv_size, total_size))
        recv_data += res
        recv_size += len(res)
    return recv_data.decode("utf-8")


phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
phone.settimeout(TIMEOUT)
phone.connect((HOST, PORT))

for cmd, want in [
    ("uptime", "up "),
    ("help", "uptime"),
    ("led on", "led on"),
    ("no-such-command", "error: unknown command; try `help`"),
]:
    phone.send(cmd.encode("utf-8"))
    out = recv_reply(phone)
    print(out, end="")
    check("command %r" % cmd, want in out, repr(out))

if LONG:  # --long 0 on a device without `count` (the board)
    phone.send(("count %d" % LONG).encode())
    out = recv_reply(phone)
    check("long output (count %d) whole" % LONG, out == "".join("%d\n" % i for i in range(1, LONG + 1)), "%d bytes" % len(out))

# Sticky packets: three lines in one segment, answered one by one, in order.
phone.send(b"led off\nled status\r\nuptime\n")
outs = [recv_reply(phone) for _ in range(3)]
check("three lines in one segment", outs[0] == "led off\n" and outs[1] == "led off\n" and outs[2].startswith("up "), repr(outs))

# One line in two segments, well apart: after the first newline only a newline ends a line.
phone.send(b"led t")
time.sleep(0.5)
phone.send(b"oggle\n")
out = recv_reply(phone)
check("a line split across segments", out == "led on\n", repr(out))

phone.close()
finish()
