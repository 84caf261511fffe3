#!/usr/bin/env bash
# Sealed against unsealed transfers through sim, in one run: two sims side by side, one open and
# one with a key (`--key-file`), and rounds of host-cli put and get of the same file against each,
# interleaved (open put, sealed put, open get, sealed get), so both see the same load. Times are
# host-cli's own `seconds` (--json), and the CPU each transfer cost (host-cli's from /usr/bin/time,
# the sim's from /proc/PID/stat); the file is removed before each put, untimed. Prints the
# median rates and the ratio sealed / unsealed (target >= 0.7, issue 12), of the medians and per
# round.
#
#   bash scripts/bench-secure.sh [SIZE_MIB] [RUNS]     # defaults: 8 3
#
# Release binaries (cargo build --release). Traffic goes to 127.0.0.1 only, on ports nobody
# listens on; both sims are stopped on every exit path. The key is a throwaway one in a temp dir.
# The firmware's side (handshake time on the emulated board) is `scripts/firmware.sh bench-secure`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mib=${1:-8}
runs=${2:-3}
bytes=$((mib << 20))

cargo build --release -q --bin sim --bin host-cli
sim=target/release/sim
cli=target/release/host-cli

work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

(umask 077 && python3 -c 'import os; print(os.urandom(32).hex())' >"$work/key")
head -c "$bytes" /dev/urandom >"$work/file.bin"

# free_ports N: N distinct ports in 20000-32767 (below Linux's ephemeral range, so no outgoing
# connection takes one meanwhile) that nobody listens on (TCP and UDP tables).
free_ports() {
    python3 - "$1" <<'PY'
import random, sys
used = set()
for table in ("tcp", "tcp6", "udp", "udp6"):
    try:
        for line in open("/proc/net/" + table).readlines()[1:]:
            used.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    except OSError:
        pass
print(*random.sample(sorted(set(range(20000, 32768)) - used), int(sys.argv[1])))
PY
}

# start NAME [ARGS...]: a sim on fresh ports; sets PORT_<NAME>.
start() {
    local name=$1 tcp udp ptcp pudp pcmd pjson pchat
    shift
    read -r tcp udp ptcp pudp pcmd pjson pchat < <(free_ports 7)
    "$sim" --tcp-port "$tcp" --udp-port "$udp" --plain-tcp-port "$ptcp" --plain-udp-port "$pudp" \
        --plain-command-port "$pcmd" --plain-command-json-port "$pjson" --plain-chat-port "$pchat" \
        --capacity $((mib * 3))M "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    printf -v "PORT_$name" %s "$tcp"
    printf -v "PID_$name" %s "${pids[-1]}"
    local i
    for i in $(seq 100); do
        "$cli" --to "127.0.0.1:$tcp" --timeout 1s -q info >/dev/null 2>&1 && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/$name.log" >&2
    echo "sim $name did not come up" >&2
    exit 1
}
start open
start sealed --key-file "$work/key"

# sim_ticks NAME: CPU time (user + system, clock ticks) sim NAME has used so far.
sim_ticks() {
    local pid=PID_$1
    awk '{ print $14 + $15 }' "/proc/${!pid}/stat"
}
# transfer NAME put|get: one timed transfer against sim NAME; prints its seconds (host-cli's own
# figure) and the CPU seconds it cost, host-cli's and the sim's together.
transfer() {
    local name=$1 op=$2 port key=() before after out
    port=PORT_$name
    [ "$name" = sealed ] && key=(--key-file "$work/key")
    local c=("$cli" --to "127.0.0.1:${!port}" --timeout 30s -q "${key[@]}")
    if [ "$op" = put ]; then
        "${c[@]}" rm bench.bin >/dev/null 2>&1 || true
    else
        rm -f "$work/back.bin"
    fi
    before=$(sim_ticks "$name")
    if [ "$op" = put ]; then
        out=$(/usr/bin/time -f 'cpu %U %S' -o "$work/time" "${c[@]}" --json put "$work/file.bin" bench.bin)
    else
        out=$(/usr/bin/time -f 'cpu %U %S' -o "$work/time" "${c[@]}" --json get bench.bin "$work/back.bin")
        cmp -s "$work/file.bin" "$work/back.bin" || { echo "$name: get returned different bytes" >&2; exit 1; }
    fi
    after=$(sim_ticks "$name")
    python3 -c '
import json, sys
out, cpu, ticks, hz = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), int(sys.argv[4])
seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
print("%.4f %.3f" % (seconds, float(cpu[1]) + float(cpu[2]) + ticks / hz))
' "$out" "$(grep '^cpu' "$work/time")" $((after - before)) "$(getconf CLK_TCK)"
}

# Warm-up: one of each, not counted.
for name in open sealed; do transfer "$name" put >/dev/null; transfer "$name" get >/dev/null; done
rows=()
for i in $(seq 1 "$runs"); do
    row="$(transfer open put) $(transfer sealed put) $(transfer open get) $(transfer sealed get)"
    echo "  round $i: (seconds cpu-seconds) put open, sealed; get open, sealed: $row"
    rows+=("$row")
done

printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
mib = int(sys.argv[1])
rows = [list(map(float, l.split())) for l in sys.stdin]
# Columns: open put (s, cpu), sealed put, open get, sealed get.
wall = [[r[2 * i] for r in rows] for i in range(4)]
cpu = [[r[2 * i + 1] for r in rows] for i in range(4)]
print("%d MiB through sim (rootless link), %d rounds:" % (mib, len(rows)))
for name, u, s in (("put", 0, 1), ("get", 2, 3)):
    ru, rs = mib / statistics.median(wall[u]), mib / statistics.median(wall[s])
    # Per round: the four transfers of a round run back to back, under the same load on the
    # host, which is the figure to trust on a busy machine.
    rounds = [a / b for a, b in zip(wall[u], wall[s])]
    cu, cs = statistics.median(cpu[u]), statistics.median(cpu[s])
    print("  %s  median MiB/s unsealed %7.1f  sealed %7.1f  ratio %.2f; per round %s, median %.2f (target >= 0.70)" % (
        name, ru, rs, rs / ru, " ".join("%.2f" % r for r in rounds), statistics.median(rounds)))
    print("       CPU (host-cli + sim), median: unsealed %.3f s  sealed %.3f s  ratio unsealed/sealed %.2f" % (cu, cs, cu / cs))
' "$mib"
