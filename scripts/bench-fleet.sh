#!/usr/bin/env bash
# `sim --devices N` at scale: start-up time, resident memory and idle CPU, then `discover`,
# `exec uptime` and a 1 MiB put across all N devices, and the same start-up and idle figures for
# one device beside it.
#
#   bash scripts/bench-fleet.sh [N]        # default 256; FIRST=127.0.1.1 is the first device's address
#   SIM_FLAGS=--no-plain bash scripts/bench-fleet.sh     # extra sim flags for both runs
#
# Local only: the devices listen on loopback addresses from FIRST on (127.0.1.1 … 127.0.2.0 for
# 256); every wait is bounded and every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

n=${1:-256}
first=${FIRST:-127.0.1.1}
idle_s=${IDLE_SECONDS:-30}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin sim --bin host-cli   # NO_BUILD=1: use the binaries as built
sim=target/release/sim
cli=target/release/host-cli
work=$(mktemp -d)
sim_pid=
trap '[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
export TETHER_CONFIG=$work/none.toml   # nothing from this machine's config

nth() { python3 -c 'import ipaddress,sys; print(ipaddress.IPv4Address(sys.argv[1]) + int(sys.argv[2]))' "$1" "$2"; }
now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$1" "$(now)"; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# start COUNT: starts sim with COUNT devices and waits (at most 60 s) until the last one accepts a
# connection; sets started_s to the seconds that took (and sim_pid).
start() {
    local count=$1 last t0
    last=$(nth "$first" $((count - 1)))
    t0=$(now)
    # shellcheck disable=SC2086 # SIM_FLAGS is a list of flags
    "$sim" --devices "$count" --listen "$first" ${SIM_FLAGS:-} >"$work/sim-$count.log" 2>&1 &
    sim_pid=$!
    for _ in $(seq 1200); do
        if python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], 7070), 0.2).close()' "$last" 2>/dev/null; then
            started_s=$(since "$t0")
            return
        fi
        sleep 0.05
    done
    echo "sim --devices $count did not come up:" >&2
    cat "$work/sim-$count.log" >&2
    exit 1
}

# idle SECONDS: CPU use of the sim over SECONDS without traffic, in % of one core.
idle() {
    local a b
    a=$(ticks "$sim_pid")
    sleep "$1"
    b=$(ticks "$sim_pid")
    python3 -c 'import sys; print(f"{(int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]) / float(sys.argv[4]) * 100:.2f}")' "$a" "$b" "$hz" "$1"
}

stop() {
    kill -INT "$sim_pid"
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=
}

echo "== one device"
start 1
one_start=$started_s
sleep 1
one_rss=$(rss_kib "$sim_pid")
one_idle=$(idle 10)
stop

echo "== $n devices"
last=$(nth "$first" $((n - 1)))
start "$n"
n_start=$started_s
banner_ms=$(grep -o 'started in [0-9]* ms' "$work/sim-$n.log" | grep -o '[0-9]*')
sleep 1
n_rss=$(rss_kib "$sim_pid")
n_idle=$(idle "$idle_s")

t0=$(now)
found=$(timeout 60 "$cli" --json --timeout 10s discover "$first-$last" | grep -c '"found_by"')
discover_s=$(since "$t0")

declare -A fan
for jobs in 16 64; do
    t0=$(now)
    ok=$(timeout 120 "$cli" --json --jobs "$jobs" --to "@discover:$first-$last" exec uptime | grep -o '"succeeded":[0-9]*' | grep -o '[0-9]*')
    fan[$jobs]="$ok devices ok in $(since "$t0") s"
done

head -c $((1 << 20)) /dev/urandom >"$work/1mib.bin"
t0=$(now)
put_ok=$(timeout 300 "$cli" --json --jobs 16 --to "@discover:$first-$last" put "$work/1mib.bin" | grep -o '"succeeded":[0-9]*' | grep -o '[0-9]*')
put_s=$(since "$t0")
after_rss=$(rss_kib "$sim_pid")
stop

python3 - "$n" "$one_start" "$one_rss" "$one_idle" "$n_start" "$banner_ms" "$n_rss" "$n_idle" "$idle_s" \
    "$found" "$discover_s" "${fan[16]}" "${fan[64]}" "$put_ok" "$put_s" "$after_rss" <<'EOF'
import sys
(n, one_start, one_rss, one_idle, n_start, banner_ms, n_rss, n_idle, idle_s, found, discover_s,
 fan16, fan64, put_ok, put_s, after_rss) = sys.argv[1:]
n = int(n)
one_rss, n_rss, after_rss = int(one_rss), int(n_rss), int(after_rss)
per = (n_rss - one_rss) / (n - 1) if n > 1 else 0
print(f"| | 1 device | {n} devices |")
print("| --- | --- | --- |")
print(f"| start-up (spawn to the last device accepting) | {float(one_start):.2f} s | {float(n_start):.2f} s (its own count: {banner_ms} ms) |")
print(f"| resident memory after start | {one_rss / 1024:.1f} MiB | {n_rss / 1024:.1f} MiB ({per:.0f} KiB a device more) |")
print(f"| idle CPU | {one_idle} % of a core (10 s) | {n_idle} % of a core ({idle_s} s) |")
print(f"| `discover` FIRST-LAST | | {found} found in {discover_s} s |")
print(f"| `exec uptime` on `@discover`, `--jobs 16` | | {fan16} |")
print(f"| `exec uptime` on `@discover`, `--jobs 64` | | {fan64} |")
print(f"| 1 MiB `put` to each, `--jobs 16` | | {put_ok} devices ok in {put_s} s ({n * 1.0 / float(put_s):.1f} MiB/s in all) |")
print(f"| resident memory after the put | | {after_rss / 1024:.1f} MiB |")
EOF
