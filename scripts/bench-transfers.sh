#!/usr/bin/env bash
# Transfer throughput, all measured in one run so the ratios compare like with like:
#   1. host-cli bench (echo p50/p99, upload, download) through sim's rootless link;
#   2. a plain kernel-TCP copy over 127.0.0.1 (the ceiling the PC side can see);
#   3. sim selftest's in-process smoltcp throughput (no PC sockets at all);
#   4. a Python upload written like the classic tutorials (the baseline people start from).
#
#   bash scripts/bench-transfers.sh [SIZE_MIB] [SOCKET_BUFFER]     # defaults: 64 256K
# Traffic goes to 127.0.0.1 only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mib=${1:-64}
sockbuf=${2:-256K}
bytes=$((mib << 20))

# NO_BUILD=1: use the binaries as built; BIN_DIR: where they are (default target/release).
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin sim --bin host-cli
sim=${BIN_DIR:-target/release}/sim
cli=${BIN_DIR:-target/release}/host-cli

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tcp=$(free_port); udp=$(free_port)

log=$(mktemp)
# No plain ports: they are not measured, and fixed ones (8081, 8082, 9001) may be taken.
"$sim" --tcp-port "$tcp" --udp-port "$udp" --no-plain \
    --socket-buffer "$sockbuf" --capacity $((mib * 3))M >"$log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
    "$cli" --to "127.0.0.1:$tcp" --timeout 1s -q send up >/dev/null 2>&1 && break
    sleep 0.1
done

json=$("$cli" --to "127.0.0.1:$tcp" --udp-port "$udp" --timeout 60s --json bench --size "${mib}M" --rounds 5000 --repeat 3)
kernel=$(python3 scripts/bench/kernel_copy.py $((bytes * 4)))
tutorial=$(python3 scripts/bench/tutorial_upload.py "$bytes")
selftest=$("$sim" selftest --size "${mib}M" --socket-buffer "$sockbuf")

python3 - "$json" "$kernel" "$tutorial" "$selftest" "$mib" "$sockbuf" <<'PY'
import json, re, sys
bench, kernel, tutorial = (json.loads(a) for a in sys.argv[1:4])
selftest, mib, sockbuf = sys.argv[4], sys.argv[5], sys.argv[6]
def rate(row):
    m = re.search(r"^\s*\d+\s+" + row + r"\s+PASS.*?([\d.]+) ([KMG])iB/s", selftest, re.M)
    return float(m.group(1)) * 1024 ** " KMG".index(m.group(2)) if m else float("nan")
inproc_up, inproc_down = rate("upload"), rate("download")
up, down = bench["upload_bytes_per_s"], bench["download_bytes_per_s"]
k, t = kernel["bytes_per_s"], tutorial["bytes_per_s"]
g = lambda r: f"{r / 1e9:6.2f} GB/s"
print(f"transfers of {mib} MiB, socket buffers {sockbuf}")
print(f"  echo 32 B through sim        p50 {bench['echo_p50_us']:.0f} us   p99 {bench['echo_p99_us']:.0f} us")
print(f"  host-cli put through sim     {g(up)}")
print(f"  host-cli get through sim     {g(down)}")
print(f"  kernel TCP copy, 127.0.0.1   {g(k)}")
print(f"  sim selftest in-process      up {g(inproc_up)}   down {g(inproc_down)}")
print(f"  Python tutorial upload       {g(t)}")
print("ratios")
print(f"  put / Python tutorial        {up / t:5.2f}   (target > 1)")
print(f"  get / Python tutorial        {down / t:5.2f}   (target > 1)")
print(f"  put / in-process up          {up / inproc_up:5.2f}   (target >= 0.5)")
print(f"  get / in-process down        {down / inproc_down:5.2f}   (target >= 0.5)")
print(f"  put / kernel TCP             {up / k:5.2f}")
print(f"  get / kernel TCP             {down / k:5.2f}")
print(f"targets: put >= 1 GB/s {'met' if up >= 1e9 else 'MISSED'}; get >= 1 GB/s {'met' if down >= 1e9 else 'MISSED'}; "
      f"echo p50 < 200 us {'met' if bench['echo_p50_us'] < 200 else 'MISSED'}")
PY
