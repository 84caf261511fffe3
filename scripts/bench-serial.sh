#!/usr/bin/env bash
# Serial transfer throughput through `sim --serial` (a pseudo-terminal paced like a UART):
# put and get of SIZE bytes at each baud rate, as a fraction of line rate
# (payload bytes ÷ (baud ÷ 10)).
#
#   bash scripts/bench-serial.sh [SIZE_KIB] [BAUD...]     # defaults: 256 115200 921600
# Local only (a pty and 127.0.0.1); every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kib=${1:-256}
shift || true
bauds=("${@:-115200 921600}")
read -r -a bauds <<<"${bauds[*]}"

[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin sim --bin host-cli   # NO_BUILD=1: use the binaries as built
sim=target/release/sim
cli=target/release/host-cli
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
sim_pid=
trap '[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
head -c $((kib << 10)) /dev/urandom >"$work/data.bin"
bytes=$((kib << 10))

for baud in "${bauds[@]}"; do
    "$sim" --serial --baud "$baud" --tcp-port "$(free_port)" --udp-port "$(free_port)" \
        --plain-tcp-port "$(free_port)" --plain-udp-port "$(free_port)" >"$work/sim-$baud.log" 2>&1 &
    sim_pid=$!
    pty=
    for _ in $(seq 100); do
        pty=$(grep -so '/dev/pts/[0-9]*' "$work/sim-$baud.log" | head -1 || true)
        [ -n "$pty" ] && break
        sleep 0.05
    done
    to="serial:$pty@$baud"
    for op in put get; do
        start=$(date +%s.%N)
        if [ "$op" = put ]; then
            "$cli" --to "$to" -q put "$work/data.bin" data.bin --overwrite >/dev/null
        else
            "$cli" --to "$to" -q get data.bin "$work/back.bin" >/dev/null
            cmp "$work/data.bin" "$work/back.bin"
        fi
        end=$(date +%s.%N)
        python3 -c "import sys; b,baud,s,e=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4]); t=e-s; print(f'| {sys.argv[5]} | {baud} | {b} | {t:.2f} s | {b/t/1000:.1f} kB/s | {b/t/(baud/10):.3f} |')" \
            "$bytes" "$baud" "$start" "$end" "$op"
    done
    kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=
done
