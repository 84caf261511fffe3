#!/usr/bin/env python3
"""The table of `scripts/firmware.sh cost` and `scripts/serial-probe.sh cost`: what a byte costs.

    python3 scripts/cost-report.py BOARD INSTRUCTIONS_PER_TICK < RAW

RAW has one line per measurement, as the scripts write them:

    VARIANT floor bytes=B rounds=R sha256_ticks=.. crc32_ticks=.. memcpy_ticks=..
          memcpy_unaligned_ticks=.. [aead_seal_ticks=.. aead_open_ticks=..]
    VARIANT RUN TRANSPORT CASE UNITS work_ticks work_passes housekeeping_ticks housekeeping_passes idle_ticks [RUNS]

VARIANT is `open` or `sealed`, CASE one of `empty` (RUNS brackets of reset, then read, summed:
the measurement's own cost),
`ping1` (RUNS runs of `host-cli ping -c 1`, a connection and one echo each), `pings` (one
`host-cli ping -c UNITS`), `hellos` (one `host-cli ping --hello -c UNITS`), `put`, `get` (UNITS
bytes, over RUNS connections: 1 if absent).
Ticks are the board's counter; under QEMU `-icount shift=0` one tick is INSTRUCTIONS_PER_TICK
instructions. Work ticks only: the passes of the main loop that moved a frame or a byte (the board's `cost` command).

Derived, per run (many connections and echoes per bracket: how many frames one pass of the
main loop finds waiting follows the host's timing, and averaging over many is what makes two runs
agree):
  empty       = empty / RUNS                  (one bracket's own cost)
  each        = (ping1 - empty) / RUNS        (a connection with one echo)
  echo        = (pings - empty - each) / (UNITS - 1)
  hello       = (hellos - empty - connection) / UNITS
  connection  = each - echo                   (connect or open the line, hello or handshake, end)
  put, get    = (case - empty - RUNS x connection) / bytes
  handshake   = sealed connection - open connection + open hello (host-cli says hello on an
                open device's first connection, and on a keyed one proves the key instead: the
                handshake is its first exchange); over TCP less a sealed echo as well (host-cli's
                first sealed request there is an empty echo, which makes the session one no new
                peer can take: PROTOCOL.md section 13 rule 5). Without `hellos`, the handshake
                less a hello.
Against the floor measured on the board over the transfers' chunk size:
  put floor   = SHA-256 + CRC-32 + 2 copies   (target: put <= 1.3 x)
  get floor   = CRC-32 + 2 copies             (target: get <= 1.5 x)
  sealing     = (sealed - open) per byte / the AEAD's own per byte (target <= 1.2 x): a put
                opens what it receives, a get seals what it sends; sealed put and get are also
                shown against their floor plus the AEAD.
"""

import statistics
import sys
from collections import defaultdict

TARGETS = {"put": 1.3, "get": 1.5, "sealing": 1.2}


def parse(lines):
    floors, cases = {}, defaultdict(dict)
    for line in lines:
        f = line.split()
        if len(f) < 2:
            continue
        if f[1] == "floor":
            kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
            floors[f[0]] = {k: int(v) for k, v in kv.items()}
            continue
        variant, run, tr, case, units = f[0], int(f[1]), f[2], f[3], int(f[4])
        runs = int(f[10]) if len(f) > 10 else 1
        cases[(variant, tr, case)][run] = (units, int(f[5]), runs, int(f[6]))
    return floors, cases


def main():
    board, per_tick = sys.argv[1], float(sys.argv[2])
    floors, cases = parse(sys.stdin)
    runs = sorted({r for v in cases.values() for r in v})
    if not runs:
        sys.exit("cost-report: no measurements")

    def insns(variant, tr, case, run):
        return cases[(variant, tr, case)][run][1] * per_tick

    derived = defaultdict(dict)  # (variant, tr, name) -> run -> value
    for variant, tr in sorted({(v, t) for v, t, _ in cases}):
        for run in runs:
            try:
                empty = insns(variant, tr, "empty", run) / cases[(variant, tr, "empty")][run][2]
                each = (insns(variant, tr, "ping1", run) - empty) / cases[(variant, tr, "ping1")][run][2]
                pings = cases[(variant, tr, "pings")][run][0]
                echo = (insns(variant, tr, "pings", run) - empty - each) / (pings - 1)
                conn = each - echo
            except KeyError:
                continue
            derived[(variant, tr, "empty")][run] = empty
            derived[(variant, tr, "echo")][run] = echo
            # Passes of the main loop per echo: each costs ~1.4 k instructions whatever it moves,
            # and how many echoes one pass finds waiting follows the host's timing.
            derived[(variant, tr, "echo_passes")][run] = cases[(variant, tr, "pings")][run][3] / pings
            derived[(variant, tr, "connection")][run] = conn
            if run in cases.get((variant, tr, "hellos"), {}):
                hellos = cases[(variant, tr, "hellos")][run][0]
                derived[(variant, tr, "hello")][run] = (insns(variant, tr, "hellos", run) - empty - conn) / hellos
                derived[(variant, tr, "hello_passes")][run] = cases[(variant, tr, "hellos")][run][3] / hellos
            for case in ("put", "get"):
                if run in cases.get((variant, tr, case), {}):
                    units, _, count, _ = cases[(variant, tr, case)][run]
                    derived[(variant, tr, case)][run] = (insns(variant, tr, case, run) - empty - count * conn) / units
                    derived[(variant, tr, case + "_bytes")][run] = units
            if variant == "sealed" and run in derived.get(("open", tr, "connection"), {}):
                proof = echo if tr == "tcp" else 0
                hello = derived.get(("open", tr, "hello"), {}).get(run)
                if hello is None:
                    key = "handshake_less_hello"
                    hello = 0
                else:
                    key = "handshake"
                derived[(variant, tr, key)][run] = conn - proof - derived[("open", tr, "connection")][run] + hello

    def value(key):
        vals = derived.get(key, {})
        return statistics.median(vals.values()) if vals else None

    def spread(key):
        vals = list(derived.get(key, {}).values())
        if len(vals) < 2 or not min(vals):
            return ""
        return "%.2f %%" % (100 * (max(vals) - min(vals)) / min(vals))

    print()
    print("What a byte costs: %s, in instructions (QEMU -icount shift=0; 1 tick = %g instructions)" % (board, per_tick))
    print("busy time of the main loop's passes that moved a frame or a UART byte; %d run(s)" % len(runs))

    floor_per_byte = {}
    for variant, fl in sorted(floors.items()):
        n = fl["bytes"] * fl["rounds"]
        pb = {k[:-6]: fl[k] * per_tick / n for k in fl if k.endswith("_ticks")}
        floor_per_byte[variant] = pb
        text = ", ".join("%s %.2f/B" % (k, v) for k, v in pb.items())
        print("floor (%s build, chunks of %d B): %s" % (variant, fl["bytes"], text))
    base = floor_per_byte.get("open") or next(iter(floor_per_byte.values()), None)
    put_floor = get_floor = None
    if base:
        put_floor = base["sha256"] + base["crc32"] + 2 * base["memcpy"]
        get_floor = base["crc32"] + 2 * base["memcpy"]
        print("put floor = SHA-256 + CRC-32 + 2 copies = %.2f/B; get floor = CRC-32 + 2 copies = %.2f/B" % (put_floor, get_floor))

    print()
    header = "%-7s %-5s %-44s" % ("session", "link", "case") + "".join("%13s" % ("run %d" % r) for r in runs) + "%10s   %s" % ("spread", "against the floor / target")
    print(header)
    print("-" * len(header))
    names = [
        ("empty", "measurement's own cost (reset, read)", "%.0f"),
        ("connection", "connection: open, %s, end", "%.0f"),
        ("handshake", "handshake (sealed - open conn. + hello)", "%.0f"),
        ("handshake_less_hello", "handshake - hello (sealed - open conn.)", "%.0f"),
        ("echo", "echo request (empty), each", "%.0f"),
        ("hello", "hello request, each", "%.0f"),
        ("put", "put %s, per byte", "%.2f"),
        ("get", "get %s, per byte", "%.2f"),
    ]
    notes = []
    for variant in ("open", "sealed"):
        for tr in ("tcp", "uart"):
            for name, label, fmt in names:
                key = (variant, tr, name)
                if key not in derived:
                    continue
                if "%s" in label:
                    if name in ("put", "get"):
                        size = value((variant, tr, name + "_bytes"))
                        label = label % ("%d KiB" % (size / 1024) if size < 1 << 20 else "%d MiB" % (size / (1 << 20)))
                    else:
                        label = label % ("handshake" if variant == "sealed" else "hello")
                row = "%-7s %-5s %-44s" % (variant, tr, label)
                row += "".join("%13s" % (fmt % derived[key][r]) if r in derived[key] else "%13s" % "-" for r in runs)
                row += "%10s" % spread(key)
                v = value(key)
                verdict = ""
                if name in ("echo", "hello"):
                    per = derived[(variant, tr, name + "_passes")]
                    verdict = "passes per %s: " % name + " ".join("%.2f" % per[r] for r in runs if r in per)
                if name in ("put", "get") and base:
                    fl = put_floor if name == "put" else get_floor
                    what = "floor"
                    sealed_floor = floor_per_byte.get("sealed", {})
                    if variant == "sealed" and "aead_seal" in sealed_floor:
                        fl += sealed_floor["aead_open" if name == "put" else "aead_seal"]
                        what = "(floor + AEAD)"
                    ratio = v / fl
                    verdict = "%.2f x %s (target <= %.1f: %s)" % (ratio, what, TARGETS[name], "met" if ratio <= TARGETS[name] else "MISSED")
                    if variant == "sealed" and (("open", tr, name) in derived) and "aead_seal" in floor_per_byte.get("sealed", {}):
                        aead = floor_per_byte["sealed"]["aead_open" if name == "put" else "aead_seal"]
                        added = v - value(("open", tr, name))
                        r2 = added / aead
                        notes.append("%-7s %-5s %s: sealing adds %.2f/B = %.2f x the AEAD's own %s (%.2f/B) (target <= %.1f: %s)" % (
                            variant, tr, name, added, r2, "open" if name == "put" else "seal", aead, TARGETS["sealing"],
                            "met" if r2 <= TARGETS["sealing"] else "MISSED"))
                print(row + "   " + verdict)
    if notes:
        print()
        for n in notes:
            print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
