#!/usr/bin/env bash
# Build tether-core (release, no_std) for bare-metal Cortex-M targets, in four
# configurations each: the default features (smoltcp: the network server, plain
# services), `secure` added (the Noise handshake and sealed frames), `dhcp` and
# `mdns` added (the address from DHCP, the DNS-SD responder on edge-mdns; `dhcp`
# alone on thumbv6m, which has no atomic compare-and-swap for edge-mdns), and
# serial-only (--no-default-features: sessions over a UART, no TCP/IP stack).
#
#   bash scripts/embedded-build.sh                          # default targets
#   bash scripts/embedded-build.sh thumbv6m-none-eabi ...   # chosen targets
#
# rustup's toolchain on our machines has no thumb targets and `rustup target
# add` cannot be counted on, so this uses Debian's toolchain (rustc-web,
# cargo-web, rust-web-src: the library sources for -Zbuild-std) and builds
# `core` from source for each target. Notes:
#   * RUSTC/RUSTDOC/RUSTC_BOOTSTRAP are set only on the Debian cargo's command
#     line, never exported: rustup's cargo must not see them.
#   * -Zbuild-std needs an explicit --target; target settings are deliberately
#     kept out of .cargo/config.toml, which the host build reads.
#   * Output goes to target-embedded/ (gitignored), so the two toolchains never
#     share (and invalidate) one target dir.
# Exits non-zero if any target fails; prints a size summary of what was built.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEFAULT_TARGETS=(thumbv7em-none-eabihf thumbv6m-none-eabi)
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-22)
TARGET_DIR=${TETHER_EMBEDDED_TARGET_DIR:-target-embedded}  # override for a cold build
CRATE=tether-core
RLIB=libtether_core.rlib

if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${DEFAULT_TARGETS[@]}"); fi

log() { printf '[embedded-build] %s\n' "$*"; }
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# --- 1. Debian packages (scripts/lib.sh) --------------------------------------
ensure_apt_packages "${APT_PACKAGES[@]}"


log "$("$DEB_CARGO" --version)"
log "$("$DEB_RUSTC" --version)"

# --- 2. rust-version check ---------------------------------------------------
# If Debian's rustc is older than the workspace's rust-version, build anyway
# with --ignore-rust-version (no_std core code rarely needs the newest rustc).
extra_args=()
ver_num() { awk -F. '{ printf "%d%03d%03d\n", $1, $2, $3 }' <<<"$1"; }
want=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
have=$("$DEB_RUSTC" --version | awk '{print $2}' | sed 's/[-+].*//')
if [ -n "$want" ] && [ "$(ver_num "$have")" -lt "$(ver_num "$want")" ]; then
    log "Debian rustc $have < rust-version $want: adding --ignore-rust-version"
    extra_args+=(--ignore-rust-version)
fi

# rlib_size LABEL RLIB: one line of the size summary.
size_tool=""
for c in llvm-size-22 llvm-size size; do
    if command -v "$c" >/dev/null; then size_tool=$c; break; fi
done
rlib_size() {
    local text=- data=- bss=-
    if [ -n "$size_tool" ]; then
        # Berkeley format with totals; lib.rmeta counts as 0.
        read -r text data bss _ < <("$size_tool" -t "$2" 2>/dev/null | tail -n1) || true
    fi
    printf '%-38s %10s %8s %8s %8s' "$1" "$(stat -c %s "$2")" "$text" "$data" "$bss"
}

# --- 3. build ------------------------------------------------------------------
# Guard the lockfile format: if Debian's cargo rewrote Cargo.lock to a lockfile
# version the host cargo may not read, put the original back.
lock_version() { sed -n 's/^version = \([0-9]*\)$/\1/p' Cargo.lock 2>/dev/null | head -n1; }
lock_backup=$(mktemp)
trap 'rm -f "$lock_backup"' EXIT
[ -f Cargo.lock ] && cp Cargo.lock "$lock_backup"
lock_before=$(lock_version)

# name:cargo-args. The configurations share the target dir (and so the -Zbuild-std build of
# `core`); the rlib is measured right after each build, before the next one replaces it.
CONFIGS=("default:" "secure:--features secure" "dhcp-mdns:--features dhcp,mdns" "serial-only:--no-default-features")

failed=()
built=()
sizes=()
for t in "${targets[@]}"; do
    for c in "${CONFIGS[@]}"; do
        name=${c%%:*}
        read -r -a features <<<"${c#*:}"
        # edge-mdns needs atomic compare-and-swap (portable-atomic), which a Cortex-M0 lacks: there
        # `dhcp` alone (a port that wants mDNS on one enables portable-atomic's `critical-section`
        # feature, docs/PORTING.md).
        if [ "$name" = dhcp-mdns ] && [[ $t == thumbv6m* ]]; then
            name=dhcp
            features=(--features dhcp)
        fi
        label="$t ($name)"
        log "building $CRATE for $label"
        start=$SECONDS
        if deb_cargo build -p "$CRATE" --release --target "$t" -Zbuild-std=core \
            "${features[@]}" --target-dir "$TARGET_DIR" "${extra_args[@]}"; then
            log "$label: ok ($((SECONDS - start)) s)"
            built+=("$label")
            sizes+=("$(rlib_size "$label" "$TARGET_DIR/$t/release/$RLIB")")
        else
            log "$label: FAILED ($((SECONDS - start)) s)"
            failed+=("$label")
        fi
    done
done

if [ -n "$lock_before" ] && [ "$(lock_version)" != "$lock_before" ]; then
    log "warning: Debian cargo changed the Cargo.lock version ($lock_before -> $(lock_version)); restoring it"
    cp "$lock_backup" Cargo.lock
fi

# --- 4. size summary -----------------------------------------------------------
# text/data/bss are summed over tether-core's own object files in the rlib
# (its non-generic code). Generic code is instantiated, and counted, only in
# the firmware that links it, so this is a floor, useful to spot growth. The
# crypto crates of `secure` are rlibs of their own and counted only where they
# are inlined: the linked cost of `secure` is measured on the firmware
# (`scripts/firmware.sh size`, docs/BENCHMARKS.md).
if [ "${#sizes[@]}" -gt 0 ]; then
    echo
    printf '%-38s %10s %8s %8s %8s\n' target rlib_bytes text data bss
    printf '%s\n' "${sizes[@]}"
    echo
fi

if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED targets: ${failed[*]}"
    exit 1
fi
log "all built: ${built[*]}"
