#!/usr/bin/env bash
# tether-bridge's figures (docs/BENCHMARKS.md, "Devices on an MQTT broker"): one run of
# bridge_bench (tests/src/bin/bridge_bench.rs) with release binaries: a mosquitto of its own,
# `sim --devices N --no-plain`, the bridge; memory, idle CPU, events through the bridge beside
# mosquitto_pub's own rate, command round trips.
#
#   bash scripts/bench-bridge.sh [N] [EVENTS_PER_DEVICE] [COMMANDS] [PACE_MS]   # defaults: 256 40 500 20
#
# Needs mosquitto and mosquitto_pub (Debian: mosquitto, mosquitto-clients). Local only: every
# address is on 127.0.0.0/8, every wait is bounded, and every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

n=${1:-256}
events=${2:-40}
commands=${3:-500}
pace=${4:-20}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin sim --bin tether-bridge --bin bridge_bench
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/bridge_bench --devices "$n" --events "$events" --commands "$commands" --pace-ms "$pace"
