"""Shared bits of the tutorial clients: argument parsing and the PASS/FAIL report.

Each client here is a non-interactive version of a client program from the classic Python
socket tutorials: the same calls in the same order (recv(1024) loops, struct.unpack('i', ...),
json.loads), with the typed input replaced by a fixed list and the printout checked. Standard
library only. Every socket has a timeout, so a client never hangs.
"""
import sys

TIMEOUT = 10.0
_failed = []


def target():
    if len(sys.argv) < 3:
        sys.exit("usage: %s HOST PORT [options]" % sys.argv[0])
    return sys.argv[1], int(sys.argv[2])


def option(name, default):
    """--name VALUE after HOST PORT."""
    args = sys.argv[3:]
    if "--" + name in args:
        return args[args.index("--" + name) + 1]
    return default


def check(name, ok, detail=""):
    if ok:
        print("PASS", name)
    else:
        print("FAIL", name, detail)
        _failed.append(name)
    sys.stdout.flush()


def finish():
    if _failed:
        print("failed:", ", ".join(_failed))
        sys.exit(1)
    print("all passed")
