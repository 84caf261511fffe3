#!/usr/bin/env bash
# The MPS2 AN386 firmware (firmware/mps2-an386): build it, boot it in QEMU, test it end to end,
# check its footprint, measure its throughput.
#
#   bash scripts/firmware.sh build [--store-kib N] [--secure]  # release ELF (default store 2048 KiB)
#   bash scripts/firmware.sh run   [--store-kib N] [--secure]  # boot in QEMU on the console (Ctrl-A X quits)
#   bash scripts/firmware.sh test                    # end-to-end test against the emulated board,
#                                                    # then the board built with a throwaway key,
#                                                    # then the serial-only probe (scripts/serial-probe.sh test)
#   bash scripts/firmware.sh test-secure             # only the keyed board's part of `test`
#   bash scripts/firmware.sh test-update             # only the firmware update part of `test`: the boot stage,
#                                                    # A/B slots, trial, revert, watchdog, resume, power cuts
#                                                    # (scripts/firmware-update.sh)
#   bash scripts/firmware.sh size                    # flash / static RAM vs budget (fails if over),
#                                                    # also with feature `secure` (secure sessions), with
#                                                    # `secure` and `update`, and the boot stage (<= 8 KiB),
#                                                    # and without DHCP (feature `dhcp`, on by default),
#                                                    # and reports the cost of feature `mdns` (off)
#   bash scripts/firmware.sh bench [--runs N]        # raw echo vs host-cli put/get: 1 MiB over TCP, 256 KiB over UART0
#   bash scripts/firmware.sh bench-secure [--runs N] # handshake cost on the keyed board (also under -icount)
#   bash scripts/firmware.sh bench-update [--runs N] # firmware update time: Ethernet, UART0, sim UART at 115200/921600
#   bash scripts/firmware.sh crypto-cost             # flash of X25519, Ed25519 verification, both (thumbv7em, thumbv6m)
#   bash scripts/firmware.sh cost [--runs N]         # instructions per byte, echo, hello, handshake under -icount,
#                                                    # open and keyed, TCP and UART0, against the floor (default 1 run)
#   bash scripts/firmware.sh profile [--secure]      # where they go: per-function and per-category instruction
#                                                    # counts of 101 echoes, a 32 KiB put and get over TCP
#
# --secure builds with feature `secure`: the board then requires the key in the file named by
# TETHER_FIRMWARE_KEY_FILE (outside the repository; the build fails without one). `test`, `size`
# and `bench-secure` make throwaway keys of their own. docs/PORTING.md, "Provisioning a key".
#
# Toolchain: Debian's (rustc-web, cargo-web, rust-web-src, lld-22) with -Zbuild-std=core, as in
# scripts/embedded-build.sh: RUSTC/RUSTDOC/RUSTC_BOOTSTRAP go on the Debian cargo's command
# line only, never exported, and the output goes to target-firmware/ (gitignored). host-cli is
# built with the host toolchain (rustup's cargo) as usual. Missing apt packages, QEMU included,
# are installed first (as root, or through sudo).
#
# Network: QEMU's user-mode network forwards free 127.0.0.1 ports chosen at run time to the
# board's 10.0.2.15 (TCP 7070 framed, UDP 7071 framed; plain TCP 8080 upper-echo, 8081 and 8082
# remote command, UDP 9000 time, 9001 chat). No other address is contacted. The board takes its
# address from QEMU's DHCP server (10.0.2.15); `test` also boots it once with its NIC on a socket
# netdev listening on a free 127.0.0.1 port that nothing connects to, where no DHCP server answers,
# to see the static fallback, and once (the build with feature `mdns`) with tests/peers/qemu_mdns.py
# connected to that port as the other end of the cable, to see its mDNS announcements and answers. QEMU is killed on
# every exit path (trap), and runs under `timeout` too.
#
# Serial: the board's UART0 (Tether over serial) is QEMU's first `-serial`, a pseudo-terminal
# (`-serial pty`; QEMU names it on stderr, "char device redirected to /dev/pts/N"); host-cli
# reaches it as `--to serial:/dev/pts/N`. The console is UART1, the second `-serial` (a log file
# in `test`, stdio in `run`). A pty needs no bridge and no port, and QEMU already sets it raw.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

FW_DIR=firmware/mps2-an386
TARGET=thumbv7em-none-eabihf
TARGET_DIR=${TETHER_FIRMWARE_TARGET_DIR:-$ROOT/target-firmware}
ELF_BUILT=$TARGET_DIR/$TARGET/release/tether-fw
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-22 qemu-system-arm binutils python3)
HOST_CLI=$ROOT/target/release/host-cli
FLOOD=$ROOT/target/release/flood
# The key file of `secure` builds (build.rs reads it); the tests replace it with throwaway keys.
FW_KEY_FILE=${TETHER_FIRMWARE_KEY_FILE:-}
# Extra QEMU options for `boot` (bench-secure: -icount).
QEMU_EXTRA=()
# Firmware update (scripts/firmware-update.sh): the `-kernel` of `boot` when set (the boot
# stage), and the PSRAM's file backend.
QEMU_KERNEL=""
QEMU_MEM=()

DEFAULT_STORE_KIB=2048
SMALL_STORE_KIB=32
# The keyed board of `test`: room for two 64 KiB files.
SECURE_STORE_KIB=256
# Footprint budget (release, opt-level "s", fat LTO). 97 KiB since issue 17 and 21 (the policy
# table, the engine's own limits and eviction ranks, the services split: 95.0 → 96.1 KiB; see
# docs/BENCHMARKS.md "Footprint").
# That budget is for the board without DHCP (`--no-default-features --features qemu`: a static
# address): `size` checks that build against it.
FLASH_BUDGET=${TETHER_FW_FLASH_BUDGET:-$((97 * 1024))}
# DHCP (feature `dhcp`, on by default: smoltcp's dhcpv4 socket and tether-core's fallback rule)
# measured 7.3 KiB of flash and 336 B of static RAM (one more socket slot): the open default builds
# are checked against the budgets plus these allowances (docs/BENCHMARKS.md "Footprint"); the
# keyed ones, which leave out the plain ports that act on the device, against the budgets alone.
DHCP_FLASH_ALLOWANCE=$((8 * 1024))
DHCP_RAM_ALLOWANCE=512
# With feature `secure` (X25519, ChaCha20-Poly1305, HKDF and the `noise` self-test command).
SECURE_FLASH_BUDGET=${TETHER_FW_SECURE_FLASH_BUDGET:-$((128 * 1024))}
RAM_BUDGET=${TETHER_FW_RAM_BUDGET:-$((48 * 1024))}
# What `footprint` checks static RAM against (the allowance added for builds with DHCP).
RAM_LIMIT=$RAM_BUDGET
# Stack budget (`exec stack`, the high-water mark of the painted stack; firmware/shared/stack.rs),
# checked by `test` with STACK_MARGIN to spare: at boot (start-up builds the server, its sockets and
# the drivers on the stack before moving them into their statics), and in operation, measured
# from an `exec stack reset` through the deepest paths the tests take (on the keyed board the
# handshakes, the `noise` self-test, sealed put and get over TCP and UART0).
STACK_BOOT_BUDGET=${TETHER_FW_STACK_BOOT_BUDGET:-$((36 * 1024))}
STACK_RUN_BUDGET=${TETHER_FW_STACK_RUN_BUDGET:-$((16 * 1024))}
STACK_MARGIN=2048
# Bounds on waiting.
BOOT_TIMEOUT=30      # s until the firmware prints "tether-fw ready"
QEMU_LIFETIME=600    # s: hard limit on any one QEMU run (the `timeout` it runs under)
CMD_TIMEOUT=30       # s: any one host-cli or echo command
TUTORIAL_TIMEOUT=120 # s: any one tutorial client (1 MiB through the echo included)
SERIAL_CMD_TIMEOUT=180  # s: any one host-cli command over the UART (a 256 KiB put takes 15-60 s: QEMU hands
                        # the UART one byte per main-loop turn, 4-20 KB/s depending on the host's load)

log() { printf '[firmware] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/firmware-update.sh
source scripts/firmware-update.sh

# --- packages and tools -------------------------------------------------------------------


# rustup's cargo for host-cli: never with the Debian variables.
host_cargo() {
    local c=cargo
    if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then c=$HOME/.cargo/bin/cargo; fi
    env -u RUSTC -u RUSTDOC -u RUSTC_BOOTSTRAP "$c" "$@"
}

# --- build --------------------------------------------------------------------------------
# elf_for KIB [FEATURES]: where the build with that store (and extra cargo features) is kept.
elf_for() { echo "$TARGET_DIR/tether-fw-${1}k${2:+-$2}.elf"; }

# fw_feature_args FEATURES: cargo's feature arguments for the firmware with FEATURES (extra cargo
# features, comma-separated) beside its defaults. `static` in FEATURES: the board without DHCP.
# A keyed build (`secure`) leaves out the plain ports that act on the device (feature
# `plain-actors`): it never serves them, and without the feature it does not carry their code.
fw_feature_args() {
    local features=$1 wanted base=qemu
    wanted=$(sed -E 's/(^|,)static(,|$)/\1\2/; s/,+/,/g; s/^,|,$//g' <<<"$features")
    if [[ ",$features," != *,static,* && ",$features," != *,secure,* ]]; then
        echo ${wanted:+--features "$wanted"}
        return
    fi
    [[ ",$features," == *,static,* ]] || base+=,dhcp
    [[ ",$features," == *,secure,* ]] || base+=,plain-actors
    echo --no-default-features --features "$base${wanted:+,$wanted}"
}

# build_fw KIB [FEATURES]: builds the firmware with a KIB KiB RAM store (and the extra cargo
# features, comma-separated, as fw_feature_args takes them); copies the ELF to elf_for KIB
# FEATURES.
build_fw() {
    local kib=$1 features=${2:-} start=$SECONDS args
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    log "building firmware (store $kib KiB${features:+, features $features}) with $("$DEB_CARGO" --version)"
    read -ra args <<<"$(fw_feature_args "$features")"
    (cd "$FW_DIR" && TETHER_FW_STORE_KIB=$kib TETHER_FIRMWARE_KEY_FILE=$FW_KEY_FILE deb_cargo build --release --locked --target "$TARGET" \
        -Zbuild-std=core --target-dir "$TARGET_DIR" "${args[@]}")
    cp "$ELF_BUILT" "$(elf_for "$kib" "$features")"
    log "built $(elf_for "$kib" "$features") in $((SECONDS - start)) s"
}

# make_key: scripts/lib.sh.

build_host_cli() {
    local start=$SECONDS
    log "building host-cli and the keyless flood (host toolchain)"
    host_cargo build --release -p tether-host -p tether-tests --bin host-cli --bin flood --quiet
    [ -x "$HOST_CLI" ] || die "no $HOST_CLI after the build"
    [ -x "$FLOOD" ] || die "no $FLOOD after the build"
    log "host-cli ready in $((SECONDS - start)) s"
}

# --- footprint ----------------------------------------------------------------------------
# section_size: scripts/lib.sh.

# store_size ELF: size of the RAM store static (symbol ...app5STORE...), from readelf -s
# (decimal, or hex with 0x for large sizes).
store_size() {
    local size
    size=$(readelf -sW "$1" | awk '$8 ~ /app5STORE/ { print $3; exit }')
    echo $((${size:-0}))
}

kib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }

# footprint KIB [FEATURES [FLASH_BUDGET]]: prints the footprint of that build; returns 1 if over
# budget.
footprint() {
    local elf vt text rodata data bss store flash ram ok=0 budget=${3:-$FLASH_BUDGET}
    elf=$(elf_for "$1" "${2:-}")
    vt=$(section_size "$elf" .vector_table)
    text=$(section_size "$elf" .text)
    rodata=$(section_size "$elf" .rodata)
    data=$(section_size "$elf" .data)
    bss=$(section_size "$elf" .bss)
    store=$(store_size "$elf")
    [ "$store" -gt 0 ] || store=$(($1 * 1024))
    # Flash holds the vector table, code, constants and the initial image of .data.
    flash=$((vt + text + rodata + data))
    ram=$((data + bss - store))
    printf '%-10s %6s KiB store | flash %7s B (%5s KiB: vectors %s, .text %s, .rodata %s, .data %s) | static RAM %6s B (%5s KiB: .data %s + .bss %s - store %s) | stack room %s KiB\n' \
        "${1}k${2:+ +$2}" "$1" "$flash" "$(kib "$flash")" "$vt" "$text" "$rodata" "$data" "$ram" "$(kib "$ram")" "$data" "$bss" "$store" \
        "$(kib $((4 * 1024 * 1024 - data - bss)))"
    FLASH=$flash
    RAM=$ram
    if [ "$flash" -gt "$budget" ]; then
        log "OVER BUDGET: flash $flash B > $budget B"
        ok=1
    fi
    if [ "$ram" -gt "$RAM_LIMIT" ]; then
        log "OVER BUDGET: static RAM $ram B > $RAM_LIMIT B"
        ok=1
    fi
    return $ok
}

cmd_size() {
    ensure_apt_packages python3 || die "cannot install python3"
    build_fw "$SMALL_STORE_KIB"
    build_fw "$DEFAULT_STORE_KIB"
    # Without DHCP (a static address): the board the plain budgets are for.
    build_fw "$SMALL_STORE_KIB" static
    # With mDNS (off by default: reported, not budgeted).
    build_fw "$SMALL_STORE_KIB" mdns
    # The keyed build (what a provisioned board runs) with a throwaway key.
    local keys
    keys=$(mktemp -d)
    make_key "$keys/size.key"
    FW_KEY_FILE=$keys/size.key build_fw "$SMALL_STORE_KIB" secure
    # The keyed build with the update service (run from slot 0, a throwaway image key), and the
    # boot stage (scripts/firmware-update.sh).
    build_host_cli
    UPDATE_KEY=$keys/fw.key
    "$HOST_CLI" fw keygen "$UPDATE_KEY" >/dev/null
    FW_KEY_FILE=$keys/size.key build_slot 0 secure,update
    cp "$(slot_elf_for 0 secure,update)" "$(elf_for "$SMALL_STORE_KIB" secure,update)"
    build_boot
    rm -rf "$keys"
    echo
    echo "firmware footprint (release, opt-level s, fat LTO; budget: flash <= $FLASH_BUDGET B, with secure <= $SECURE_FLASH_BUDGET B, with secure and update <= $UPDATE_FLASH_BUDGET B; static RAM <= $RAM_BUDGET B without the store; open boards with DHCP, the default, $DHCP_FLASH_ALLOWANCE B flash and $DHCP_RAM_ALLOWANCE B RAM more)"
    local rc=0 plain plain_ram static static_ram
    RAM_LIMIT=$((RAM_BUDGET + DHCP_RAM_ALLOWANCE))
    footprint "$SMALL_STORE_KIB" "" $((FLASH_BUDGET + DHCP_FLASH_ALLOWANCE)) || rc=1
    plain=$FLASH
    plain_ram=$RAM
    footprint "$DEFAULT_STORE_KIB" "" $((FLASH_BUDGET + DHCP_FLASH_ALLOWANCE)) || rc=1
    # The keyed builds leave out the plain ports that act on the device (fw_feature_args): with
    # DHCP they fit the budgets of the board without it, no allowance.
    RAM_LIMIT=$RAM_BUDGET
    footprint "$SMALL_STORE_KIB" secure "$SECURE_FLASH_BUDGET" || rc=1
    echo "the keyed build (secure sessions in, the plain command and chat ports out) takes $((FLASH - plain)) B ($(kib $((FLASH - plain))) KiB) of flash more than the open one"
    local keyed=$FLASH keyed_ram=$RAM
    footprint "$SMALL_STORE_KIB" secure,update "$UPDATE_FLASH_BUDGET" || rc=1
    echo "the update service (with Ed25519 verification) costs $((FLASH - keyed)) B ($(kib $((FLASH - keyed))) KiB) of flash, $((RAM - keyed_ram)) B of static RAM"
    ed25519_sharing "$(elf_for "$SMALL_STORE_KIB" secure)" "$(elf_for "$SMALL_STORE_KIB" secure,update)"
    boot_footprint || rc=1
    RAM_LIMIT=$RAM_BUDGET
    footprint "$SMALL_STORE_KIB" static || rc=1
    static=$FLASH
    static_ram=$RAM
    echo "DHCP costs $((plain - static)) B ($(kib $((plain - static))) KiB) of flash and $((plain_ram - static_ram)) B of static RAM"
    RAM_LIMIT=$((1 << 30))
    footprint "$SMALL_STORE_KIB" mdns $((1 << 30)) || true
    echo "mDNS (feature mdns, with discover; off by default, not budgeted) costs $((FLASH - plain)) B ($(kib $((FLASH - plain))) KiB) of flash and $((RAM - plain_ram)) B of static RAM"
    RAM_LIMIT=$RAM_BUDGET
    echo
    echo "largest statics in RAM (${DEFAULT_STORE_KIB}k build, bytes):"
    readelf -sW "$(elf_for "$DEFAULT_STORE_KIB")" | awk '$4 == "OBJECT" && $2 ~ /^2/ { print $3, $8 }' |
        while read -r size name; do echo "$((size)) $name"; done | sort -rn | head -n 10 |
        sed -E 's/_RNvNtCs[0-9A-Za-z_]+_9tether_fw[0-9]+([a-z_]+)[0-9]+/\1::/; s/^/  /'
    if [ "$rc" -eq 0 ]; then log "footprint within budget"; else log "footprint OVER budget"; fi
    return $rc
}

# --- QEMU -----------------------------------------------------------------------------------
QEMU_PID=""
QEMU_DIR=""
PTY_FD=""
# hold_pty: keeps UART0's pty open for the whole run. QEMU treats a pty nobody has open as
# disconnected: it discards what the board sends and looks for a reader only once a second, so
# every host-cli run would wait up to 1 s first. Held open, it stays connected; the board only
# ever answers requests, so nothing piles up unread in between.
hold_pty() {
    exec {PTY_FD}<>"$SERIAL_PTY"
}
cleanup() {
    if [ -n "$PTY_FD" ]; then
        exec {PTY_FD}>&-
        PTY_FD=""
    fi
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$QEMU_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    QEMU_PID=""
    [ -n "$QEMU_DIR" ] && rm -rf "$QEMU_DIR"
    QEMU_DIR=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# A port nobody on this machine listens on (TCP and UDP tables), in 20000-59999.
port_in_use() {
    local hex
    hex=$(printf ':%04X ' "$1")
    cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null | awk '{ print $2 }' | grep -q "$hex"
}
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        port_in_use "$p" || { echo "$p"; return; }
    done
}

# boot KIB [FEATURES]: starts QEMU with that build in the background, waits for "tether-fw ready".
# Sets TCP_PORT, UDP_PORT, PLAIN_PORT, COMMAND_PORT, COMMAND_JSON_PORT, TIME_PORT, CHAT_PORT,
# SERIAL_LOG (the console), SERIAL_PTY (UART0).
boot() {
    local elf attempt waited
    elf=${QEMU_KERNEL:-$(elf_for "$1" "${2:-}")}
    [ -f "$elf" ] || die "$elf missing: build first"
    cleanup
    QEMU_DIR=$(mktemp -d)
    SERIAL_LOG=$QEMU_DIR/serial.log
    for attempt in 1 2 3 4 5; do
        TCP_PORT=$(free_port)
        UDP_PORT=$(free_port)
        PLAIN_PORT=$(free_port)
        COMMAND_PORT=$(free_port)
        COMMAND_JSON_PORT=$(free_port)
        TIME_PORT=$(free_port)
        CHAT_PORT=$(free_port)
        : >"$SERIAL_LOG"
        timeout --kill-after=5 "$QEMU_LIFETIME" qemu-system-arm -M mps2-an386 -nographic -monitor none \
            -serial pty -serial "file:$SERIAL_LOG" -semihosting-config enable=on,target=native \
            -nic "user,model=lan9118,hostfwd=tcp:127.0.0.1:$TCP_PORT-:7070,hostfwd=udp:127.0.0.1:$UDP_PORT-:7071,hostfwd=tcp:127.0.0.1:$PLAIN_PORT-:8080,hostfwd=tcp:127.0.0.1:$COMMAND_PORT-:8081,hostfwd=tcp:127.0.0.1:$COMMAND_JSON_PORT-:8082,hostfwd=udp:127.0.0.1:$TIME_PORT-:9000,hostfwd=udp:127.0.0.1:$CHAT_PORT-:9001" \
            "${QEMU_EXTRA[@]}" "${QEMU_MEM[@]}" -kernel "$elf" </dev/null >"$QEMU_DIR/qemu.out" 2>&1 &
        QEMU_PID=$!
        waited=0
        while [ "$waited" -lt $((BOOT_TIMEOUT * 10)) ]; do
            if grep -q 'tether-fw ready' "$SERIAL_LOG" 2>/dev/null; then
                SERIAL_PTY=$(sed -nE 's/^char device redirected to (\/dev\/pts\/[0-9]+) \(label serial0\).*/\1/p' "$QEMU_DIR/qemu.out")
                [ -c "$SERIAL_PTY" ] || die "QEMU named no pty for UART0: $(cat "$QEMU_DIR/qemu.out")"
                hold_pty
                wait_for_address || die "no address from DHCP within $BOOT_TIMEOUT s: $(cat "$SERIAL_LOG")"
                log "booted ${1}k build: 127.0.0.1 tcp $TCP_PORT, udp $UDP_PORT, plain: echo $PLAIN_PORT command $COMMAND_PORT json $COMMAND_JSON_PORT time $TIME_PORT chat $CHAT_PORT, uart0 $SERIAL_PTY (QEMU pid $QEMU_PID)"
                sed 's/^/  serial| /' "$SERIAL_LOG" >&2
                return 0
            fi
            kill -0 "$QEMU_PID" 2>/dev/null || break
            sleep 0.1
            waited=$((waited + 1))
        done
        if grep -q 'Could not set up host forwarding' "$QEMU_DIR/qemu.out" 2>/dev/null; then
            log "a forwarded port was taken (attempt $attempt); choosing others"
            cleanup
            QEMU_DIR=$(mktemp -d)
            SERIAL_LOG=$QEMU_DIR/serial.log
            continue
        fi
        log "QEMU output:"; sed 's/^/  qemu| /' "$QEMU_DIR/qemu.out" >&2 || true
        log "serial:"; sed 's/^/  serial| /' "$SERIAL_LOG" >&2 || true
        die "the firmware did not report ready within $BOOT_TIMEOUT s"
    done
    die "could not find free ports for QEMU"
}

# wait_for_address: on a board that takes its address from DHCP ("ip from DHCP" on the console),
# waits for its `dhcp: ` line (the lease from QEMU's user network, or the fallback); the forwarded
# ports reach it only then. Returns 1 after BOOT_TIMEOUT s without one.
wait_for_address() {
    grep -q '^ip from DHCP' "$SERIAL_LOG" || return 0
    local waited=0
    while [ "$waited" -lt $((BOOT_TIMEOUT * 10)) ]; do
        grep -q '^dhcp: ' "$SERIAL_LOG" && return 0
        sleep 0.1
        waited=$((waited + 1))
    done
    return 1
}

# dhcp_leased: the console says the board leased 10.0.2.15/24 (QEMU's user network hands out its
# first address; the static fallback would say "fallback") with the router 10.0.2.2.
dhcp_leased() {
    tr -d '\r' <"$SERIAL_LOG" | grep '^dhcp: ' || { echo "no dhcp: line on the console"; return 1; }
    tr -d '\r' <"$SERIAL_LOG" | grep -qx 'dhcp: leased 10\.0\.2\.15/24 gateway 10\.0\.2\.2'
}

# on_socket ELF PORT DIR: boots ELF in the background with its NIC on a socket netdev listening
# on 127.0.0.1:PORT (a cable whose other end is whoever connects there, or nobody), its console
# in DIR/serial.log; sets SOCKET_QEMU_PID.
on_socket() {
    timeout --kill-after=5 60 qemu-system-arm -M mps2-an386 -nographic -monitor none \
        -serial null -serial "file:$3/serial.log" -semihosting-config enable=on,target=native \
        -nic "socket,model=lan9118,listen=127.0.0.1:$2" -kernel "$1" </dev/null >"$3/qemu.out" 2>&1 &
    SOCKET_QEMU_PID=$!
}

# dhcp_fallback KIB: boots that build with its NIC on a socket netdev that listens on a free
# 127.0.0.1 port nobody connects to (a cable to nowhere: the board's DHCP requests go unanswered),
# and waits for the console to report the static fallback after the board's 10 s.
dhcp_fallback() {
    local elf dir log port waited=0 pid rc=1 t0 ms
    elf=$(elf_for "$1")
    dir=$(mktemp -d)
    log=$dir/serial.log
    port=$(free_port)
    : >"$log"
    t0=$(date +%s%N)
    on_socket "$elf" "$port" "$dir"
    pid=$SOCKET_QEMU_PID
    while [ "$waited" -lt 300 ]; do
        if grep -q '^dhcp: ' "$log"; then
            rc=0
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        waited=$((waited + 1))
    done
    ms=$((($(date +%s%N) - t0) / 1000000))
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    tr -d '\r' <"$log" | grep -E '^(ip from|dhcp: )' || cat "$dir/qemu.out"
    if [ "$rc" -eq 0 ]; then
        tr -d '\r' <"$log" | grep -qx 'dhcp: no lease: fallback address 10\.0\.2\.15/24 gateway 10\.0\.2\.2' || rc=1
        # Wall time from QEMU's start (the board's clock follows the host's): at least the 10 s,
        # less a little for the polling's granularity.
        echo "after $ms ms"
        [ "$ms" -ge 9500 ] || { echo "the fallback came before the 10 s the board waits"; rc=1; }
    fi
    rm -rf "$dir"
    return "$rc"
}

# mdns_check KIB: boots the build with feature `mdns` on a socket netdev (as dhcp_fallback), with
# tests/peers/qemu_mdns.py as the other end of the cable: once the board has its fallback address
# it must announce itself twice and answer a query (the script says what it saw).
mdns_check() {
    local elf dir port pid rc=0
    elf=$(elf_for "$1" mdns)
    dir=$(mktemp -d)
    port=$(free_port)
    on_socket "$elf" "$port" "$dir"
    pid=$SOCKET_QEMU_PID
    timeout 40 python3 tests/peers/qemu_mdns.py "$port" 10.0.2.15 30 || rc=$?
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    tr -d '\r' <"$dir/serial.log" | grep -E '^(mdns|dhcp): ' || true
    rm -rf "$dir"
    return "$rc"
}

cli() {
    timeout "$CMD_TIMEOUT" "$HOST_CLI" --to "127.0.0.1:$TCP_PORT" --udp-port "$UDP_PORT" --timeout 10s "$@"
}

# host-cli over the board's UART0 (its pty).
scli() {
    timeout "$SERIAL_CMD_TIMEOUT" "$HOST_CLI" --to "serial:$SERIAL_PTY" --timeout 10s "$@"
}

# --- test -----------------------------------------------------------------------------------
# serial_noise BYTES: BYTES of random line noise into UART0 (Tether mode), then the board still
# answers there and over TCP.
serial_noise() {
    head -c "$1" /dev/urandom >"$WORK/noise.bin"
    timeout "$CMD_TIMEOUT" dd if="$WORK/noise.bin" of="$SERIAL_PTY" bs=4096 status=none || return
    cli exec uptime || return
    scli info
}

# serial_vanish: a serial get whose reader is killed mid-transfer. The board's output then
# backs up (nobody reads the pty; QEMU holds the UART's TX byte), yet TCP is served meanwhile,
# and the next serial client is answered once the stale stream has drained into it.
serial_vanish() {
    local pid
    # host-cli itself in the background (not under `timeout`, whose death would leave host-cli
    # running and holding the port); the kill below bounds it.
    "$HOST_CLI" --to "serial:$SERIAL_PTY" --timeout 10s get both-tcp.bin "$WORK/vanish.bin" \
        >/dev/null 2>&1 &
    pid=$!
    sleep 0.3
    kill -9 "$pid" 2>/dev/null || true
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    # 137: killed mid-transfer (1 MiB takes seconds over the UART), the case under test.
    [ "$rc" -eq 137 ] || { echo "the get ended on its own (exit $rc) before it was killed"; return 1; }
    cli exec uptime || return
    scli exec uptime
}

PASSED=0
FAILED=0
FAILURES=()
check() {  # check NAME CMD...: runs CMD, records the result
    local name=$1; shift
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    record "$name" "$rc" "$out"
}

# record NAME RC OUTPUT: counts a case, says ok or FAIL (with the end of OUTPUT, the console's
# blank lines left out).
record() {
    if [ "$2" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        printf '  ok    %s\n' "$1"
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$1")
        printf '  FAIL  %s (exit %s)\n' "$1" "$2"
        printf '%s\n' "$3" | grep -v '^  serial| *$' | tail -n 20 | sed 's/^/        /'
    fi
}

expect_out() {  # expect_out REGEX CMD...: CMD succeeds and its output matches REGEX
    local re=$1; shift
    local out
    out=$("$@") || return
    printf '%s\n' "$out"
    grep -Eq -- "$re" <<<"$out" || { echo "output does not match /$re/"; return 1; }
}

expect_exit() {  # expect_exit CODE CMD...: CMD exits with CODE
    local want=$1; shift
    local rc=0
    "$@" || rc=$?
    [ "$rc" -eq "$want" ] || { echo "exit $rc, wanted $want"; return 1; }
}

# Plain upper-echo through bash's /dev/tcp: one line out, the upper-cased line back.
plain_echo() {
    timeout "$CMD_TIMEOUT" bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 3
        printf "hello, tether board %s\n" "$2" >&3
        IFS= read -r -t 10 line <&3 || { echo "no answer"; exit 1; }
        exec 3<&- 3>&-
        echo "$line"
        [ "$line" = "HELLO, TETHER BOARD $2" ]' _ "$PLAIN_PORT" "$RANDOM"
}

# uart_echo BYTES: with UART0 in raw echo mode (`exec uart echo`), sends BYTES random bytes
# through its pty while reading the echo back (concurrently), checks them bit for bit, prints the
# seconds it took. Bounded by SERIAL_CMD_TIMEOUT (QEMU feeds the UART slower under load) and a 20 s silence limit.
uart_echo() {
    timeout "$SERIAL_CMD_TIMEOUT" python3 - "$SERIAL_PTY" "$1" <<'PY'
import os, select, sys, termios, threading, time, tty
path, n = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
tty.setraw(fd)
termios.tcflush(fd, termios.TCIOFLUSH)
data = os.urandom(n)
def send():
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:4096]):]
got = bytearray()
t0 = time.perf_counter()
tx = threading.Thread(target=send, daemon=True)
tx.start()
while len(got) < n:
    ready, _, _ = select.select([fd], [], [], 20)
    if not ready:
        sys.exit("echo: silence after %d of %d bytes" % (len(got), n))
    got += os.read(fd, 65536)
dt = time.perf_counter() - t0
tx.join(5)
if bytes(got[:n]) != data or len(got) != n:
    bad = next((i for i in range(min(n, len(got))) if got[i] != data[i]), min(n, len(got)))
    sys.exit("echo differs from byte %d (%d bytes back)" % (bad, len(got)))
print(f"{dt:.4f}")
PY
}

uart_echo_check() {  # uart_echo_check BYTES: echo mode on, BYTES bit-exact, Tether mode back
    cli exec uart echo >/dev/null || return
    local rc=0
    uart_echo "$1" || rc=$?
    cli exec uart tether >/dev/null || return
    [ "$rc" -eq 0 ] && echo "$1 bytes echoed bit-exact over UART0"
    return "$rc"
}

time_year() { cli time set >/dev/null && cli time %Y; }

# tutorial CLIENT PORT [ARGS...]: one of the socket tutorials' client programs (tests/tutorial,
# Python standard library) against the board; every case must pass.
tutorial() {
    local script=$1 port=$2
    shift 2
    timeout "$TUTORIAL_TIMEOUT" python3 "tests/tutorial/$script" 127.0.0.1 "$port" "$@" | grep -Ev '^[0-9]+$' | tail -n 40
    return "${PIPESTATUS[0]}"
}

round_trip_via() {  # round_trip_via CLIENT LOCAL NAME: put, get back, compare bit for bit
    local client=$1 src=$2 name=$3 back
    back=$WORK/$name.back
    rm -f "$back"
    "$client" put --overwrite "$src" "$name" || return
    "$client" get "$name" "$back" || return
    cmp "$src" "$back" && echo "$(stat -c %s "$src") bytes identical"
}
round_trip() { round_trip_via cli "$@"; }

# Both transports at once: a 256 KiB round trip over UART0 while a 1 MiB one runs over TCP.
both_at_once() {
    local serial_rc=0 tcp_rc=0 pid
    round_trip_via scli "$WORK/quarter-mib.bin" both-serial.bin >"$WORK/both-serial.out" 2>&1 &
    pid=$!
    round_trip_via cli "$WORK/one-mib.bin" both-tcp.bin || tcp_rc=$?
    wait "$pid" || serial_rc=$?
    cat "$WORK/both-serial.out"
    [ "$serial_rc" -eq 0 ] && [ "$tcp_rc" -eq 0 ]
}

probe_test() { bash scripts/serial-probe.sh test >"$WORK/probe.log" 2>&1; }

# stack_within CLIENT BUDGET [reset]: `exec stack` through CLIENT reports a high-water mark at
# least STACK_MARGIN short of BUDGET; with `reset`, then paints the stack again for the next check.
stack_within() {
    local out used
    rm -f "$WORK/stack.last"
    out=$("$1" exec stack) || return
    echo "$out"
    echo "$out" >"$WORK/stack.last"
    used=$(sed -nE 's/^stack used ([0-9]+) of [0-9]+ B$/\1/p' <<<"$out")
    [ -n "$used" ] || { echo "no high-water mark in the answer"; return 1; }
    [ $((used + STACK_MARGIN)) -le "$2" ] || { echo "$used B + $STACK_MARGIN B margin > budget $2 B"; return 1; }
    if [ "${3:-}" = reset ]; then "$1" exec stack reset >/dev/null || return; fi
    echo "within $2 B with $((${2} - used)) B to spare"
}

# --- the keyed board ---------------------------------------------------------------------
# host-cli with the board's key, over TCP and over UART0.
kcli() { cli --key-file "$KEYS/board.key" "$@"; }
kscli() { scli --key-file "$KEYS/board.key" "$@"; }

expect_fail() {  # expect_fail CMD...: CMD fails (any non-zero exit), its output is shown
    local rc=0
    "$@" || rc=$?
    [ "$rc" -ne 0 ] || { echo "succeeded, wanted a refusal"; return 1; }
    echo "refused (exit $rc)"
}

# refused_no_key CMD...: CMD exits 6 (authentication) saying the device "requires its key" (not
# some other refusal): host-cli sees `key_required` in the hello and stops before the request.
refused_no_key() {
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    printf '%s\n' "$out"
    [ "$rc" -eq 6 ] && grep -q 'requires its key' <<<"$out" || { echo "exit $rc, wanted 6 and 'requires its key'"; return 1; }
}

# no_key_refused CLIENT: without the key, `info` (the unauthenticated hello) answers, and
# `exec led on` and `put` are refused.
no_key_refused() {
    local client=$1
    "$client" info || return
    refused_no_key "$client" exec led on || return
    refused_no_key "$client" put "$WORK/secure.bin" nokey.bin
}

# unchanged: after the refusals, the store holds nothing and the LED is still off (checked with
# the key, over TCP).
unchanged() {
    local out
    out=$(kcli --json info) || return
    printf '%s
' "$out"
    grep -q '"storage_used":0[,}]' <<<"$out" || { echo "the store is not empty"; return 1; }
    out=$(kcli exec led status) || return
    printf '%s
' "$out"
    [ "$out" = "led off" ] || { echo "the LED changed"; return 1; }
}

# plain_actors_closed: the plain remote-command port answers nothing to `led on` (the board
# resets the connection QEMU forwards), and a chat datagram gets no reply.
plain_actors_closed() {
    timeout "$CMD_TIMEOUT" python3 - "$COMMAND_PORT" "$CHAT_PORT" <<'PY'
import socket, sys
command, chat = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", command), timeout=10)
try:
    s.sendall(b"led on")
    got = s.recv(4096)
except (ConnectionResetError, BrokenPipeError):
    got = b""
if got:
    sys.exit("the command port answered: %r" % got)
print("command port: closed without an answer")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
u.sendto(b"hello board", ("127.0.0.1", chat))
try:
    sys.exit("the chat port answered: %r" % (u.recvfrom(1024)[0],))
except socket.timeout:
    print("chat port: no reply in 2 s")
PY
}

# sealed_serial CMD...: CMD with the key over UART0. The line's one session outlives its clients:
# the device takes a new client's handshake in the clear as the start of a new session
# (PROTOCOL.md §16.3), so one sealed client may follow another, or an unkeyed one, directly.
sealed_serial() { kscli "$@"; }

# sealed_serial_put LOCAL NAME: put with the key over UART0; read back with the key over TCP.
sealed_serial_put() {
    local back=$WORK/$2.tcp-back
    rm -f "$back"
    sealed_serial put --overwrite "$1" "$2" || return
    kcli get "$2" "$back" || return
    cmp "$1" "$back" && echo "$(stat -c %s "$1") bytes identical"
}

# sealed_serial_get NAME LOCAL: get with the key over UART0, compared with LOCAL.
sealed_serial_get() {
    local back=$WORK/$1.serial-back
    rm -f "$back"
    sealed_serial get "$1" "$back" || return
    cmp "$2" "$back" && echo "$(stat -c %s "$2") bytes identical"
}

# two_sealed_serial_clients: two host-cli runs with the key over UART0, one after the other.
two_sealed_serial_clients() {
    kscli exec uptime || return
    kscli exec uptime
}

# handshake_ephemerals N OUT: N host-cli runs with the key through a recording TCP proxy in front
# of the board; appends the board's ephemeral public key of each handshake (the first 32 bytes of
# its Handshake response, PROTOCOL.md §16) to OUT, one hex line each. The proxy is a Python child
# of this shell, killed by its PID.
handshake_ephemerals() {
    local n=$1 out=$2 port pid i
    port=$(free_port)
    timeout "$CMD_TIMEOUT" python3 - "$port" "$TCP_PORT" "$out" <<'PY' &
import socket, struct, sys, threading
listen, upstream, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen))
server.listen(4)
print("listening", flush=True)
def pump(src, dst, record):
    buf = b""
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        dst.sendall(data)
        if not record:
            continue
        buf += data
        # Frames: 24-byte header, meta_len u16 at 6, body_len u32 at 12 (PROTOCOL.md §2).
        while len(buf) >= 24:
            if buf[:2] != b"\xe7\x54":
                sys.exit("not a Tether stream")
            meta, body = struct.unpack_from("<H", buf, 6)[0], struct.unpack_from("<I", buf, 12)[0]
            total = 24 + meta + body
            if len(buf) < total:
                break
            if buf[3] == 0x40 and body == 48:
                with open(out, "a") as f:
                    f.write(buf[24 + meta:24 + meta + 32].hex() + "\n")
            buf = buf[total:]
while True:
    client, _ = server.accept()
    board = socket.create_connection(("127.0.0.1", upstream), timeout=20)
    threading.Thread(target=pump, args=(client, board, False), daemon=True).start()
    threading.Thread(target=pump, args=(board, client, True), daemon=True).start()
PY
    pid=$!
    for i in $(seq 1 50); do
        port_in_use "$port" && break
        sleep 0.1
    done
    local rc=0
    for i in $(seq 1 "$n"); do
        timeout "$CMD_TIMEOUT" "$HOST_CLI" --to "127.0.0.1:$port" --timeout 10s --key-file "$KEYS/board.key" \
            exec uptime >/dev/null || rc=1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return "$rc"
}

# ephemerals_differ FILE COUNT: FILE holds COUNT ephemeral keys, all different.
ephemerals_differ() {
    cat "$1"
    [ "$(wc -l <"$1")" -eq "$2" ] || { echo "wanted $2 ephemeral keys"; return 1; }
    [ "$(sort -u "$1" | wc -l)" -eq "$2" ] || { echo "an ephemeral key repeated"; return 1; }
    echo "$2 handshakes over two boots of one image: $2 different ephemeral keys"
}

# build_refused KEY_FILE PATTERN: a `secure` build with TETHER_FIRMWARE_KEY_FILE=KEY_FILE fails
# in build.rs, saying PATTERN (cargo only: nothing is copied).
build_refused() {
    local out rc=0
    out=$(cd "$FW_DIR" && TETHER_FW_STORE_KIB=$SECURE_STORE_KIB TETHER_FIRMWARE_KEY_FILE=$1 deb_cargo build \
        --release --locked --target "$TARGET" -Zbuild-std=core --target-dir "$TARGET_DIR" --features secure 2>&1) || rc=$?
    grep -E '^ *error: ' <<<"$out" | head -n 3
    [ "$rc" -ne 0 ] || { echo "the build succeeded"; return 1; }
    grep -q -- "$2" <<<"$out" || { echo "no /$2/ in the build's output"; return 1; }
}

# console_key_id: the console names the key by the first 16 digits of its file's SHA-256.
console_key_id() {
    local id
    id=$(sha256sum "$KEYS/board.key" | cut -c1-16)
    grep "secure sessions: key required (key id $id); plain command and chat ports closed" "$SERIAL_LOG"
}

# What the keyed board takes from peers without its key, and what a key holder sees meanwhile
# (docs/SECURITY.md, denial of service). The rate is what the emulated board serves without
# falling behind on this machine: every connection costs it a TCP accept and an eviction, and a
# wrong-key or replayed handshake a check of message 1.
FLOOD_RATE=25
FLOOD_SECONDS=20
# keyless_flood_holds: a flood of FLOOD_RATE keyless connections a second for FLOOD_SECONDS, in
# every shape (tests/src/flood.rs, with a key holder's message 1 replayed), each held up to 2 s.
# Meanwhile a key holder's `exec uptime` with default flags runs once a second and must be served
# within 2 s every time, and a sealed `listen` started before the flood must outlive it (the board
# publishes no events: listen would have exited with an error had the board ended its session;
# stopped with Ctrl-C it exits 130). The flood's replayed message 1 is one the board never
# answered: it is answered, and its session kept for the answer grace (1 s), while a flood peer
# waits on the spare socket; a key holder's connection meanwhile is reset, and host-cli connects
# again until the grace has passed (PROTOCOL.md §13 rule 5), which the slowest exec shows.
keyless_flood_holds() {
    local listen_pid flood_pid served=0 slow=() slowest=0 i t0 ms
    "$HOST_CLI" --to "127.0.0.1:$TCP_PORT" --key-file "$KEYS/board.key" listen -n 1 --duration 120s \
        >"$WORK/listen.out" 2>&1 &
    listen_pid=$!
    sleep 2
    "$FLOOD" --to "127.0.0.1:$TCP_PORT" --rate "$FLOOD_RATE" --seconds "$FLOOD_SECONDS" \
        --key-file "$KEYS/board.key" >"$WORK/flood.json" &
    flood_pid=$!
    for i in $(seq 20); do
        t0=$(date +%s%N)
        if timeout 30 "$HOST_CLI" --to "127.0.0.1:$TCP_PORT" --key-file "$KEYS/board.key" exec uptime \
            >/dev/null 2>"$WORK/flood-try.err"; then
            ms=$(( ($(date +%s%N) - t0) / 1000000 ))
            if [ "$ms" -le 2000 ]; then served=$((served + 1)); else slow+=("${ms}ms"); fi
            [ "$ms" -le "$slowest" ] || slowest=$ms
        else
            slow+=("failed: $(head -n1 "$WORK/flood-try.err")")
        fi
        sleep 0.7
    done
    wait "$flood_pid" || { kill "$listen_pid" 2>/dev/null; echo "the flood failed"; return 1; }
    echo "flood: $(cat "$WORK/flood.json"); key holder served within 2 s: $served of 20, slowest ${slowest} ms ${slow[*]:+(others: ${slow[*]})}" |
        tee "$WORK/flood.last"
    sleep 1
    kill -0 "$listen_pid" 2>/dev/null || { echo "the sealed listen session did not outlive the flood"; cat "$WORK/listen.out"; return 1; }
    kill -INT "$listen_pid"
    local rc=0
    wait "$listen_pid" || rc=$?
    # Stopped by our Ctrl-C (130), not by the board ending its session (a connection error, 3).
    [ "$rc" -eq 130 ] || { echo "listen (exit $rc):"; cat "$WORK/listen.out"; return 1; }
    [ "$served" -eq 20 ]
}

# secure_tests: the board built with feature `secure` and a throwaway key, over Ethernet (TCP
# through QEMU's hostfwd) and UART0 (the pty): the right key works, no key and a wrong key are
# refused and change nothing, and the board keeps serving.
secure_tests() {
    echo
    echo "== secure sessions: the board built with a throwaway key (${SECURE_STORE_KIB} KiB store), TCP and UART0"
    KEYS=$(mktemp -d)
    make_key "$KEYS/board.key"
    make_key "$KEYS/wrong.key"
    head -c $((64 * 1024)) /dev/urandom >"$WORK/secure.bin"
    # What build.rs refuses (before the real build: each refusal reruns it).
    printf '%s' "$(head -c 63 "$KEYS/board.key")" >"$KEYS/short.key"
    printf '%sg\n' "$(head -c 63 "$KEYS/board.key")" >"$KEYS/nothex.key"
    python3 -c 'print(bytes(range(32)).hex())' >"$KEYS/vector.key"
    chmod 600 "$KEYS"/*.key
    check "build: secure without a key file fails" build_refused "" "needs the board's key"
    check "build: a 63-digit key file is refused" build_refused "$KEYS/short.key" "not 64 characters"
    check "build: a key file with a non-hex digit is refused" build_refused "$KEYS/nothex.key" "not a hex digit"
    check "build: the test vectors' key is refused" build_refused "$KEYS/vector.key" "this key is public"
    check "build: a key file inside the repository is refused" build_refused "$ROOT/Cargo.toml" "inside the repository"
    FW_KEY_FILE=$KEYS/board.key build_fw "$SECURE_STORE_KIB" secure
    boot "$SECURE_STORE_KIB" secure
    check "console: key required, with the key file's id" console_key_id
    check "stack at boot within $((STACK_BOOT_BUDGET / 1024)) KiB (then painted again)" stack_within kcli "$STACK_BOOT_BUDGET" reset
    sed 's/^/        /' "$WORK/stack.last" 2>/dev/null || true
    check "no key (TCP): info answers; exec and put refused, exit 6" no_key_refused cli
    check "no key (UART0): info answers; exec and put refused, exit 6" no_key_refused scli
    check "wrong key (TCP): refused, exit 6" expect_exit 6 cli --key-file "$KEYS/wrong.key" exec led on
    check "wrong key (UART0): refused, exit 6" expect_exit 6 scli --key-file "$KEYS/wrong.key" exec led on
    check "wrong key (TCP): put refused, exit 6" expect_exit 6 cli --key-file "$KEYS/wrong.key" put "$WORK/secure.bin" wrong.bin
    check "plain command and chat ports closed (no key of their own)" plain_actors_closed
    check "plain upper-echo port still serves (it changes nothing)" plain_echo
    check "after the refusals: store empty, LED off (checked with the key)" unchanged
    check "key (TCP): info" expect_out 'mps2-an386' kcli info
    check "key (TCP): exec uptime" expect_out '^up 0d 00:[0-9]{2}:[0-9]{2} \([0-9]+ ms\)$' kcli exec uptime
    check "key (TCP): exec led on" expect_out '^led on$' kcli exec led on
    # The handshake hash of docs/PROTOCOL.md §16.7 (S6), computed on the target.
    check "key (TCP): exec noise: handshake hash of the vectors" \
        expect_out '^noise ok: handshake hash e2d058ee976b95d5, sealed echo opened$' kcli exec noise
    check "key (TCP): exec noise time runs" expect_out '^handshake \(Lock::respond, 4 rounds\): min [0-9]+ max [0-9]+ ticks$' kcli exec noise time
    check "key (TCP): put + get 64 KiB, bit-exact" round_trip_via kcli "$WORK/secure.bin" secure-tcp.bin
    check "key (UART0): info" expect_out 'mps2-an386' sealed_serial info
    check "key (UART0): exec uptime" expect_out '^up 0d 00:[0-9]{2}:[0-9]{2} \([0-9]+ ms\)$' sealed_serial exec uptime
    check "key (UART0): put 64 KiB (read back over TCP), bit-exact" sealed_serial_put "$WORK/secure.bin" secure-serial.bin
    check "key (UART0): get 64 KiB, bit-exact" sealed_serial_get secure-serial.bin "$WORK/secure.bin"
    check "key (UART0): two sealed clients in a row" two_sealed_serial_clients
    check "no key (TCP): the files stay unreadable" refused_no_key cli get secure-serial.bin "$WORK/nokey.back"
    check "key (TCP): both files listed" expect_out '"name":"secure-tcp.bin","size":65536[,}].*"name":"secure-serial.bin"|"name":"secure-serial.bin".*"name":"secure-tcp.bin"' kcli --json ls
    check "UDP: time reads without the key" expect_out '^1970-01-01 00:[0-9]{2}:[0-9]{2}$' cli time
    check "no key: time set refused, exit 6" expect_exit 6 cli time set
    check "key: time set goes over the sealed session" expect_out '^device clock set to ' kcli time set
    check "stack after handshakes, noise, sealed put/get within $((STACK_RUN_BUDGET / 1024)) KiB" stack_within kcli "$STACK_RUN_BUDGET"
    sed 's/^/        /' "$WORK/stack.last" 2>/dev/null || true
    check "a keyless flood ($FLOOD_RATE/s for $FLOOD_SECONDS s, every shape): key holder served within 2 s 20 times in 20, sealed listen kept" \
        keyless_flood_holds
    sed 's/^/        /' "$WORK/flood.last" 2>/dev/null || true
    check "firmware still running" kill -0 "$QEMU_PID"
    # The boot seed is fixed in the image. Mixed into the generator: the firmware's timing samples
    # (src/entropy.rs) and, per handshake, tether-core's arrival time and the client's message 1.
    # The first handshakes after two fresh boots must not repeat the board's ephemeral keys
    # (with none of that mixing they would: the generator would start from the same seed).
    cleanup
    boot "$SECURE_STORE_KIB" secure
    check "boot 1: two handshakes recorded" handshake_ephemerals 2 "$WORK/ephemerals"
    cleanup
    boot "$SECURE_STORE_KIB" secure
    check "boot 2: two handshakes recorded" handshake_ephemerals 2 "$WORK/ephemerals"
    check "ephemeral keys differ across handshakes and boots (QEMU's timing, no TRNG)" ephemerals_differ "$WORK/ephemerals" 4
    cleanup
    rm -rf "$KEYS"
}

# run_part LABEL CASES: one part of `test` alone (test-secure, test-update): host-cli, a WORK of
# its own, the CASES function, the summary.
run_part() {
    local label=$1 cases=$2 start=$SECONDS
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    build_host_cli
    WORK=$(mktemp -d)
    trap 'cleanup; rm -rf "$WORK" "${KEYS:-}"' EXIT
    "$cases"
    echo
    log "done in $((SECONDS - start)) s"
    if [ "$FAILED" -gt 0 ]; then
        printf '  failed: %s\n' "${FAILURES[@]}"
    fi
    echo "firmware ($label): $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

cmd_test_secure() { run_part keyed secure_tests; }

cmd_test() {
    local start=$SECONDS host_log host_pid
    # host-cli and the firmware build in parallel: the firmware's cold build is mostly one
    # rustc compiling `core`, which leaves the second core free. python3 drives the UART echo.
    ensure_apt_packages "${APT_PACKAGES[@]}" python3 || die "cannot install ${APT_PACKAGES[*]} python3"
    host_log=$(mktemp)
    build_host_cli >"$host_log" 2>&1 &
    host_pid=$!
    build_fw "$DEFAULT_STORE_KIB"
    if ! wait "$host_pid"; then
        cat "$host_log" >&2
        die "host-cli did not build"
    fi
    cat "$host_log" >&2
    rm -f "$host_log"
    WORK=$(mktemp -d)
    trap 'cleanup; rm -rf "$WORK" "${KEYS:-}"' EXIT
    head -c $((1024 * 1024)) /dev/urandom >"$WORK/one-mib.bin"
    head -c $((16 * 1024)) /dev/urandom >"$WORK/small.bin"
    head -c $((256 * 1024)) /dev/urandom >"$WORK/quarter-mib.bin"
    head -c $((40 * 1024)) /dev/urandom >"$WORK/too-big.bin"

    echo
    echo "== end-to-end: ${DEFAULT_STORE_KIB} KiB store"
    boot "$DEFAULT_STORE_KIB"
    check "DHCP: the board leased its address from QEMU's user network" dhcp_leased
    check "stack at boot within $((STACK_BOOT_BUDGET / 1024)) KiB (then painted again)" stack_within cli "$STACK_BOOT_BUDGET" reset
    sed 's/^/        /' "$WORK/stack.last" 2>/dev/null || true
    check "info: device, limits, empty 2 MiB store" expect_out '"storage_capacity":2097152,.*"storage_used":0[,}]' cli --json info
    check "send: echo" expect_out '^hello board$' cli send "hello board"
    check "send --upper" expect_out '^HELLO BOARD$' cli send --upper "hello board"
    check "exec uptime" expect_out '^up 0d 00:00:[0-9]{2} \([0-9]+ ms\)$' cli exec uptime
    check "exec led on / status" expect_out '^led on$' cli exec led on
    # Open: this TCP session and the serial line's (a UART is one session, open from boot).
    check "exec stats" expect_out '^sessions +open 2' cli exec stats
    check "exec: unknown command exits 1" expect_exit 1 cli exec no-such-command
    check "put + get 1 MiB, bit-exact" round_trip "$WORK/one-mib.bin" one-mib.bin
    check "ls shows the file" expect_out '"name":"one-mib.bin","size":1048576[,}]' cli --json ls
    check "get: missing file exits 1" expect_exit 1 cli get no-such-file "$WORK/nothing"
    check "time (UDP)" expect_out '^1970-01-01 00:00:[0-9]{2}$' cli time
    check "time set, then the year" expect_out "^$(date -u +%Y)\$" time_year
    check "plain upper-echo port" plain_echo
    # The board's echo pool has 2 sockets: 2 clients at once, or 1 and an immediate reconnect.
    check "tutorial: upper-echo client (2 at once, reconnects, 1 MiB)" \
        tutorial upper_echo_client.py "$PLAIN_PORT" --clients 2 --reconnects 20
    check "tutorial: remote-command client (length)" tutorial command_client.py "$COMMAND_PORT" --long 0
    check "tutorial: remote-command client (JSON header, md5)" tutorial command_json_client.py "$COMMAND_JSON_PORT" --long 0
    check "tutorial: UDP time client (after time set)" tutorial udp_time_client.py "$TIME_PORT" --year "$(date -u +%Y)"
    # The board's chat socket takes datagrams of up to 256 bytes (larger ones are dropped).
    check "tutorial: UDP chat client" tutorial udp_chat_client.py "$CHAT_PORT" --long 200
    check "uart: raw echo of 256 KiB over UART0, bit-exact" uart_echo_check $((256 * 1024))
    check "uart: status counts the echo, no overruns" expect_out 'rx bytes 262144  tx bytes 262144  .* overruns 0$' cli exec uart
    check "serial: info over UART0" expect_out 'mps2-an386' scli info
    check "serial: exec uptime" expect_out '^up 0d 00:[0-9]{2}:[0-9]{2} \([0-9]+ ms\)$' scli exec uptime
    check "serial: exec: unknown command exits 1" expect_exit 1 scli exec no-such-command
    check "serial: put + get 256 KiB, bit-exact" round_trip_via scli "$WORK/quarter-mib.bin" quarter-mib.bin
    check "serial: the file is seen over TCP too (one store)" expect_out '"name":"quarter-mib.bin","size":262144[,}]' cli --json ls
    # Room for both: the store holds 2 MiB.
    cli rm one-mib.bin >/dev/null
    check "serial and TCP at once: 256 KiB over UART0, 1 MiB over TCP" both_at_once
    check "serial: 64 KiB of line noise, then TCP and UART0 both answer" serial_noise $((64 * 1024))
    check "serial: a reader killed mid-get; TCP answers, then the next serial client" serial_vanish
    check "uart: no overruns after the transfers" expect_out ' overruns 0$' cli exec uart
    check "exec net: no RX errors" expect_out 'rx frames [0-9]+  errors 0 ' cli exec net
    check "stack after the transfers and commands within $((STACK_RUN_BUDGET / 1024)) KiB" stack_within cli "$STACK_RUN_BUDGET"
    sed 's/^/        /' "$WORK/stack.last" 2>/dev/null || true
    check "firmware still running" kill -0 "$QEMU_PID"
    cleanup

    echo
    echo "== end-to-end: ${SMALL_STORE_KIB} KiB store"
    build_fw "$SMALL_STORE_KIB"
    boot "$SMALL_STORE_KIB"
    check "info: 32 KiB store" expect_out '"storage_capacity":32768,.*"storage_used":0[,}]' cli --json info
    check "put + get 16 KiB, bit-exact" round_trip "$WORK/small.bin" small.bin
    check "put 40 KiB: no space, exits 1" expect_exit 1 cli put "$WORK/too-big.bin" too-big.bin
    check "exec uptime" expect_out '^up 0d' cli exec uptime
    check "plain upper-echo port" plain_echo
    cleanup

    echo
    echo "== DHCP fallback: no DHCP server on the segment"
    check "no lease within 10 s: the board takes 10.0.2.15/24 and says so" dhcp_fallback "$SMALL_STORE_KIB"
    echo
    echo "== mDNS (feature mdns, off by default): the board on a cable to tests/peers/qemu_mdns.py"
    build_fw "$SMALL_STORE_KIB" mdns
    check "mDNS: two announcements a second apart, a query answered" mdns_check "$SMALL_STORE_KIB"

    secure_tests
    echo
    echo "== the serial-only probe (firmware/serial-probe): Cortex-M4 and the micro:bit's Cortex-M0"
    # About 5 s once built (the CI's embedded step has built it): both boot in QEMU, host-cli talks
    # to each over its UART.
    check "serial-probe.sh test: info, exec, put/get, no space, noise, stack, on both" probe_test
    sed -nE '/^(ok|FAIL|==)|stack used/p' "$WORK/probe.log" | sed 's/^/    probe| /'

    # Firmware update: the boot stage, A/B slots, trial, revert, watchdog, resume, power cuts.
    update_tests

    echo
    log "done in $((SECONDS - start)) s"
    if [ "$FAILED" -gt 0 ]; then
        printf '  failed: %s\n' "${FAILURES[@]}"
    fi
    echo "firmware: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# --- bench ----------------------------------------------------------------------------------
# echo_once BYTES: prints seconds to push BYTES through the plain upper-echo port and read them
# all back (sender and receiver concurrent), after checking the reply.
echo_once() {
    timeout "$CMD_TIMEOUT" python3 - "$PLAIN_PORT" "$1" <<'PY'
import socket, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
data = bytes(97 + (i * 7 + 3) % 26 for i in range(n))
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
got = bytearray()
t0 = time.perf_counter()
tx = threading.Thread(target=s.sendall, args=(data,))
tx.start()
while len(got) < n:
    b = s.recv(1 << 16)
    if not b:
        break
    got += b
tx.join()
dt = time.perf_counter() - t0
s.close()
if bytes(got) != data.upper():
    sys.exit("echo reply differs")
print(f"{dt:.4f}")
PY
}

# json_seconds: the "seconds" field of host-cli --json output.
json_seconds() {
    python3 -c 'import json, sys; print("%.4f" % json.loads(sys.stdin.read().strip().splitlines()[-1])["seconds"])'
}

cmd_bench() {
    local runs=$1
    ensure_apt_packages python3
    build_host_cli
    build_fw "$DEFAULT_STORE_KIB"
    WORK=$(mktemp -d)
    trap 'cleanup; rm -rf "$WORK"' EXIT
    head -c $((1024 * 1024)) /dev/urandom >"$WORK/one-mib.bin"
    boot "$DEFAULT_STORE_KIB"
    local echo_t=() put_t=() get_t=() i
    # Warm-up: one of each, not counted.
    echo_once 65536 >/dev/null
    cli -q put --overwrite "$WORK/one-mib.bin" bench.bin >/dev/null
    for i in $(seq 1 "$runs"); do
        echo_t+=("$(echo_once $((1024 * 1024)))")
        # Removed first (not timed): replacing a file makes the RAM store compact, a 1 MiB
        # memmove on the board that would be counted as transfer time.
        cli -q rm bench.bin >/dev/null
        put_t+=("$(cli -q --json put "$WORK/one-mib.bin" bench.bin | json_seconds)")
        rm -f "$WORK/back.bin"
        get_t+=("$(cli -q --json get bench.bin "$WORK/back.bin" | json_seconds)")
        cmp -s "$WORK/one-mib.bin" "$WORK/back.bin" || die "get returned different bytes"
        printf '  round %d: echo %s s, put %s s, get %s s\n' "$i" "${echo_t[-1]}" "${put_t[-1]}" "${get_t[-1]}"
    done
    cli exec net | sed 's/^/  device| /'
    summarize "1 MiB through the emulated board's network" $((1024 * 1024)) MiB "raw TCP echo (plain port 8080)" \
        "${echo_t[*]}" "${put_t[*]}" "${get_t[*]}"

    # The same over UART0: a raw byte echo of the same port (`exec uart echo`) against host-cli
    # put/get through the serial driver.
    local n=$((256 * 1024))
    head -c "$n" /dev/urandom >"$WORK/quarter-mib.bin"
    echo_t=() put_t=() get_t=()
    scli -q put --overwrite "$WORK/quarter-mib.bin" sbench.bin >/dev/null
    for i in $(seq 1 "$runs"); do
        cli exec uart echo >/dev/null
        echo_t+=("$(uart_echo "$n")")
        cli exec uart tether >/dev/null
        scli -q rm sbench.bin >/dev/null
        put_t+=("$(scli -q --json put "$WORK/quarter-mib.bin" sbench.bin | json_seconds)")
        rm -f "$WORK/back.bin"
        get_t+=("$(scli -q --json get sbench.bin "$WORK/back.bin" | json_seconds)")
        cmp -s "$WORK/quarter-mib.bin" "$WORK/back.bin" || die "serial get returned different bytes"
        printf '  serial round %d: echo %s s, put %s s, get %s s\n' "$i" "${echo_t[-1]}" "${put_t[-1]}" "${get_t[-1]}"
    done
    cli exec uart | sed 's/^/  device| /'
    summarize "256 KiB through the emulated board's UART0 (a pty)" "$n" KiB "raw byte echo (exec uart echo)" \
        "${echo_t[*]}" "${put_t[*]}" "${get_t[*]}"
}

# --- bench-secure -----------------------------------------------------------------------------
# noise_time: the board's `exec noise time` figures as "RESPOND_MIN RESPOND_MAX SEAL OPEN" ticks.
noise_time() {
    kcli exec noise time | awk '
        /^handshake/ { min = $(NF - 3); max = $(NF - 1) }
        /^seal/ { seal = $5; open = $(NF - 1) }
        END { if (min == "" || seal == "") exit 1; print min, max, seal, open }'
}

# wall_ms RUNS CMD...: median wall-clock milliseconds of RUNS runs of CMD (which must succeed).
wall_ms() {
    local runs=$1 i t0 t1 times=()
    shift
    for i in $(seq 1 "$runs"); do
        t0=$(date +%s%N)
        "$@" >/dev/null || die "$* failed"
        t1=$(date +%s%N)
        times+=($(((t1 - t0) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] / 1000 }'
}

# cmd_bench_secure RUNS: what a handshake costs on the keyed board. 1) `exec noise time` in
# QEMU's default mode (the virtual clock follows the host: emulated time on this machine), 2) the
# same under `-icount shift=0,align=off,sleep=off` (one virtual nanosecond per instruction, so
# FREE_RUN ticks x 40 = instructions: reproducible), 3) as host-cli sees it: `info` with the key
# (connect, hello, handshake, sealed requests) against `info` without it (connect, hello,
# unsealed requests), RUNS of each, median.
cmd_bench_secure() {
    local runs=$1
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    build_host_cli
    KEYS=$(mktemp -d)
    trap 'cleanup; rm -rf "${KEYS:-}"' EXIT
    make_key "$KEYS/board.key"
    FW_KEY_FILE=$KEYS/board.key build_fw "$SECURE_STORE_KIB" secure
    local mode figures rows=()
    for mode in host icount; do
        if [ "$mode" = icount ]; then QEMU_EXTRA=(-icount shift=0,align=off,sleep=off); else QEMU_EXTRA=(); fi
        boot "$SECURE_STORE_KIB" secure
        kcli exec noise time >/dev/null  # warm-up
        local i
        for i in $(seq 1 "$runs"); do
            figures=$(noise_time) || die "exec noise time failed"
            rows+=("$mode $figures")
        done
        if [ "$mode" = host ]; then
            local with without
            with=$(wall_ms "$runs" kcli -q info)
            without=$(wall_ms "$runs" cli -q info)
            rows+=("wall $with $without")
        fi
        cleanup
    done
    printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
rows = [line.split() for line in sys.stdin]
print("handshake on the emulated board (median of %d; FREE_RUN ticks are 40 ns of the virtual clock)" % sum(r[0] == "host" for r in rows))
for mode, label in (("host", "virtual clock = host time (QEMU default)"), ("icount", "-icount shift=0: ticks x 40 = instructions")):
    got = [list(map(int, r[1:])) for r in rows if r[0] == mode]
    med = [statistics.median(c) for c in zip(*got)]
    print("  %s" % label)
    if mode == "host":
        print("    Lock::respond      %8.0f ticks = %7.2f ms emulated (min %d, max %d)" % (med[0], med[0] * 40e-6, min(g[0] for g in got), max(g[1] for g in got)))
        print("    seal 1536 B frame  %8.0f ticks = %7.3f ms; open %0.f ticks = %.3f ms" % (med[2], med[2] * 40e-6, med[3], med[3] * 40e-6))
    else:
        print("    Lock::respond      %8.0f ticks = %5.2f M instructions (min %d, max %d ticks)" % (med[0], med[0] * 40e-6, min(g[0] for g in got), max(g[1] for g in got)))
        print("    seal 1536 B frame  %8.0f ticks = %5.0f k instructions; open %.0f ticks = %.0f k instructions" % (med[2], med[2] * 0.04, med[3], med[3] * 0.04))
        print("    at 1 instruction per cycle: %.0f ms at 25 MHz, %.1f ms at 168 MHz" % (med[0] * 40 / 25e3, med[0] * 40 / 168e3))
wall = [r for r in rows if r[0] == "wall"][0]
print("  host-cli info through QEMU user-net, median wall time: with the key %s ms, without %s ms (difference %.1f ms: handshake and sealing, as the host sees it)" % (wall[1], wall[2], float(wall[1]) - float(wall[2])))
'
}

# --- cost -------------------------------------------------------------------------------------
# What a byte costs on the board, in instructions: the firmware built with feature `cost` runs
# under `-icount shift=0,align=off,sleep=$COST_SLEEP`, where the virtual clock advances 1 ns per
# instruction executed, so FREE_RUN ticks x 40 are instructions. `exec cost reset` and `exec cost`
# bracket each case; the board counts the busy time of the passes of its main loop that moved a
# frame or a UART byte (src/cost.rs). docs/BENCHMARKS.md, "What a byte costs on the device".
COST_SLEEP=${TETHER_COST_SLEEP:-on}

# cost_read CLIENT: the board's `exec cost` line (key=value pairs) through CLIENT.
cost_read() { "$1" exec cost | grep '^cost '; }

# cost_case CLIENT LABEL UNITS CMD...: reset the meter, run CMD, read the meter; prints
# "LABEL UNITS work_ticks work_passes housekeeping_ticks housekeeping_passes idle_ticks" (CMD's output is dropped).
cost_case() {
    local client=$1 label=$2 units=$3 line
    shift 3
    "$client" exec cost reset >/dev/null || die "exec cost reset failed"
    if [ "$#" -gt 0 ]; then "$@" >/dev/null || die "$label: $* failed"; fi
    line=$(cost_read "$client") || die "exec cost failed"
    echo "$label $units $(sed -E 's/[a-z_]+=//g; s/^cost //' <<<"$line")"
}

# connections CLIENT N: N connections of one echo each (`ping -c 1`).
connections() {
    local i
    for i in $(seq 1 "$2"); do "$1" ping -c 1 || return; done
}

# cost_cases VARIANT RUN CLIENT TRANSPORT BYTES: the cases of one transport, one line each:
# "VARIANT RUN TRANSPORT CASE UNITS work_ticks work_passes housekeeping_ticks housekeeping_passes idle_ticks".
cost_cases() {
    local variant=$1 run=$2 client=$3 tr=$4 bytes=$5 file=$WORK/cost-$5.bin
    [ -f "$file" ] || head -c "$bytes" /dev/urandom >"$file"
    local pre="$variant $run $tr" line
    line=$(for _ in $(seq 1 "$COST_EMPTIES"); do cost_case "$client" empty 0 || exit; done | cost_sum) || return
    echo "$pre $line"
    # Many of each in one bracket, the echoes paced (COST_* in scripts/lib.sh).
    line=$(cost_case "$client" ping1 1 connections "$client" "$COST_CONNECTIONS") || return
    echo "$pre $line $COST_CONNECTIONS"
    line=$(cost_case "$client" pings "$COST_PINGS" "$client" ping -c "$COST_PINGS" -i "$COST_PING_PAUSE") || return
    echo "$pre $line"
    line=$(cost_case "$client" hellos "$COST_PINGS" "$client" ping --hello -c "$COST_PINGS" -i "$COST_PING_PAUSE") || return
    echo "$pre $line"
    "$client" rm cost.bin >/dev/null 2>&1 || true
    line=$(cost_case "$client" put "$bytes" "$client" put "$file" cost.bin) || return
    echo "$pre $line"
    rm -f "$WORK/cost.back"
    line=$(cost_case "$client" get "$bytes" "$client" get cost.bin "$WORK/cost.back") || return
    # host-cli get asks for the file's size and hash and downloads it on one connection.
    echo "$pre $line"
    cmp -s "$file" "$WORK/cost.back" || die "$variant $tr: get returned other bytes"
    "$client" rm cost.bin >/dev/null
}

# cost_board VARIANT RUNS TCP_CLIENT SERIAL_CLIENT: the floor, then RUNS rounds of the cases over
# TCP (1 MiB) and UART0 (256 KiB) on the booted board.
cost_board() {
    local variant=$1 runs=$2 tcp=$3 serial=$4 i
    local floor
    floor=$("$tcp" exec cost floor) || die "exec cost floor failed"
    echo "$variant floor $(sed -nE 's/^floor //p' <<<"$floor" | tr '\n' ' ')"
    for i in $(seq 1 "$runs"); do
        cost_cases "$variant" "$i" "$tcp" tcp $((1024 * 1024)) || die "$variant: a TCP case failed"
        cost_cases "$variant" "$i" "$serial" uart $((256 * 1024)) || die "$variant: a UART case failed"
    done
}

cmd_cost() {
    local runs=$1 start=$SECONDS
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    build_host_cli
    WORK=$(mktemp -d)
    KEYS=$(mktemp -d)
    trap 'cleanup; rm -rf "$WORK" "${KEYS:-}"' EXIT
    make_key "$KEYS/board.key"
    build_fw "$DEFAULT_STORE_KIB" cost
    FW_KEY_FILE=$KEYS/board.key build_fw "$DEFAULT_STORE_KIB" cost,secure
    QEMU_EXTRA=(-icount "shift=0,align=off,sleep=$COST_SLEEP")
    local raw=$WORK/cost.raw
    boot "$DEFAULT_STORE_KIB" cost
    cost_board open "$runs" cli scli 2>/dev/null | tee -a "$raw"
    cleanup
    boot "$DEFAULT_STORE_KIB" cost,secure
    cost_board sealed "$runs" kcli kscli 2>/dev/null | tee -a "$raw"
    cleanup
    log "measured in $((SECONDS - start)) s"
    python3 scripts/cost-report.py "MPS2 AN386 firmware (Cortex-M4)" 40 <"$raw"
}

# --- profile ----------------------------------------------------------------------------------
# cmd_profile FEATURES: the cost build under -icount with QEMU's log of every translation block
# and its executions (-d exec,nochain,in_asm; hundreds of MB, in a temporary directory), three
# cases bracketed by `exec cost reset` and `exec cost` as in `cost`, then scripts/qemu-profile.py
# split at each `exec cost`: segments 1, 3 and 5 are the echoes, the put and the get.
cmd_profile() {
    local features=cost${1:+,$1} client=cli start=$SECONDS
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    build_host_cli
    WORK=$(mktemp -d)
    KEYS=$(mktemp -d)
    trap 'cleanup; rm -rf "$WORK" "${KEYS:-}"' EXIT
    if [ -n "${1:-}" ]; then
        make_key "$KEYS/board.key"
        FW_KEY_FILE=$KEYS/board.key
        client=kcli
    fi
    build_fw "$DEFAULT_STORE_KIB" "$features"
    QEMU_EXTRA=(-icount "shift=0,align=off,sleep=$COST_SLEEP" -d exec,nochain,in_asm -D "$WORK/qemu.log")
    boot "$DEFAULT_STORE_KIB" "$features"
    head -c 32768 /dev/urandom >"$WORK/profile.bin"
    "$client" rm profile.bin >/dev/null 2>&1 || true
    local case
    for case in "ping -c 101 -i $COST_PING_PAUSE" "put $WORK/profile.bin profile.bin" "get profile.bin $WORK/profile.back"; do
        "$client" exec cost reset >/dev/null || die "exec cost reset failed"
        # shellcheck disable=SC2086 # the case's words
        "$client" $case >/dev/null 2>&1 || die "$case failed"
        "$client" exec cost | grep '^cost ' | sed "s|^|$case: |" >&2 || die "exec cost failed"
    done
    cmp -s "$WORK/profile.bin" "$WORK/profile.back" || die "get returned other bytes"
    cleanup
    log "ran in $((SECONDS - start)) s; segments 1, 3, 5: the echoes, the put, the get"
    python3 scripts/qemu-profile.py "$(elf_for "$DEFAULT_STORE_KIB" "$features")" "$WORK/qemu.log" \
        --split cost::command::cost --categories --top 30
}

# summarize TITLE BYTES UNIT ECHO_LABEL "ECHO TIMES" "PUT TIMES" "GET TIMES": rates and ratios.
summarize() {
    python3 - "$@" <<'PY'
import statistics, sys
title, n, unit, echo_label = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
scale = {"MiB": 1024 * 1024, "KiB": 1024}[unit]
cases = {name: [float(x) for x in arg.split()] for name, arg in zip(("echo", "put", "get"), sys.argv[5:])}
print()
print("%s (%s/s = bytes / elapsed; best | median of %d)" % (title, unit, len(cases["echo"])))
print("%-34s %8s %8s" % ("case", "best", "median"))
rate = {}
for name, label in (("echo", echo_label), ("put", "host-cli put"), ("get", "host-cli get")):
    best, med = n / min(cases[name]) / scale, n / statistics.median(cases[name]) / scale
    rate[name] = (best, med)
    print("%-34s %8.2f %8.2f" % (label, best, med))
print()
# Throughput ratio = echo time / transfer time. Per round (the three cases of a round run back
# to back, under the same load on the host) is the figure to trust on a busy machine.
for name in ("put", "get"):
    rounds = [e / t for e, t in zip(cases["echo"], cases[name])]
    print("ratio %s / echo: per round %s; median %.2f (best vs best %.2f; target >= 0.80)" % (
        name, " ".join("%.2f" % r for r in rounds), statistics.median(rounds), rate[name][0] / rate["echo"][0]))
PY
}

# --- run --------------------------------------------------------------------------------------
cmd_run() {
    local kib=$1 features=${2:-}
    build_fw "$kib" "$features"
    local tcp udp plain command json time_port chat
    tcp=${TETHER_FW_TCP_PORT:-$(free_port)}
    udp=${TETHER_FW_UDP_PORT:-$(free_port)}
    plain=${TETHER_FW_PLAIN_PORT:-$(free_port)}
    command=$(free_port)
    json=$(free_port)
    time_port=$(free_port)
    chat=$(free_port)
    log "board reachable on 127.0.0.1: framed tcp $tcp, framed udp $udp, plain upper-echo tcp $plain"
    log "  remote command tcp $command (length) and $json (JSON header), time udp $time_port, chat udp $chat"
    log "e.g. target/release/host-cli --to 127.0.0.1:$tcp --udp-port $udp info"
    log "UART0 (Tether over serial) is the pty QEMU names below: host-cli --to serial:/dev/pts/N info"
    log "quit QEMU with Ctrl-A X"
    timeout --foreground --kill-after=5 "${TETHER_FW_RUN_SECONDS:-86400}" qemu-system-arm -M mps2-an386 -nographic \
        -serial pty -serial mon:stdio -semihosting-config enable=on,target=native \
        -nic "user,model=lan9118,hostfwd=tcp:127.0.0.1:$tcp-:7070,hostfwd=udp:127.0.0.1:$udp-:7071,hostfwd=tcp:127.0.0.1:$plain-:8080,hostfwd=tcp:127.0.0.1:$command-:8081,hostfwd=tcp:127.0.0.1:$json-:8082,hostfwd=udp:127.0.0.1:$time_port-:9000,hostfwd=udp:127.0.0.1:$chat-:9001" \
        -kernel "$(elf_for "$kib" "$features")"
}

usage() {
    sed -n '2,/^#$/p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

main() {
    local sub=${1:-}
    [ -n "$sub" ] || usage
    shift
    local kib=$DEFAULT_STORE_KIB runs=5 runs_given="" features=""
    while [ "$#" -gt 0 ]; do
        case $1 in
            --store-kib) kib=${2:?--store-kib N}; shift 2 ;;
            --secure) features=secure; shift ;;
            --runs) runs=${2:?--runs N}; runs_given=$runs; shift 2 ;;
            *) usage ;;
        esac
    done
    case $sub in
        build) build_fw "$kib" "$features"; elf_for "$kib" "$features" ;;
        run) cmd_run "$kib" "$features" ;;
        test) cmd_test ;;
        test-secure) cmd_test_secure ;;
        test-update) run_part update update_tests ;;
        bench-update) cmd_bench_update "${runs_given:-1}" ;;
        crypto-cost) cmd_crypto_cost ;;
        size) cmd_size ;;
        bench) cmd_bench "$runs" ;;
        bench-secure) cmd_bench_secure "$runs" ;;
        cost) cmd_cost "${runs_given:-1}" ;;
        profile) cmd_profile "$features" ;;
        *) usage ;;
    esac
}

main "$@"
