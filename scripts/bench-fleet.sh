#!/usr/bin/env bash
# `sim --devices N` at scale: start-up time, resident memory and idle CPU, then `discover`,
# `exec uptime` and a 1 MiB put across all N devices, and the same start-up and idle figures for
# one device beside it.
#
#   bash scripts/bench-fleet.sh [N]        # default 256; FIRST=127.0.1.1 is the first device's address
#   SIM_FLAGS=--no-plain bash scripts/bench-fleet.sh     # extra sim flags for both runs
#   bash scripts/bench-fleet.sh --processes [M]          # M devices (default 16) in one sim against
#                                                        # M sim processes of one device each: start-up,
#                                                        # memory, idle CPU, exec uptime, a 1 MiB put
#
# Local only: the devices listen on loopback addresses from FIRST on (127.0.1.1 … 127.0.2.0 for
# 256); every wait is bounded and every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

processes=
if [ "${1:-}" = --processes ]; then
    processes=1
    shift
fi
n=${1:-256}
[ -n "$processes" ] && n=${1:-16}
first=${FIRST:-127.0.1.1}
idle_s=${IDLE_SECONDS:-30}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin sim --bin host-cli   # NO_BUILD=1: use the binaries as built
sim=target/release/sim
cli=target/release/host-cli
work=$(mktemp -d)
sim_pid=
sim_pids=()
trap '[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; for p in "${sim_pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"' EXIT
export TETHER_CONFIG=$work/none.toml   # nothing from this machine's config

nth() { python3 -c 'import ipaddress,sys; print(ipaddress.IPv4Address(sys.argv[1]) + int(sys.argv[2]))' "$1" "$2"; }
now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$1" "$(now)"; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# accepting ADDRESS LOG T0: waits (at most 60 s) until ADDRESS accepts on 7070; sets started_s to the
# seconds since T0. LOG is shown if it never does.
accepting() {
    for _ in $(seq 1200); do
        if python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], 7070), 0.2).close()' "$1" 2>/dev/null; then
            started_s=$(since "$3")
            return
        fi
        sleep 0.05
    done
    echo "the device at $1 did not come up:" >&2
    cat "$2" >&2
    exit 1
}

# start COUNT: starts sim with COUNT devices and waits until the last one accepts a connection;
# sets started_s to the seconds that took (and sim_pid).
start() {
    local count=$1 t0
    t0=$(now)
    # shellcheck disable=SC2086 # SIM_FLAGS is a list of flags
    "$sim" --devices "$count" --listen "$first" ${SIM_FLAGS:-} >"$work/sim-$count.log" 2>&1 &
    sim_pid=$!
    accepting "$(nth "$first" $((count - 1)))" "$work/sim-$count.log" "$t0"
}

# start_each COUNT: starts COUNT sim processes of one device each, the i-th on FIRST + i, and
# waits until each accepts; sets started_s and sim_pids.
start_each() {
    local count=$1 t0 i
    t0=$(now)
    for i in $(seq 0 $((count - 1))); do
        # shellcheck disable=SC2086 # SIM_FLAGS is a list of flags
        "$sim" --listen "$(nth "$first" "$i")" ${SIM_FLAGS:-} >"$work/one-$i.log" 2>&1 &
        sim_pids+=($!)
    done
    for i in $(seq 0 $((count - 1))); do
        accepting "$(nth "$first" "$i")" "$work/one-$i.log" "$t0"
    done
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

# work COUNT: the same work for both setups, on a `--to A,B,…` list of the COUNT devices: exec
# uptime, then a 1 MiB put to each (sets work_exec and work_put: "K ok in S s").
work() {
    local list t0 ok
    list=$(for i in $(seq 0 $(($1 - 1))); do printf '%s,' "$(nth "$first" "$i")"; done)
    list=${list%,}
    t0=$(now)
    ok=$(timeout 120 "$cli" --json --jobs 16 --to "$list" exec uptime | grep -o '"succeeded":[0-9]*' | grep -o '[0-9]*')
    work_exec="$ok ok in $(since "$t0") s"
    [ -f "$work/1mib.bin" ] || head -c $((1 << 20)) /dev/urandom >"$work/1mib.bin"
    t0=$(now)
    ok=$(timeout 300 "$cli" --json --jobs 16 --to "$list" put --overwrite "$work/1mib.bin" | grep -o '"succeeded":[0-9]*' | grep -o '[0-9]*')
    work_put="$ok ok in $(since "$t0") s"
}

rss_sum() { local t=0 p; for p in "${sim_pids[@]}"; do t=$((t + $(rss_kib "$p"))); done; echo "$t"; }
ticks_sum() { local t=0 p; for p in "${sim_pids[@]}"; do t=$((t + $(ticks "$p"))); done; echo "$t"; }
percent() { python3 -c 'import sys; print(f"{(int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]) / float(sys.argv[4]) * 100:.2f}")' "$1" "$2" "$hz" "$3"; }

if [ -n "$processes" ]; then
    echo "== $n devices in one sim"
    start "$n"
    one_start=$started_s
    sleep 1
    one_rss=$(rss_kib "$sim_pid")
    one_idle=$(idle "$idle_s")
    work "$n"
    one_exec=$work_exec one_put=$work_put
    one_after=$(rss_kib "$sim_pid")
    stop
    echo "== $n sim processes"
    start_each "$n"
    each_start=$started_s
    sleep 1
    each_rss=$(rss_sum)
    a=$(ticks_sum)
    sleep "$idle_s"
    each_idle=$(percent "$a" "$(ticks_sum)" "$idle_s")
    work "$n"
    each_exec=$work_exec each_put=$work_put
    each_after=$(rss_sum)
    python3 - "$n" "$one_start" "$each_start" "$one_rss" "$each_rss" "$one_idle" "$each_idle" "$idle_s" \
        "$one_exec" "$each_exec" "$one_put" "$each_put" "$one_after" "$each_after" <<'EOF'
import sys
(n, s1, sm, r1, rm, i1, im, idle_s, e1, em, p1, pm, a1, am) = sys.argv[1:]
r1, rm, a1, am = int(r1), int(rm), int(a1), int(am)
print(f"| {n} devices | one sim (`--devices {n}`) | {n} sim processes | processes / one sim |")
print("| --- | --- | --- | --- |")
print(f"| start-up (spawn to the last device accepting) | {float(s1):.2f} s | {float(sm):.2f} s | {float(sm) / float(s1):.1f}× |")
print(f"| resident memory after start (sum) | {r1 / 1024:.1f} MiB | {rm / 1024:.1f} MiB | {rm / r1:.1f}× |")
print(f"| idle CPU ({idle_s} s, sum) | {i1} % of a core | {im} % of a core | |")
print(f"| `exec uptime` on each (`--to` list, `--jobs 16`) | {e1} | {em} | |")
print(f"| 1 MiB `put` to each (`--jobs 16`) | {p1} | {pm} | |")
print(f"| resident memory after the put (sum) | {a1 / 1024:.1f} MiB | {am / 1024:.1f} MiB | {am / a1:.1f}× |")
EOF
    exit 0
fi

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
