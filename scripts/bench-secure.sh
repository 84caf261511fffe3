#!/usr/bin/env bash
# Sealed against unsealed transfers through sim, in one run: two sims side by side, one open and
# one with a key (`--key-file`), and rounds of host-cli put and get of the same file against each,
# interleaved (open put, sealed put, open get, sealed get), so both see the same load. Times are
# host-cli's own `seconds` (--json); the file is removed before each put, untimed. Prints the
# median rates and the ratio sealed / unsealed (target >= 0.7, issue 12).
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

seconds() { python3 -c 'import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["seconds"])'; }
# transfer NAME put|get: one timed transfer against sim NAME; prints seconds.
transfer() {
    local name=$1 op=$2 port key=()
    port=PORT_$name
    [ "$name" = sealed ] && key=(--key-file "$work/key")
    local c=("$cli" --to "127.0.0.1:${!port}" --timeout 30s -q "${key[@]}")
    if [ "$op" = put ]; then
        "${c[@]}" rm bench.bin >/dev/null 2>&1 || true
        "${c[@]}" --json put "$work/file.bin" bench.bin | seconds
    else
        rm -f "$work/back.bin"
        "${c[@]}" --json get bench.bin "$work/back.bin" | seconds
        cmp -s "$work/file.bin" "$work/back.bin" || { echo "$name: get returned different bytes" >&2; exit 1; }
    fi
}

# Warm-up: one of each, not counted.
for name in open sealed; do transfer "$name" put >/dev/null; transfer "$name" get >/dev/null; done
rows=()
for i in $(seq 1 "$runs"); do
    row="$(transfer open put) $(transfer sealed put) $(transfer open get) $(transfer sealed get)"
    echo "  round $i: put open/sealed, get open/sealed (s): $row"
    rows+=("$row")
done

printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
mib = int(sys.argv[1])
cols = list(zip(*[list(map(float, l.split())) for l in sys.stdin]))
med = [statistics.median(c) for c in cols]
rate = [mib / t for t in med]
print("%d MiB through sim (rootless link), median of %d rounds, MiB/s:" % (mib, len(cols[0])))
print("  put  unsealed %8.1f  sealed %8.1f  ratio %.2f (target >= 0.70)" % (rate[0], rate[1], rate[1] / rate[0]))
print("  get  unsealed %8.1f  sealed %8.1f  ratio %.2f (target >= 0.70)" % (rate[2], rate[3], rate[3] / rate[2]))
' "$mib"
