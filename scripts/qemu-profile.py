#!/usr/bin/env python3
"""Per-function instruction counts of a firmware run under QEMU, from QEMU's own log.

    qemu-system-arm ... -d exec,nochain,in_asm -D LOG -kernel ELF
    python3 scripts/qemu-profile.py ELF LOG [--split SYMBOL] [--top N] [--bytes N]

`-d in_asm` logs every translation block (TB) once, with the address of each of its
instructions; `-d exec,nochain` logs every execution of a TB (`nochain`: also those that chaining
would otherwise run without returning to the loop that logs). Each instruction of a TB is counted
once per execution of that TB, and attributed to the innermost function it belongs to, inlined
ones included (`llvm-addr2line -i` on the ELF's debug info), and to its symbol. Under -icount a
TB that reaches an I/O access before its end is rewound (QEMU logs `cpu_io_recompile: rewound
execution of TB to PC`) and that access is run in a TB of its own: the rewound execution counts
only the instructions before PC. A TB an interrupt cuts short is still counted whole, so the
counts are a profile (where the instructions go), within a few per cent of the meter (`exec cost`
is the measurement).

--split SYMBOL starts a new segment at every execution of the function whose demangled name ends
with SYMBOL (e.g. `cost::command::cost`: every `exec cost` and `exec cost reset`), so one run of
several cases gives one profile per case. --bytes divides by a payload size.
scripts/firmware.sh profile runs it; docs/BENCHMARKS.md, "What a byte costs on the device".
"""

import argparse
import bisect
import collections
import re
import subprocess
import sys

TRACE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/[0-9a-f]+/([0-9a-f]+)\]")
INSN = re.compile(r"^0x([0-9a-f]+):")
REWIND = re.compile(r"^cpu_io_recompile: rewound execution of TB to ([0-9a-f]+)")


def symbols(elf):
    """Sorted (start, end, demangled name) of the ELF's functions."""
    out = subprocess.run(["readelf", "-sW", elf], check=True, capture_output=True, text=True).stdout
    raw = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[3] == "FUNC" and int(f[2], 0 if f[2].startswith("0x") else 10) > 0:
            raw.append((int(f[1], 16) & ~1, int(f[2], 0 if f[2].startswith("0x") else 10), f[7]))
    names = demangle([r[2] for r in raw])
    return sorted((a, a + n, name) for (a, n, _), name in zip(raw, names))


def demangle(names):
    out = subprocess.run(["llvm-cxxfilt-22"], input="\n".join(names), check=True, capture_output=True, text=True)
    return [short(n) for n in out.stdout.splitlines()]


def short(name):
    """A demangled Rust name without crate hashes and turbofish generic arguments."""
    name = re.sub(r"\[[0-9a-f]{16}\]", "", name)
    prev = None
    while prev != name:
        prev = name
        name = re.sub(r"::<[^<>]*>", "", name)
    return name


def inlined(elf, addrs):
    """The inlining chain of each address, innermost function first (llvm-addr2line -i)."""
    if not addrs:
        return {}
    # With -a each address's frames (function, file:line pairs, innermost first) follow a line
    # holding the address itself.
    p = subprocess.run(
        ["llvm-addr2line-22", "-a", "-f", "-i", "-C", "-e", elf],
        input="".join("0x%x\n" % a for a in addrs),
        check=True, capture_output=True, text=True,
    )
    result = {}
    current = None
    odd = False
    for line in p.stdout.splitlines():
        if line.startswith("0x") and not odd:
            current = int(line, 16)
            result[current] = []
        elif current is not None:
            # Function and file:line lines alternate.
            if not odd:
                result[current].append(short(line))
            odd = not odd
    return result


# Categories for --categories: the first pattern found in an instruction's inlining chain (walked
# from the innermost function out) names its category; the symbol is tried last.
CATEGORIES = [
    ("SHA-256", re.compile(r"\bsha2::")),
    ("CRC-32", re.compile(r"\bcrc::|crc32")),
    ("AEAD (ChaCha20-Poly1305)", re.compile(r"chacha20|poly1305|\bcipher::|\binout::|\baead::|universal_hash")),
    ("X25519, HKDF (handshake)", re.compile(r"curve25519|x25519|\bsubtle::|\bhkdf::|\bhmac::|secure::handshake|secure::symmetric")),
    ("copies (memcpy, memmove, memset)", re.compile(r"memcpy|memmove|memset|memclr|copy_forward|copy_backward|set_bytes|compiler_builtins::mem")),
    ("TCP/IP checksum", re.compile(r"smoltcp::wire::ip::checksum")),
    ("TCP/IP (smoltcp, other)", re.compile(r"\bsmoltcp::")),
    ("NIC driver (LAN9118 FIFOs)", re.compile(r"lan9118")),
    ("UART driver and handlers", re.compile(r"tether_fw::uart|serial_probe::uart|DefaultHandler|uart::Uart")),
    ("serial framing (COBS)", re.compile(r"tether_core::serial")),
    ("session, services (tether-core)", re.compile(r"\btether_core::")),
    ("main loop, meter, runtime", re.compile(r"tether_fw|serial_probe|cortex_m|compiler_builtins|Reset")),
]


def category(chain, symbol):
    for frame in list(chain) + [symbol]:
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def parse(log, split_pcs):
    """Segments: a list of Counter((pc, cflags, cutoff) -> executions), where cutoff is the pc
    a rewind stopped that execution at (None: the whole TB ran); and TB instruction lists."""
    tbs = {}
    pending = None
    last = None
    segments = [collections.Counter()]
    with open(log, errors="replace") as f:
        block = None
        for line in f:
            if line.startswith("IN:"):
                block = []
                continue
            if block is not None:
                m = INSN.match(line)
                if m:
                    block.append(int(m.group(1), 16))
                    continue
                if block:
                    pending = block
                block = None
            m = REWIND.match(line)
            if m and last is not None:
                segments[-1][last] -= 1
                segments[-1][last[:2] + (int(m.group(1), 16),)] += 1
                last = None
                continue
            m = TRACE.match(line)
            if not m:
                continue
            pc, cflags = int(m.group(1), 16), int(m.group(2), 16)
            if pending is not None and pending[0] == pc:
                tbs[(pc, cflags)] = pending
                pending = None
            if pc in split_pcs:
                segments.append(collections.Counter())
            last = (pc, cflags, None)
            segments[-1][last] += 1
    return segments, tbs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("elf")
    ap.add_argument("log")
    ap.add_argument("--split", default="")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--min-share", type=float, default=0.02, help="print segments holding at least this share")
    ap.add_argument("--categories", action="store_true", help="also sum by category (SHA-256, CRC-32, copies, ...)")
    ap.add_argument("--callers", default="", help="for functions whose name contains this, the inlining chains they were counted in")
    args = ap.parse_args()

    syms = symbols(args.elf)
    starts = [s[0] for s in syms]

    def symbol_of(a):
        i = bisect.bisect_right(starts, a) - 1
        return syms[i][2] if i >= 0 and a < syms[i][1] else "?"

    split_pcs = {s[0] for s in syms if args.split and s[2].endswith(args.split)}
    segments, tbs = parse(args.log, split_pcs)
    addrs = sorted({a for insns in tbs.values() for a in insns})
    inner = inlined(args.elf, addrs)
    def executed(key):
        insns = tbs.get(key[:2])
        if insns is None or key[2] is None:
            return insns
        return [a for a in insns if a < key[2]]

    total_all = sum(sum(len(executed(k) or ()) * n for k, n in seg.items()) for seg in segments)
    for index, seg in enumerate(segments):
        by_insn = collections.Counter()
        unknown = 0
        for key, n in seg.items():
            insns = executed(key)
            if insns is None:
                unknown += n
                continue
            for a in insns:
                by_insn[a] += n
        total = sum(by_insn.values())
        if total < args.min_share * total_all:
            continue
        by_inner = collections.Counter()
        by_symbol = collections.Counter()
        by_chain = collections.Counter()
        by_category = collections.Counter()
        for a, n in by_insn.items():
            chain = inner.get(a) or ["?"]
            by_inner[chain[0]] += n
            if args.categories:
                by_category[category(chain, symbol_of(a))] += n
            if args.callers and args.callers in chain[0]:
                by_chain[" < ".join(c.split("::")[-1][:40] for c in chain[:6])] += n
            by_symbol[symbol_of(a)] += n
        per = " = %.2f per byte" % (total / args.bytes) if args.bytes else ""
        print("segment %d: %d instructions%s (%d TB executions not translated in the log)" % (index, total, per, unknown))
        if args.categories:
            print("  by category:")
            for name, n in by_category.most_common():
                extra = "  %7.2f/B" % (n / args.bytes) if args.bytes else ""
                print("    %5.1f %%  %10d%s  %s" % (100 * n / total, n, extra, name))
        print("  by innermost function (inlined ones apart):")
        for name, n in by_inner.most_common(args.top):
            extra = "  %6.2f/B" % (n / args.bytes) if args.bytes else ""
            print("    %5.1f %%  %10d%s  %s" % (100 * n / total, n, extra, name[:150]))
        if args.callers:
            print("  where %s was inlined:" % args.callers)
            for chain, n in by_chain.most_common(8):
                print("    %10d  %s" % (n, chain))
        print("  by symbol (what LTO left as functions):")
        for name, n in by_symbol.most_common(min(args.top, 12)):
            print("    %5.1f %%  %10d  %s" % (100 * n / total, n, name[:150]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
