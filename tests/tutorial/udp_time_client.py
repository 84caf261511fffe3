"""The UDP time client of the tutorials.

    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while True:
        msg = input('format>>: ').strip()
        client.sendto(msg.encode('utf-8'), ('127.0.0.1', 9000))
        data, server_addr = client.recvfrom(1024)
        print(data.decode('utf-8'))

Cases: the default format (empty datagram), %Y (the year the caller expects, --year), and an
unsupported specifier answered with a line starting `error:`.

usage: udp_time_client.py HOST PORT [--year YYYY]
"""
import re
import socket

from common import check, finish, option, target

HOST, PORT = target()
YEAR = option("year", None)

client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(2)


def ask(msg):
    # UDP may lose a datagram: ask again a few times, as a patient user would.
    for _ in range(5):
        client.sendto(msg.encode("utf-8"), (HOST, PORT))
        try:
            data, server_addr = client.recvfrom(1024)
        except socket.timeout:
            continue
        print(data.decode("utf-8"))
        return data.decode("utf-8"), server_addr
    return None, None


out, addr = ask("")
check("default format", out is not None and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out), repr(out))
check("answer from the port asked", addr is not None and addr[1] == PORT, repr(addr))
out, _ = ask("%Y")
if YEAR:
    check("year is %s" % YEAR, out == YEAR, repr(out))
else:
    check("a year", out is not None and re.fullmatch(r"\d{4}", out), repr(out))
out, _ = ask("%Q")
check("unsupported specifier", out is not None and out.startswith("error:"), repr(out))
finish()
