"""The remote-command client of the tutorials, final version: a 4-byte length of a JSON header,
the header (file_name, md5, total_size), then the output.

    phone.send(cmd.encode('utf-8'))
    obj = phone.recv(4)
    header_size = struct.unpack('i', obj)[0]
    header_bytes = phone.recv(header_size)
    header_json = header_bytes.decode('utf-8')
    header_dic = json.loads(header_json)
    total_size = header_dic['total_size']
    recv_size = 0
    recv_data = b''
    while recv_size < total_size:
        res = phone.recv(1024)
        recv_data += res
        recv_size += len(res)
    print(recv_data.decode('utf-8'))

Cases: that loop, checking the MD5 of every output; an unknown command; a long output; several
lines in one segment.

usage: command_json_client.py HOST PORT [--long N]   (--long 0: no `count` command on the device)
"""
import hashlib
import json
import socket
import struct

from common import TIMEOUT, check, finish, option, target

HOST, PORT = target()
LONG = int(option("long", "1000"))


def recv_exactly(phone, n):
    data = b""
    while len(data) < n:
        res = phone.recv(min(1024, n - len(data)))
        if not res:
            raise EOFError("closed after %d of %d bytes" % (len(data), n))
        data += res
    return data


def recv_reply(phone):
    obj = recv_exactly(phone, 4)
    header_size = struct.unpack("i", obj)[0]
    header_bytes = recv_exactly(phone, header_size)
    header_json = header_bytes.decode("utf-8")
    header_dic = json.loads(header_json)
    total_size = header_dic["total_size"]
    recv_data = recv_exactly(phone, total_size)
    return header_dic, recv_data


def run(phone, cmd):
    phone.send(cmd.encode("utf-8"))
    header, data = recv_reply(phone)
    print(header)
    print(data.decode("utf-8"), end="")
    md5_ok = hashlib.md5(data).hexdigest() == header["md5"]
    check("md5 of %r" % cmd, md5_ok, "%s vs %s" % (header["md5"], hashlib.md5(data).hexdigest()))
    check("header keys of %r" % cmd, set(header) >= {"file_name", "md5", "total_size"}, repr(header))
    return header, data.decode("utf-8")


phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
phone.settimeout(TIMEOUT)
phone.connect((HOST, PORT))

header, out = run(phone, "uptime")
check("uptime", out.startswith("up ") and header["file_name"] == "uptime", repr((header, out)))
header, out = run(phone, "help")
check("help", "uptime" in out and header["file_name"] == "help", repr(out))
header, out = run(phone, "no-such-command")
check("unknown command", out == "error: unknown command; try `help`\n" and header["file_name"] == "error", repr((header, out)))
if LONG:  # --long 0 on a device without `count` (the board)
    header, out = run(phone, "count %d" % LONG)
    check("long output (count %d)" % LONG, out == "".join("%d\n" % i for i in range(1, LONG + 1)) and header["total_size"] == len(out), "%d bytes" % len(out))

phone.send(b"led on\nuptime\n")
replies = [recv_reply(phone) for _ in range(2)]
check("two lines in one segment", replies[0][1] == b"led on\n" and replies[1][1].startswith(b"up "), repr(replies))
check("md5 of pipelined replies", all(hashlib.md5(d).hexdigest() == h["md5"] for h, d in replies))

phone.close()
finish()
