#!/usr/bin/env python3
"""The other end of the emulated board's Ethernet cable, for its mDNS check; stdlib only.

  qemu_mdns.py PORT BOARD_IP SECONDS

QEMU runs the board with `-nic socket,model=lan9118,listen=127.0.0.1:PORT`: a TCP stream on which
every Ethernet frame is a 4-byte big-endian length and the frame. This script connects there (so
no traffic leaves 127.0.0.1), collects the frames the board sends for up to SECONDS, and checks,
printing one line each and exiting non-zero on the first failure:

  1. two unsolicited mDNS announcements from BOARD_IP:5353 to 224.0.0.251:5353 (RFC 6762 §8.3),
     a second apart, naming _tether._tcp and _tether._udp with the TXT keys;
  2. a PTR query for _tether._udp.local sent to the group is answered with the instance.

Frames are built by hand (Ethernet, IPv4 with its header checksum, UDP without a checksum, DNS per
RFC 1035), as a peer in another language would.
"""
import socket
import struct
import sys
import time

GROUP = bytes([224, 0, 0, 251])
GROUP_MAC = bytes([0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB])
PEER_MAC = bytes([0x02, 0x00, 0x00, 0x00, 0x00, 0x99])
PEER_IP = bytes([10, 0, 2, 99])


def ipv4_checksum(header):
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(payload, src_port, dst_port):
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 255, 17, 0, PEER_IP, GROUP)
    ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
    return GROUP_MAC + PEER_MAC + b"\x08\x00" + ip + udp


def query(name, qtype=12):
    q = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", qtype, 1)


class Cable:
    def __init__(self, port):
        # QEMU listens a moment after it starts: try for up to 10 s.
        for _ in range(100):
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("QEMU never listened on 127.0.0.1:%d" % port)
        self.buf = b""

    def send(self, eth):
        self.sock.sendall(struct.pack("!I", len(eth)) + eth)

    def frames(self, until):
        """Yields (time, frame) until the monotonic time `until`."""
        while time.monotonic() < until:
            self.sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            if not data:
                sys.exit("QEMU closed the cable")
            self.buf += data
            while len(self.buf) >= 4:
                (n,) = struct.unpack("!I", self.buf[:4])
                if len(self.buf) < 4 + n:
                    break
                eth, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                yield time.monotonic(), eth


def mdns_from(eth, board_ip):
    """The DNS message of an mDNS datagram from the board, else None."""
    if len(eth) < 42 or eth[12:14] != b"\x08\x00" or eth[23] != 17:
        return None
    ihl = (eth[14] & 0x0F) * 4
    src, dst = eth[26:30], eth[30:34]
    udp = eth[14 + ihl:]
    sport, dport = struct.unpack("!HH", udp[:4])
    if src != board_ip or sport != 5353:
        return None
    return dst, dport, udp[8:]


def main():
    port, board_ip, seconds = int(sys.argv[1]), socket.inet_aton(sys.argv[2]), float(sys.argv[3])
    cable = Cable(port)
    deadline = time.monotonic() + seconds
    announcements = []
    for t, eth in cable.frames(deadline):
        got = mdns_from(eth, board_ip)
        if got and got[0] == GROUP and got[1] == 5353 and got[2][2] & 0x80:
            announcements.append((t, got[2]))
            if len(announcements) == 2:
                break
    if len(announcements) < 2:
        sys.exit("announcements: %d of 2 within %.0f s" % (len(announcements), seconds))
    gap = announcements[1][0] - announcements[0][0]
    for _, m in announcements:
        for part in (b"\x07_tether", b"\x04_tcp", b"\x04_udp", b"board=mps2-an386", b"name=mps2-an386", b"key=0", b"id="):
            if part not in m:
                sys.exit("announcement without %r" % part)
        if board_ip not in m:
            sys.exit("announcement without the board's address")
    if not 0.8 <= gap <= 3.0:
        sys.exit("announcements %.2f s apart, not about 1 s" % gap)
    print("announcements: 2, %.2f s apart, _tether._tcp and _tether._udp with name, id, board, key" % gap)

    cable.send(frame(query("_tether._udp.local"), 5353, 5353))
    for _, eth in cable.frames(time.monotonic() + 5):
        got = mdns_from(eth, board_ip)
        if got and got[2][2] & 0x80 and b"\x11mps2-an386-" in got[2] and b"\x04_udp" in got[2]:
            print("query: _tether._udp.local answered with the instance")
            return
    sys.exit("query: no answer within 5 s")


if __name__ == "__main__":
    main()
