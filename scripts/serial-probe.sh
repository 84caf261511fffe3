#!/usr/bin/env bash
# The serial-only footprint probe (firmware/serial-probe): the smallest linked Tether device,
# tether-core without smoltcp, one Device with a 4 KiB RAM store, the Serial driver on a polled
# UART. Builds it for both Cortex-M targets, reports its sections, and boots it in QEMU.
#
#   bash scripts/serial-probe.sh size    # build both targets, and the micro:bit with `secure` (a throwaway key);
#                                        # .text/.rodata/.data/.bss, flash and RAM against the chips' budgets
#   bash scripts/serial-probe.sh test    # size, then boot each in QEMU and talk to it with host-cli over its UART
#                                        # (the sealed micro:bit: handshake, sealed put/get, stack)
#   bash scripts/serial-probe.sh cost [--runs N] [--kib N]
#                                        # the micro:bit under -icount, open and sealed: instructions per byte of
#                                        # put/get (N KiB, default 256, in files), per echo, hello, handshake, and
#                                        # the floor (SHA-256, CRC-32, copies, AEAD) in the same image
#
#   thumbv7em-none-eabihf: the MPS2 AN386 (Cortex-M4), `qemu-system-arm -M mps2-an386`, UART0
#   thumbv6m-none-eabi:    the BBC micro:bit v1 (nRF51822, Cortex-M0, 256 KiB flash, 16 KiB RAM),
#                          `qemu-system-arm -M microbit`, UART0; also built with feature `secure` and a
#                          throwaway key (the key file named by TETHER_FIRMWARE_KEY_FILE, as the MPS2
#                          firmware's), seeded by the nRF51's RNG
#
# Toolchain and packages as scripts/firmware.sh (scripts/lib.sh: Debian's rustc-web/cargo-web,
# -Zbuild-std=core, lld-22). The output goes to target-firmware/, shared with the MPS2 firmware:
# the probe uses the same release profile and Cortex-M4 flags, so its thumbv7em build reuses the
# firmware's -Zbuild-std `core` (and the reverse). `size` fails if a build fails; the link fails
# if the statics outgrow their part of RAM (on the micro:bit 10 KiB: the stack has the first 6 KiB
# of the 16 to itself, see firmware/serial-probe/build.rs; sealed 9 and 7 KiB), and a stack that
# outgrows its region faults at run time, which `test` would see.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

PROBE_DIR=firmware/serial-probe
TARGETS=(thumbv7em-none-eabihf thumbv6m-none-eabi)
TARGET_DIR=${TETHER_FIRMWARE_TARGET_DIR:-$ROOT/target-firmware}
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-22 binutils python3)
# The micro:bit's budget: the nRF51822-QFAA's flash and RAM.
MICROBIT_FLASH=$((256 * 1024))
MICROBIT_RAM=$((16 * 1024))
HOST_CLI=$ROOT/target/release/host-cli
BOOT_TIMEOUT=10   # s until QEMU names the pty
QEMU_LIFETIME=${TETHER_PROBE_QEMU_LIFETIME:-120} # s: hard limit on one QEMU run
# Extra QEMU options for `boot` (cost: -icount).
QEMU_EXTRA=()
CMD_TIMEOUT=30    # s: one host-cli command

log() { printf '[serial-probe] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# elf_of TARGET [FEATURES]: where that build's ELF is kept.
elf_of() { echo "$TARGET_DIR/serial-probe-$1${2:+-$2}.elf"; }

# build TARGET [FEATURES]: the probe for TARGET (with the cargo features; `secure` needs
# KEY_FILE), copied to elf_of TARGET FEATURES.
build() {
    local t=$1 features=${2:-} start=$SECONDS
    log "building the probe for $t${features:+ with $features}"
    (cd "$PROBE_DIR" && TETHER_FIRMWARE_KEY_FILE=${KEY_FILE:-} deb_cargo build --release --locked --target "$t" \
        -Zbuild-std=core --target-dir "$TARGET_DIR" ${features:+--features "$features"})
    cp "$TARGET_DIR/$t/release/serial-probe" "$(elf_of "$t" "$features")"
    log "$t${features:+ $features}: built in $((SECONDS - start)) s"
}

# KEYS: a directory of throwaway keys (made by `size`, removed on exit).
KEYS=""
KEY_FILE=""
new_key() {
    [ -n "$KEYS" ] || KEYS=$(mktemp -d)
    KEY_FILE=$KEYS/probe.key
    [ -f "$KEY_FILE" ] || make_key "$KEY_FILE"
}

# section_size: scripts/lib.sh.

# footprint TARGET [FEATURES]: one line of the table.
footprint() {
    local t=$1 elf vt text rodata data bss flash ram
    elf=$(elf_of "$t" "${2:-}")
    vt=$(section_size "$elf" .vector_table)
    text=$(section_size "$elf" .text)
    rodata=$(section_size "$elf" .rodata)
    data=$(section_size "$elf" .data)
    bss=$(section_size "$elf" .bss)
    flash=$((vt + text + rodata + data))
    ram=$((data + bss))
    printf '%-29s %8s %8s %8s %6s %6s %8s %8s\n' "$t${2:+ +$2}" "$vt" "$text" "$rodata" "$data" "$bss" "$flash" "$ram"
    FLASH=$flash
    RAM=$ram
}

cmd_size() {
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    local t
    for t in "${TARGETS[@]}"; do build "$t"; done
    new_key
    build thumbv6m-none-eabi secure
    echo
    echo "serial-only probe (release, opt-level s, fat LTO; bytes; flash = vectors + .text + .rodata + .data, RAM = .data + .bss,"
    echo "besides the stack's own region: 6 KiB on the micro:bit (7 KiB sealed), 64 KiB on the MPS2)"
    printf '%-29s %8s %8s %8s %6s %6s %8s %8s\n' target vectors .text .rodata .data .bss flash ram
    for t in "${TARGETS[@]}"; do footprint "$t"; done
    footprint thumbv6m-none-eabi secure
    echo "micro:bit sealed: flash $FLASH B of $MICROBIT_FLASH ($(awk -v a="$FLASH" -v b="$MICROBIT_FLASH" 'BEGIN { printf "%.0f", 100 * a / b }') %), static RAM $RAM B + 7168 B stack region of $MICROBIT_RAM B"
    # The same from llvm-size, where installed (package llvm-22; readelf is the one relied on).
    local size_tool="" c
    for c in llvm-size-22 llvm-size; do
        if command -v "$c" >/dev/null; then size_tool=$c; break; fi
    done
    if [ -n "$size_tool" ]; then
        echo "($size_tool -A of the same ELFs:)"
        for t in "${TARGETS[@]}"; do
            "$size_tool" -A "$(elf_of "$t")" | awk -v t="$t" '$1 ~ /^\.(vector_table|text|rodata|data|bss|uninit)$/ { print "  " t, $0 }'
        done
    fi
}

# --- QEMU -----------------------------------------------------------------------------------
QEMU_PID=""
QEMU_OUT=""
PTY_FD=""
cleanup() {
    if [ -n "$PTY_FD" ]; then exec {PTY_FD}>&-; PTY_FD=""; fi
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    QEMU_PID=""
    [ -n "$QEMU_OUT" ] && rm -f "$QEMU_OUT"
    QEMU_OUT=""
}
trap 'cleanup; [ -z "$KEYS" ] || rm -rf "$KEYS"' EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# boot MACHINE ELF: QEMU with the board's first UART on a pty; sets PTY (held open, so QEMU
# keeps it connected: see scripts/firmware.sh, hold_pty).
boot() {
    cleanup
    QEMU_OUT=$(mktemp)
    timeout --kill-after=5 "$QEMU_LIFETIME" qemu-system-arm -M "$1" -nographic -monitor none \
        -serial pty "${QEMU_EXTRA[@]}" -kernel "$2" </dev/null >"$QEMU_OUT" 2>&1 &
    QEMU_PID=$!
    local waited=0
    PTY=""
    while [ -z "$PTY" ] && [ "$waited" -lt $((BOOT_TIMEOUT * 10)) ]; do
        kill -0 "$QEMU_PID" 2>/dev/null || die "QEMU ended: $(cat "$QEMU_OUT")"
        PTY=$(sed -nE 's/^char device redirected to (\/dev\/pts\/[0-9]+) \(label serial0\).*/\1/p' "$QEMU_OUT")
        sleep 0.1
        waited=$((waited + 1))
    done
    [ -c "$PTY" ] || die "QEMU named no pty: $(cat "$QEMU_OUT")"
    exec {PTY_FD}<>"$PTY"
    log "booted $1 (QEMU pid $QEMU_PID), UART0 on $PTY"
}

# host-cli over the probe's UART0 (with SCLI_KEY's key file when set: the sealed probe).
SCLI_KEY=""
scli() { timeout "$CMD_TIMEOUT" "$HOST_CLI" --to "serial:$PTY" --timeout 5s ${SCLI_KEY:+--key-file "$SCLI_KEY"} "$@"; }
# nokey_cli: host-cli without a key, on a probe that requires one.
nokey_cli() { timeout "$CMD_TIMEOUT" "$HOST_CLI" --to "serial:$PTY" --timeout 5s "$@"; }

FAILED=0
check() {  # check NAME CMD...
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "ok   $name"
    else
        echo "FAIL $name (exit $rc)"; echo "$out" | tail -n 20 | sed 's/^/     | /'
        FAILED=$((FAILED + 1))
    fi
}
expect_out() {  # expect_out REGEX CMD...: CMD succeeds and prints a line matching REGEX
    local re=$1 out
    shift
    out=$("$@") || return
    grep -Eq "$re" <<<"$out" || { echo "no line matches /$re/ in:"; echo "$out"; return 1; }
}
expect_exit() {  # expect_exit CODE CMD...: CMD exits with CODE
    local want=$1 rc=0
    shift
    "$@" || rc=$?
    [ "$rc" -eq "$want" ] || { echo "exit $rc, wanted $want"; return 1; }
}
# stack_fits: `exec stack` reports a high-water mark at least 256 B short of its region (a lower
# bound: an overflow of the region itself faults, and the probe stops answering).
stack_fits() {
    local out used room
    out=$(scli exec stack) || return
    echo "$out"
    read -r used room < <(sed -nE 's/^stack used ([0-9]+) of ([0-9]+) B$/\1 \2/p' <<<"$out")
    [ -n "$used" ] && [ $((used + 256)) -le "$room" ]
}
# noise BYTES: random line noise into UART0, then the device still answers.
noise() {
    head -c "$1" /dev/urandom >"$WORK/noise.bin"
    timeout "$CMD_TIMEOUT" dd if="$WORK/noise.bin" of="$PTY" bs=256 status=none || return
    scli exec uptime
}
round_trip() {  # round_trip FILE NAME: put, get back, compare
    scli put --overwrite "$1" "$2" || return
    rm -f "$WORK/back"
    scli get "$2" "$WORK/back" || return
    cmp "$1" "$WORK/back"
}

cmd_test() {
    local start=$SECONDS
    cmd_size
    ensure_apt_packages qemu-system-arm || die "cannot install qemu-system-arm"
    log "building host-cli (host toolchain)"
    env -u RUSTC -u RUSTDOC -u RUSTC_BOOTSTRAP cargo build --release -p tether-host --quiet
    WORK=$(mktemp -d)
    trap 'cleanup; rm -rf "$WORK" ${KEYS:+"$KEYS"}' EXIT
    head -c 3000 /dev/urandom >"$WORK/small.bin"
    head -c 5000 /dev/urandom >"$WORK/too-big.bin"
    local t machine name
    for t in "${TARGETS[@]}"; do
        case $t in
            thumbv6m-none-eabi) machine=microbit name=serial-probe-microbit ;;
            *) machine=mps2-an386 name=serial-probe-mps2 ;;
        esac
        echo
        echo "== $t on QEMU -M $machine"
        boot "$machine" "$(elf_of "$t")"
        check "info over UART0" expect_out "\"device\":\"$name\".*\"storage_capacity\":4096" scli --json info
        check "exec uptime" expect_out '^up 0d 00:00:[0-9]{2} \([0-9]+ ms\)$' scli exec uptime
        check "put + get 3000 B, bit-exact" round_trip "$WORK/small.bin" small.bin
        check "put 5000 B into the 4 KiB store: no space, exits 1" expect_exit 1 scli put "$WORK/too-big.bin" too-big.bin
        check "exec stats after the refusal" expect_out '^sessions +open 1' scli exec stats
        check "2 KiB of line noise, then it answers" noise 2048
        check "the stack's high-water mark is 256 B short of its region" stack_fits
        scli exec stack | sed "s/^/  $t: /"
        cleanup
    done
    echo
    echo "== thumbv6m-none-eabi with secure (a throwaway key) on QEMU -M microbit"
    boot microbit "$(elf_of thumbv6m-none-eabi secure)"
    head -c 2000 /dev/urandom >"$WORK/sealed.bin"
    check "no key: info answers, 2.5 KiB store" expect_out '"device":"serial-probe-microbit".*"storage_capacity":2560' nokey_cli --json info
    check "no key: exec refused, exits 6" expect_exit 6 nokey_cli exec uptime
    SCLI_KEY=$KEY_FILE
    check "key: handshake, exec uptime" expect_out '^up 0d 00:00:[0-9]{2} \([0-9]+ ms\)$' scli exec uptime
    check "key: sealed put + get 2000 B, bit-exact" round_trip "$WORK/sealed.bin" sealed.bin
    check "key: put 5000 B into the 2.5 KiB store: no space, exits 1" expect_exit 1 scli put "$WORK/too-big.bin" too-big.bin
    check "key: exec stats, one session on the line" expect_out '^sessions +open 1' scli exec stats
    check "key: 2 KiB of line noise, then it answers" noise 2048
    check "key: the stack's high-water mark is 256 B short of its region" stack_fits
    scli exec stack | sed "s/^/  thumbv6m-none-eabi secure: /"
    SCLI_KEY=""
    cleanup
    local elf flash ram
    elf=$(elf_of thumbv6m-none-eabi secure)
    flash=$(($(section_size "$elf" .vector_table) + $(section_size "$elf" .text) + $(section_size "$elf" .rodata) + $(section_size "$elf" .data)))
    ram=$(($(section_size "$elf" .data) + $(section_size "$elf" .bss)))
    echo "  micro:bit sealed: flash $flash of $MICROBIT_FLASH B, static RAM $ram B + stack region 7168 B of $MICROBIT_RAM B"
    echo
    log "done in $((SECONDS - start)) s: $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# --- cost -------------------------------------------------------------------------------------
# The micro:bit probe under `-icount shift=0,align=off,sleep=on` (1 instruction = 1 ns of the
# virtual clock; SysTick counts the nRF51's 16 MHz, so a tick is 62.5 instructions): the probe's
# `cost` command meters its busy time outside WFI (firmware/serial-probe/src/cost.rs). Its RAM store
# holds 4 KiB (2.5 KiB sealed), so N KiB move as files of 2 KiB (1 KiB sealed), each a host-cli run
# of its own (put --overwrite, get); scripts/cost-report.py takes each run's connection (and, sealed,
# its handshake) out: one per run (host-cli get asks for the size and hash and downloads on one
# connection). Open and sealed (a throwaway key), as scripts/firmware.sh cost.

# cost_case LABEL UNITS RUNS CMD...: reset the meter, run CMD, read the meter; one raw line.
cost_case() {
    local label=$1 units=$2 runs=$3 line
    shift 3
    scli exec cost reset >/dev/null || return
    if [ "$#" -gt 0 ]; then "$@" >/dev/null || { echo "$label: $* failed" >&2; return 1; }; fi
    line=$(scli exec cost | grep '^cost ') || return
    echo "$label $units $(sed -E 's/[a-z_]+=//g; s/^cost //' <<<"$line") $runs"
}

# Many of each in one bracket, the echoes paced (COST_* in scripts/lib.sh).
connections() {
    local i
    for i in $(seq 1 "$1"); do scli ping -c 1 || return; done
}

# files CMD FILE COUNT: COUNT host-cli runs of `put --overwrite FILE cost.bin` or `get cost.bin`.
put_files() {
    local i
    for i in $(seq 1 "$2"); do scli put --overwrite "$1" cost.bin || return; done
}
get_files() {
    local i
    for i in $(seq 1 "$2"); do
        rm -f "$WORK/back"
        scli get cost.bin "$WORK/back" || return
    done
    cmp "$1" "$WORK/back"
}

# cost_variant VARIANT RUNS KIB FILE_BYTES ELF: one boot of the micro:bit under -icount, the floor
# and RUNS rounds of the cases; raw lines on stdout.
cost_variant() {
    local variant=$1 runs=$2 kib=$3 size=$4 elf=$5 files i line
    files=$((kib * 1024 / size))
    head -c "$size" /dev/urandom >"$WORK/file.bin"
    boot microbit "$elf"
    # Ready once it answers a hello: under -icount the sealed probe's boot (32 bytes of the RNG,
    # polled) takes seconds, and a handshake sent meanwhile times out.
    local tries=0
    until nokey_cli info >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 30 ] || die "the probe did not answer a hello"
    done
    line=$(scli exec cost floor) || die "exec cost floor failed"
    echo "$variant floor $(sed -nE 's/^floor //p' <<<"$line" | tr '\n' ' ')"
    for i in $(seq 1 "$runs"); do
        line=$(for _ in $(seq 1 "$COST_EMPTIES"); do cost_case empty 0 1 || exit; done | cost_sum) &&
            echo "$variant $i uart $line" &&
            line=$(cost_case ping1 1 "$COST_CONNECTIONS" connections "$COST_CONNECTIONS") && echo "$variant $i uart $line" &&
            line=$(cost_case pings "$COST_PINGS" 1 scli ping -c "$COST_PINGS" -i "$COST_PING_PAUSE") && echo "$variant $i uart $line" &&
            line=$(cost_case hellos "$COST_PINGS" 1 scli ping --hello -c "$COST_PINGS" -i "$COST_PING_PAUSE") &&
            echo "$variant $i uart $line" &&
            line=$(cost_case put $((files * size)) "$files" put_files "$WORK/file.bin" "$files") &&
            echo "$variant $i uart $line" &&
            line=$(cost_case get $((files * size)) "$files" get_files "$WORK/file.bin" "$files") &&
            echo "$variant $i uart $line" || die "$variant: a case failed (run $i)"
    done
    scli exec stack | sed "s/^/  micro:bit $variant: /" >&2
    cleanup
}

cmd_cost() {
    local runs=1 kib=256 start=$SECONDS
    while [ "$#" -gt 0 ]; do
        case $1 in
            --runs) runs=${2:?--runs N}; shift 2 ;;
            --kib) kib=${2:?--kib N}; shift 2 ;;
            *) die "cost: unknown option $1" ;;
        esac
    done
    ensure_apt_packages "${APT_PACKAGES[@]}" qemu-system-arm || die "cannot install the packages"
    build thumbv6m-none-eabi
    new_key
    build thumbv6m-none-eabi secure
    log "building host-cli (host toolchain)"
    env -u RUSTC -u RUSTDOC -u RUSTC_BOOTSTRAP cargo build --release -p tether-host --quiet
    WORK=$(mktemp -d)
    trap 'cleanup; rm -rf "$WORK" ${KEYS:+"$KEYS"}' EXIT
    local raw=$WORK/cost.raw
    QEMU_EXTRA=(-icount shift=0,align=off,sleep=on)
    QEMU_LIFETIME=$((600 + 120 * kib * runs / 32))
    # Open: 2 KiB files (the 4 KiB store holds the old and the new one of a put --overwrite);
    # sealed: 1 KiB files in its 2.5 KiB store.
    cost_variant open "$runs" "$kib" 2048 "$(elf_of thumbv6m-none-eabi)" | tee "$raw"
    SCLI_KEY=$KEY_FILE
    cost_variant sealed "$runs" "$kib" 1024 "$(elf_of thumbv6m-none-eabi secure)" | tee -a "$raw"
    SCLI_KEY=""
    log "measured in $((SECONDS - start)) s"
    python3 scripts/cost-report.py "micro:bit serial probe (nRF51, Cortex-M0; $kib KiB as files of 2 KiB open, 1 KiB sealed)" 62.5 <"$raw"
}

case ${1:-} in
    size) cmd_size ;;
    test) cmd_test ;;
    cost) shift; cmd_cost "$@" ;;
    *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
