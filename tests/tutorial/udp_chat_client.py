"""The UDP chat client of the tutorials.

    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while True:
        msg = input('>>: ').strip()
        if not msg: continue
        client.sendto(msg.encode('utf-8'), ('127.0.0.1', 9001))
        data, server_addr = client.recvfrom(1024)
        print(data.decode('utf-8'))

Cases: a few lines, each answered with text (the device's automatic reply unless --expect says
otherwise); a reply is never larger than max(request, 64) bytes.

usage: udp_chat_client.py HOST PORT [--expect SUBSTRING] [--long N]
(--long: the size of the long line, 300 by default; a datagram larger than the device's receive
buffer is dropped, as UDP does, so a small board gets a smaller one)
"""
import socket

from common import check, finish, option, target

HOST, PORT = target()
EXPECT = option("expect", "got ")
LONG = int(option("long", "300"))

client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(2)

for msg in ["hi", "hello from the chat client", "x" * LONG]:
    data = None
    for _ in range(5):
        client.sendto(msg.encode("utf-8"), (HOST, PORT))
        try:
            data, server_addr = client.recvfrom(1024)
            break
        except socket.timeout:
            continue
    text = data.decode("utf-8") if data is not None else None
    print(text)
    check("reply to %d bytes" % len(msg), text is not None and EXPECT in text, repr(text))
    check("reply to %d bytes is at most max(request, 64)" % len(msg), data is not None and len(data) <= max(len(msg), 64), repr(data))
finish()
