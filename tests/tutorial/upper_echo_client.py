"""The upper-case echo client of the tutorials (C/S architecture, the multi-client server).

    phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    phone.connect(('127.0.0.1', 8080))
    while True:
        msg = input('>>: ').strip()
        if not msg: continue
        phone.send(msg.encode('utf-8'))
        data = phone.recv(1024)
        print(data.decode('utf-8'))
    phone.close()

Cases: that loop; back-to-back sends read as one stream (sticky packets); 1 MiB streamed
through while reading; immediate reconnects; several clients at once, each getting exactly its
own bytes back.

usage: upper_echo_client.py HOST PORT [--clients N] [--reconnects N] [--stream BYTES]
"""
import socket
import threading
import time

from common import TIMEOUT, check, finish, option, target

HOST, PORT = target()
CLIENTS = int(option("clients", "4"))
RECONNECTS = int(option("reconnects", "30"))
STREAM = int(option("stream", str(1 << 20)))


def connect():
    phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    phone.settimeout(TIMEOUT)
    phone.connect((HOST, PORT))
    return phone


def recv_exactly(phone, n):
    """What the tutorial's recv(1024) loop turns into once replies may come in pieces."""
    data = b""
    while len(data) < n:
        chunk = phone.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def tutorial_loop():
    phone = connect()
    for msg in ["hello", "socket tutorial", "mixed Case 123 ok?"]:
        phone.send(msg.encode("utf-8"))
        data = recv_exactly(phone, len(msg))
        print(data.decode("utf-8"))
        check("echo %r" % msg, data == msg.upper().encode(), repr(data))
    phone.close()


def back_to_back():
    phone = connect()
    parts = [b"first;", b"second;", b"third;"] * 20
    for p in parts:
        phone.send(p)
    want = b"".join(parts).upper()
    data = recv_exactly(phone, len(want))
    check("back-to-back sends come back as one stream", data == want, "%d of %d bytes" % (len(data), len(want)))
    phone.close()


def stream():
    phone = connect()
    phone.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = bytes(97 + (i * 7 + 3) % 26 for i in range(STREAM))
    sender = threading.Thread(target=phone.sendall, args=(payload,))
    sender.start()
    data = recv_exactly(phone, len(payload))
    sender.join()
    check("%d bytes streamed through" % STREAM, data == payload.upper(), "%d bytes back" % len(data))
    phone.close()


def reconnects():
    bad = []
    for i in range(RECONNECTS):
        try:
            phone = connect()
            msg = ("reconnect %d" % i).encode()
            phone.send(msg)
            data = recv_exactly(phone, len(msg))
            phone.close()
            if data != msg.upper():
                bad.append("%d: %r" % (i, data))
        except OSError as e:
            bad.append("%d: %s" % (i, e))
    check("%d immediate reconnects" % RECONNECTS, not bad, "; ".join(bad[:3]))


def several_at_once():
    results = [None] * CLIENTS
    # Concurrency, not reconnects (tested above): let the previous connections finish closing,
    # so that a pool with no more sockets than CLIENTS has them all listening.
    time.sleep(0.3)
    phones = [connect() for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS)

    def client(i):
        phone = phones[i]
        try:
            barrier.wait()
            ok = True
            for round_ in range(20):
                msg = ("client %d round %d %s;" % (i, round_, "x" * (i * 37 % 200))).encode()
                phone.send(msg)
                ok &= recv_exactly(phone, len(msg)) == msg.upper()
            results[i] = ok
        except OSError as e:
            results[i] = e
        finally:
            phone.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check("%d clients at once, each its own bytes" % CLIENTS, all(r is True for r in results), repr(results))


tutorial_loop()
back_to_back()
stream()
reconnects()
several_at_once()
finish()
