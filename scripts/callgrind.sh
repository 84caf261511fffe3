#!/usr/bin/env bash
# Host instruction counts of the device side of `sim selftest`, with valgrind's callgrind
# (instructions executed, exact and repeatable on any load): per byte of put and get, per echo
# request, per hello, and per secure-session handshake. docs/BENCHMARKS.md, "Host instruction
# counts (callgrind)".
#
#   bash scripts/callgrind.sh [--runs N]     # N rounds (default 2), each figure's spread printed
#
# The device side is everything inside tether-core's `Server::poll` (the sessions, the services
# and smoltcp's interface poll; `sim selftest` puts the client's sockets on the same loopback
# interface, so that poll also moves the client's TCP segments). Each figure is a run of
# `sim selftest` under callgrind collecting only inside one client call (--collect-atstart=no
# --toggle-collect), and the inclusive count of `Server::poll` within it is taken from callgrind's
# output (scripts/callgrind-inclusive.py):
#   put, get    slope between two transfer sizes (1 MiB and 3 MiB): the per-byte cost, with
#               put-begin, commit and the self-test's small file cancelled out
#   echo        the self-test's four echo requests (4 KiB, 31 B and two empty bodies), averaged
#   hello       the one hello
#   handshake   `Lock::respond` in core/examples/handshakes.rs, 10 handshakes, averaged (the
#               self-test runs open; this is the keyed device's side of each handshake)
# The self-test runs with the in-process stack's virtual clock (TETHER_SIM_VIRTUAL_CLOCK=1: a
# connection that waits moves the clock to the next timer instead of waiting for it): with the
# host's clock, how often an idle stack is polled, each poll counted, follows how fast the host
# runs under callgrind, and a download's count varied by up to 20 x from run to run.
# The host build is the sim's (feature `std`: SIMD CRC-32 and SHA-256 where the CPU has them), so
# these count x86-64 instructions of this machine's CPU features, not a board's: they make a change
# in the work per byte visible in review. The board's counts are scripts/firmware.sh cost.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

log() { printf '[callgrind] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

runs=2
while [ "$#" -gt 0 ]; do
    case $1 in
        --runs) runs=${2:?--runs N}; shift 2 ;;
        *) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done

command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
cargo=cargo
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then cargo=$HOME/.cargo/bin/cargo; fi
log "building sim and the handshake example (release)"
env -u RUSTC -u RUSTDOC -u RUSTC_BOOTSTRAP "$cargo" build --release -p tether-sim --quiet
env -u RUSTC -u RUSTDOC -u RUSTC_BOOTSTRAP "$cargo" build --release -p tether-core --features secure \
    --example handshakes --quiet
SIM=$ROOT/target/release/sim
HANDSHAKES=$ROOT/target/release/examples/handshakes

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DEVICE='tether_core::server::Server<C,S,_,_>::poll'

# inside CALL SIZE: device instructions (Server::poll, inclusive) within the client's CALL during
# `sim selftest --size SIZE`.
inside() {
    local out=$WORK/cg.$1.$2
    TETHER_SIM_VIRTUAL_CLOCK=1 valgrind --tool=callgrind --callgrind-out-file="$out" --collect-atstart=no \
        --toggle-collect="tether_host::client::Client*::$1" "$SIM" selftest --size "$2" \
        >"$WORK/selftest.log" 2>&1 || { cat "$WORK/selftest.log" >&2; die "sim selftest failed under callgrind"; }
    python3 scripts/callgrind-inclusive.py "$out" "$DEVICE"
}

rows=()
for i in $(seq 1 "$runs"); do
    log "round $i of $runs"
    put1=$(inside put 1M)
    put3=$(inside put 3M)
    get1=$(inside get 1M)
    get3=$(inside get 3M)
    echo4=$(inside echo 1M)
    hello=$(inside hello 1M)
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.hs" --toggle-collect='*Lock::respond' \
        "$HANDSHAKES" 10 >/dev/null 2>&1 || die "the handshake example failed under callgrind"
    hs=$(python3 scripts/callgrind-inclusive.py "$WORK/cg.hs" '')
    rows+=("$put1 $put3 $get1 $get3 $echo4 $hello $hs")
done

printf '%s\n' "${rows[@]}" | python3 -c '
import sys
rows = [list(map(int, line.split())) for line in sys.stdin]
mib = 1 << 20
figures = [
    ("put, per byte (slope 1 to 3 MiB)", lambda r: (r[1] - r[0]) / (2 * mib), "%.3f"),
    ("get, per byte (slope 1 to 3 MiB)", lambda r: (r[3] - r[2]) / (2 * mib), "%.3f"),
    ("echo request (mean of the 4)", lambda r: r[4] / 4, "%.0f"),
    ("hello", lambda r: r[5], "%.0f"),
    ("handshake (Lock::respond, mean of 10)", lambda r: r[6] / 10, "%.0f"),
]
print()
print("device side of sim selftest, x86-64 instructions (callgrind, Server::poll inclusive)")
print("%-40s" % "figure" + "".join("%14s" % ("run %d" % (i + 1)) for i in range(len(rows))) + "%10s" % "spread")
for name, f, fmt in figures:
    vals = [f(r) for r in rows]
    spread = (max(vals) - min(vals)) / min(vals) * 100 if min(vals) else 0
    print("%-40s" % name + "".join("%14s" % (fmt % v) for v in vals) + "%9.2f%%" % spread)
'
