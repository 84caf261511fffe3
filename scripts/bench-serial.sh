#!/usr/bin/env bash
# Serial transfer throughput through `sim --serial` (a pseudo-terminal paced like a UART):
# put and get of SIZE bytes at each baud rate, on a clean line and with byte faults, as a
# fraction of line rate (payload bytes ÷ (baud ÷ 10)). host-cli runs with its default flags.
#
#   bash scripts/bench-serial.sh [SIZE_KIB] [BAUD...]     # defaults: 256 115200 921600
#   FAULTS="0 1e-4" bash scripts/bench-serial.sh ...       # each: byte loss and corruption, each way
#   SEED=N                                                 # the faults' placement (default 1)
# Local only (a pty and 127.0.0.1); every process and file it makes is removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kib=${1:-256}
shift || true
bauds=("${@:-115200 921600}")
read -r -a bauds <<<"${bauds[*]}"
read -r -a faults <<<"${FAULTS:-0}"

# NO_BUILD=1: use the binaries as built; BIN_DIR: where they are (default target/release).
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin sim --bin host-cli
sim=${BIN_DIR:-target/release}/sim
cli=${BIN_DIR:-target/release}/host-cli
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
sim_pid=
trap '[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
head -c $((kib << 10)) /dev/urandom >"$work/data.bin"
bytes=$((kib << 10))

echo "| op | baud | faults each way | bytes | time | rate | fraction of line rate | resumptions |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for baud in "${bauds[@]}"; do
    for fault in "${faults[@]}"; do
        # No plain ports: they are not measured, and fixed ones could be taken.
        "$sim" --serial --baud "$baud" --serial-loss "$fault" --serial-corrupt "$fault" --seed "${SEED:-1}" \
            --tcp-port "$(free_port)" --udp-port "$(free_port)" --no-plain >"$work/sim-$baud-$fault.log" 2>&1 &
        sim_pid=$!
        pty=
        for _ in $(seq 100); do
            pty=$(grep -so '/dev/pts/[0-9]*' "$work/sim-$baud-$fault.log" | head -1 || true)
            [ -n "$pty" ] && [ -e "$pty" ] && break
            sleep 0.05
        done
        to="serial:$pty@$baud"
        for op in put get; do
            rm -f "$work/back.bin"
            start=$(date +%s.%N)
            if [ "$op" = put ]; then
                out=$("$cli" --to "$to" --json put "$work/data.bin" data.bin --overwrite)
            else
                out=$("$cli" --to "$to" --json get data.bin "$work/back.bin")
                cmp "$work/data.bin" "$work/back.bin"
            fi
            end=$(date +%s.%N)
            python3 -c "import json, sys; b,baud,s,e=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4]); t=e-s; r=json.loads(sys.argv[7])['recoveries']; print(f'| {sys.argv[5]} | {baud} | {sys.argv[6]} | {b} | {t:.2f} s | {b/t/1000:.1f} kB/s | {b/t/(baud/10):.3f} | {r} |')" \
                "$bytes" "$baud" "$start" "$end" "$op" "$fault" "$out"
        done
        kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=
    done
done
