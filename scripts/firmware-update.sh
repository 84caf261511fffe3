# Firmware update on the emulated MPS2 AN386 (issue 22): sourced by scripts/firmware.sh, whose
# helpers it uses (boot, cli, kcli, kscli, check, expect_out, expect_exit, cleanup, ...).
#
#   bash scripts/firmware.sh test-update    # the cases below (also part of `test`)
#   bash scripts/firmware.sh bench-update   # update time over Ethernet and UART0 (BENCHMARKS.md)
#
# The board: the boot stage (firmware/mps2-boot) is QEMU's `-kernel`; the application images run in
# place from the two slots of the 16 MiB PSRAM, which QEMU backs with a file of the test's own
# (`-object memory-backend-file,...,share=on`), so the slots and the state record survive a reset
# and a new QEMU process. The factory image goes into slot 0 of a blank file with `dd`; the boot
# stage records it as active (firmware/shared/psram_slots.rs has the layout). The application
# builds are keyed (secure sessions) and carry the update service (feature `update`) with a
# throwaway image key; each image is linked for the slot it runs from (TETHER_FW_SLOT).
#
# Test builds: `cut` adds the `fwcut [boot] N` command (the next state-record write, of the
# application or of the boot stage, stops after N bytes and the emulator exits: a power cut at that
# instant, deterministic); `no-confirm` is an image that never confirms itself; `hang` one that
# hangs at start, so the watchdog must reset it.

BOOT_DIR=firmware/mps2-boot
BOOT_TARGET_DIR=$TARGET_DIR/boot
# The boot stage's budget (also its linker script's FLASH length).
BOOT_FLASH_BUDGET=${TETHER_BOOT_FLASH_BUDGET:-$((8 * 1024))}
# The keyed firmware with the update service.
UPDATE_FLASH_BUDGET=${TETHER_FW_UPDATE_FLASH_BUDGET:-$((144 * 1024))}
# Where each slot's image body runs (firmware/shared/psram_slots.rs), and where slot 0 starts in
# the PSRAM file (its image header).
SLOT_BODY=(0x21001000 0x21801000)
SLOT0_FILE_OFFSET=$((0xf00))
# A watchdog reset comes 4 s after the last feed; with the boot, 20 s is ample.
WATCHDOG_WAIT=20

# build_boot [FEATURES]: the boot stage (own target directory: its SHA-256 is built compact,
# with other flags than the firmware's); copies it to boot_elf_for FEATURES.
boot_elf_for() { echo "$TARGET_DIR/tether-boot${1:+-$1}.elf"; }
build_boot() {
    local features=${1:-} start=$SECONDS
    log "building the boot stage${features:+ (features $features)}"
    (cd "$BOOT_DIR" && deb_cargo build --release --locked --target "$TARGET" -Zbuild-std=core \
        --target-dir "$BOOT_TARGET_DIR" ${features:+--features "$features"})
    cp "$BOOT_TARGET_DIR/$TARGET/release/tether-boot" "$(boot_elf_for "$features")"
    log "built $(boot_elf_for "$features") in $((SECONDS - start)) s"
}

# build_slot SLOT FEATURES: the keyed application with the update service, linked for slot SLOT,
# with the session key FW_KEY_FILE and the image key UPDATE_KEY.pub; its ELF and flat binary (the
# body to sign) go to slot_elf_for / slot_bin_for.
#
# SHA-2 is built compact in these builds (sha2's `soft-compact`, the boot stage's too): Ed25519
# brings SHA-512, whose unrolled compression alone is 28 KB of code; compact, SHA-512 and SHA-256
# together take 2 KB instead of 35 KB, which is what keeps the keyed firmware with the update
# service within 144 KiB (docs/BENCHMARKS.md, "Firmware update"; SHA-256 gets slower too, and the
# update and transfer times there are measured with it).
# The flag goes on the command line (cargo appends it to the target's rustflags) and the builds
# have a target directory of their own, so the other firmware builds keep theirs.
UPDATE_TARGET_DIR=$TARGET_DIR/update
slot_elf_for() { echo "$TARGET_DIR/tether-fw-slot$1-${2//,/-}.elf"; }
slot_bin_for() { echo "$TARGET_DIR/tether-fw-slot$1-${2//,/-}.bin"; }
build_slot() {
    local slot=$1 features=$2 start=$SECONDS args
    log "building the firmware for slot $slot (features $features)"
    read -ra args <<<"$(fw_feature_args "$features")"
    (cd "$FW_DIR" && TETHER_FW_STORE_KIB=$SMALL_STORE_KIB TETHER_FW_SLOT=$slot TETHER_FIRMWARE_KEY_FILE=$FW_KEY_FILE \
        TETHER_FIRMWARE_FW_KEY_FILE=$UPDATE_KEY.pub deb_cargo build --release --locked --target "$TARGET" \
        --config "target.$TARGET.rustflags=[\"--cfg\", \"sha2_backend_soft=\\\"compact\\\"\"]" \
        -Zbuild-std=core --target-dir "$UPDATE_TARGET_DIR" "${args[@]}")
    cp "$UPDATE_TARGET_DIR/$TARGET/release/tether-fw" "$(slot_elf_for "$slot" "$features")"
    elf_to_bin "$(slot_elf_for "$slot" "$features")" "${SLOT_BODY[$slot]}" "$(slot_bin_for "$slot" "$features")"
    log "built $(slot_elf_for "$slot" "$features") in $((SECONDS - start)) s"
}

# elf_to_bin ELF BASE BIN: the bytes of ELF's loadable segments placed by their load (physical)
# address from BASE: what lies in the slot (vector table, code, constants, .data's initial image).
elf_to_bin() {
    python3 - "$@" <<'PY'
import struct, sys
elf, base, out = open(sys.argv[1], "rb").read(), int(sys.argv[2], 0), sys.argv[3]
assert elf[:4] == b"\x7fELF" and elf[4] == 1, "a 32-bit ELF"
phoff, = struct.unpack_from("<I", elf, 28)
phentsize, phnum = struct.unpack_from("<HH", elf, 42)
image = bytearray()
for i in range(phnum):
    p_type, off, vaddr, paddr, filesz, memsz, flags, align = struct.unpack_from("<8I", elf, phoff + i * phentsize)
    if p_type != 1 or filesz == 0:
        continue
    assert paddr >= base, "segment at %#x below the slot body %#x" % (paddr, base)
    at = paddr - base
    if len(image) < at + filesz:
        image.extend(b"\0" * (at + filesz - len(image)))
    image[at:at + filesz] = elf[off:off + filesz]
assert image, "no loadable segment"
open(out, "wb").write(image)
PY
}

# sign NAME SLOT FEATURES VERSION COUNTER [fw sign options]: $WORK/NAME.img, for the board and the
# slot's load address, signed with SIGN_KEY (default UPDATE_KEY) for SIGN_BOARD (default this one).
sign() {
    local name=$1 slot=$2 features=$3 version=$4 counter=$5
    shift 5
    "$HOST_CLI" fw sign --key "${SIGN_KEY:-$UPDATE_KEY}" --version "$version" --board "${SIGN_BOARD:-mps2-an386}" --security-counter "$counter" \
        --load-address "${SLOT_BODY[$slot]}" "$@" "$(slot_bin_for "$slot" "$features")" "$WORK/$name.img" >/dev/null
}

# new_flash IMAGE: a blank PSRAM file with IMAGE in slot 0 (the factory step: `dd`).
new_flash() {
    FLASH_FILE=$WORK/psram.img
    rm -f "$FLASH_FILE"
    truncate -s 16M "$FLASH_FILE"
    dd if="$1" of="$FLASH_FILE" bs=4096 seek="$SLOT0_FILE_OFFSET" oflag=seek_bytes conv=notrunc status=none
}

# boot_update: a new QEMU process on FLASH_FILE with the boot stage as its `-kernel`.
boot_update() {
    QEMU_KERNEL=$(boot_elf_for cut)
    QEMU_MEM=(-object "memory-backend-file,id=psram,size=16M,mem-path=$FLASH_FILE,share=on" -machine memory-backend=psram)
    boot "$SMALL_STORE_KIB"
    # Known, not of this feature (seen with the keyed `-kernel` build of `test` too, on a second
    # QEMU start): after some QEMU starts the first sealed session on UART0 fails its handshake
    # ("authentication failed"), and later ones work. Not understood yet; an unsealed `info`
    # first avoids it, so the cases test the update, not that.
    scli info >/dev/null 2>&1 || true
}

# wait_ready N: until the console has said "tether-fw ready" N times (a reset does not reopen
# the log), at most WATCHDOG_WAIT s.
wait_ready() {
    local i
    for i in $(seq 1 $((WATCHDOG_WAIT * 10))); do
        [ "$(grep -c 'tether-fw ready' "$SERIAL_LOG")" -ge "$1" ] && return 0
        kill -0 "$QEMU_PID" 2>/dev/null || { echo "QEMU ended"; return 1; }
        sleep 0.1
    done
    echo "not ready $1 times within $WATCHDOG_WAIT s:"
    tail -n 20 "$SERIAL_LOG"
    return 1
}
readies() { grep -c 'tether-fw ready' "$SERIAL_LOG"; }

# fw_field CLIENT EXPR: evaluates EXPR (Python, over `s`, the `fw status --json` object).
fw_field() {
    local client=$1 json
    json=$("$client" --json fw status) || return
    python3 -c 'import json, sys; s = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$json" "$2"
}

# runs CLIENT VERSION STATE: the running image is VERSION and its slot's state is STATE.
runs() {
    local got
    got=$(fw_field "$1" 's["running"]["version"] + " " + s["slots"][s["running"]["slot"]]["state"]') || return
    echo "running: $got"
    [ "$got" = "$2 $3" ] || { echo "wanted: $2 $3"; "$1" fw status; return 1; }
}

# slot_is CLIENT SLOT VERSION STATE
slot_is() {
    local got
    got=$(fw_field "$1" "s['slots'][$2]['version'] + ' ' + s['slots'][$2]['state']") || return
    echo "slot $2: $got"
    [ "$got" = "$3 $4" ] || { echo "wanted: $3 $4"; return 1; }
}

# slot_state CLIENT SLOT STATE
slot_state() {
    local got
    got=$(fw_field "$1" "s['slots'][$2]['state']") || return
    echo "slot $2: $got"
    [ "$got" = "$3" ] || { echo "wanted: $3"; return 1; }
}

console_says() { grep -E -- "$1" "$SERIAL_LOG" || { echo "the console never said /$1/:"; tail -n 30 "$SERIAL_LOG"; return 1; }; }

# record_held: the `held` bytes of the upload in the current state record of the PSRAM file (the
# test reads the board's "flash" from outside; 0 when no slot is receiving).
record_held() {
    python3 - "$FLASH_FILE" <<'PY'
import struct, sys, zlib
f = open(sys.argv[1], "rb")
best = None
for at in (0, 0x800):
    f.seek(at)
    r = f.read(128)
    if r[:4] != b"TSR1" or zlib.crc32(r[:124]) != struct.unpack_from("<I", r, 124)[0]:
        continue
    seq = struct.unpack_from("<I", r, 4)[0]
    if best is None or (seq - best[0]) % 2**32 < 2**31:
        best = (seq, r)
held = 0
if best:
    for slot_at in (0x10, 0x44):
        if best[1][slot_at] == 1:  # Receiving
            held = struct.unpack_from("<I", best[1], slot_at + 16)[0]
print(held)
PY
}

# qemu_child: the QEMU process under our `timeout` (to kill it as a power cut would).
qemu_child() { pgrep -P "$QEMU_PID" | head -n 1; }

# wait_qemu_gone: QEMU ended by itself (the test hook's power cut), within CMD_TIMEOUT s.
wait_qemu_gone() {
    local i
    for i in $(seq 1 $((CMD_TIMEOUT * 10))); do
        kill -0 "$QEMU_PID" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "QEMU still runs"
    return 1
}

# --- footprint ------------------------------------------------------------------------------

# boot_footprint: the boot stage's flash (vectors, code, constants, .data's image) against its
# budget; returns 1 if over.
boot_footprint() {
    local elf flash
    elf=$(boot_elf_for "")
    flash=$(($(section_size "$elf" .vector_table) + $(section_size "$elf" .text) + $(section_size "$elf" .rodata) + $(section_size "$elf" .data)))
    printf 'boot stage (firmware/mps2-boot, opt-level z): flash %s B (%s KiB: vectors %s, .text %s, .rodata %s, .data %s), static RAM %s B\n' \
        "$flash" "$(kib "$flash")" "$(section_size "$elf" .vector_table)" "$(section_size "$elf" .text)" \
        "$(section_size "$elf" .rodata)" "$(section_size "$elf" .data)" "$(($(section_size "$elf" .data) + $(section_size "$elf" .bss)))"
    if [ "$flash" -gt "$BOOT_FLASH_BUDGET" ]; then
        log "OVER BUDGET: boot stage flash $flash B > $BOOT_FLASH_BUDGET B"
        return 1
    fi
}

# ed25519_sharing KEYED_ELF UPDATE_ELF: whether the keyed build with the update service carries
# curve25519-dalek's field arithmetic once (shared by X25519 and Ed25519) and what Ed25519's own
# code weighs: the symbols of each crate, summed, in both builds.
ed25519_sharing() {
    local keyed=$1 update=$2
    python3 - "$keyed" "$update" <<'PY'
import re, subprocess, sys
def sizes(elf):
    out = subprocess.run(["nm", "-S", "--size-sort", "-C", elf], capture_output=True, text=True, check=True).stdout
    by = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4 or parts[2] not in "tTrR":
            continue
        size, name = int(parts[1], 16), parts[3]
        m = re.search(r"(curve25519_dalek|ed25519_dalek|x25519_dalek|sha2)::(\w+(?:::\w+)?)", name)
        key = (m.group(1), m.group(2)) if m else None
        if key:
            by.setdefault(key, []).append((name, size))
    return by
k, u = sizes(sys.argv[1]), sizes(sys.argv[2])
def total(by, crate, part=None):
    return sum(s for (c, p), v in by.items() if c == crate and (part is None or p.startswith(part)) for _, s in v)
field = "backend::serial"
print("Ed25519 on thumbv7em (nm sizes of the crates' symbols; keyed build -> keyed build with update):")
for crate, part in (("curve25519_dalek", None), ("curve25519_dalek", field), ("ed25519_dalek", None), ("sha2", None)):
    print("  %-16s %-16s %6d -> %6d B" % (crate, part or "(all)", total(k, crate, part), total(u, crate, part)))
# Shared: every field-arithmetic symbol of the keyed build is in the update build once.
fk = {n for (c, p), v in k.items() if c == "curve25519_dalek" and p.startswith(field) for n, _ in v}
fu = [n for (c, p), v in u.items() if c == "curve25519_dalek" and p.startswith(field) for n, _ in v]
dup = len(fu) - len(set(fu))
print("  field arithmetic: %d symbols in the keyed build, %d in the update build, %s of the keyed ones there, %d duplicated" % (
    len(fk), len(set(fu)), "all" if fk <= set(fu) else "not all", dup))
PY
}

# check_here NAME CMD...: as `check`, but CMD runs in this shell, not a subshell: a case that
# restarts QEMU leaves its pid, ports and pty set for the next ones.
check_here() {
    local name=$1 rc=0
    shift
    "$@" >"$WORK/case.out" 2>&1 || rc=$?
    record "$name" "$rc" "$(cat "$WORK/case.out")"
}

# --- the cases ------------------------------------------------------------------------------

factory_boot() {
    console_says 'no record: factory image 1\.0\.0 in slot 0 made active' &&
        console_says 'booting slot 0, version 1\.0\.0, active' &&
        console_says 'firmware: slot 0, version 1\.0\.0, active' &&
        runs kcli 1.0.0 active
}

# update_to CLIENT IMAGE VERSION [fw update options]: `fw update` succeeds and VERSION runs.
update_to() {
    local client=$1 image=$2 version=$3
    shift 3
    "$client" fw update "$@" "$WORK/$image.img" || return
}

v2_confirmed() {
    update_to kcli v2 2.0.0 || return
    runs kcli 2.0.0 active && slot_is kcli 0 1.0.0 confirmed && console_says 'booting slot 1, version 2\.0\.0, on trial'
}

survives_reset() {
    local n
    n=$(readies)
    kcli reset || return
    wait_ready $((n + 1)) || return
    runs kcli 2.0.0 active
}

survives_new_process() {
    cleanup
    boot_update || return
    console_says 'booting slot 1, version 2\.0\.0, active' && runs kcli 2.0.0 active
}

# v3 over UART0 (fw update --no-confirm): it runs on trial, does not confirm itself (it outlives
# the self-test time on trial), and a reset goes back to v2, `fw status` saying reverted.
v3_reverts() {
    local n
    update_to kscli v3 3.0.0 --no-confirm || return
    runs kscli 3.0.0 trial || return
    sleep 5
    runs kscli 3.0.0 trial || return
    n=$(readies)
    kscli reset || return
    wait_ready $((n + 1)) || return
    runs kscli 2.0.0 active && slot_is kscli 0 3.0.0 reverted &&
        console_says 'slot 0 \(3\.0\.0\) reverted: reset on its trial before it confirmed'
}

# v4 hangs at start: `fw update` sees the board come back with v2 (exit 7, reverted).
v4_watchdog() {
    expect_exit 7 kcli fw update "$WORK/v4.img" || return
    console_says 'hang: this test build stops here' && console_says 'watchdog: not fed' &&
        console_says 'slot 0 \(4\.0\.0\) reverted' && runs kcli 2.0.0 active && slot_is kcli 0 4.0.0 reverted
}

# refused IMAGE REGEX: the upload is refused with REGEX in the answer; v2 still runs, unchanged,
# and slot 0 holds no new image.
refused() {
    local out rc=0 before after
    before=$(fw_field kcli 's["running"]["hash"] + " " + s["slots"][1]["state"]') || return
    out=$(kcli fw upload "$WORK/$1.img" 2>&1) || rc=$?
    printf '%s\n' "$out"
    [ "$rc" -ne 0 ] || { echo "the upload was accepted"; return 1; }
    grep -Eq -- "$2" <<<"$out" || { echo "no /$2/ in the refusal"; return 1; }
    after=$(fw_field kcli 's["running"]["hash"] + " " + s["slots"][1]["state"]') || return
    [ "$before" = "$after" ] || { echo "the running image changed: $before -> $after"; return 1; }
    # The refused upload was discarded: slot 0 holds nothing to test.
    slot_state kcli 0 empty && runs kcli 2.0.0 active
}

# The stack's high-water mark from a reset of it through a whole upload, which ends with the image
# checks (the hash, the Ed25519 signature), against the firmware's operating budget.
stack_of_verify() {
    kcli exec stack reset >/dev/null || return
    kcli fw upload "$WORK/v5.img" || return
    stack_within kcli "$STACK_RUN_BUDGET"
}

# QEMU killed (SIGKILL, as a power cut) during an upload over UART0 once the record says 64 KiB
# are held; a new QEMU process; the next `fw upload` resumes from there and the image verifies.
upload_killed() {
    local pid held=0 i out
    "$HOST_CLI" --to "serial:$SERIAL_PTY" --key-file "$KEYS/board.key" --timeout 10s fw upload "$WORK/v5.img" \
        >"$WORK/killed-upload.log" 2>&1 &
    pid=$!
    for i in $(seq 1 $((SERIAL_CMD_TIMEOUT * 10))); do
        held=$(record_held)
        [ "$held" -gt 0 ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$(qemu_child)" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$held" -gt 0 ] || { echo "no checkpoint seen before the upload ended"; cat "$WORK/killed-upload.log"; return 1; }
    echo "killed QEMU with $held bytes held"
    boot_update || return
    out=$(kscli fw upload "$WORK/v5.img" 2>&1) || { printf '%s\n' "$out"; return 1; }
    printf '%s\n' "$out"
    grep -q "resumed the upload at byte $held" <<<"$out" || { echo "did not resume at $held"; return 1; }
    slot_is kcli 0 5.0.0 pending && runs kcli 2.0.0 active
}

# cut_app N: the power goes after N bytes of the record write of `fw test` (v5 pending in slot 0);
# the next boot runs v2 (N < 128: the new copy is not whole) or v5 on trial (N = 128).
cut_app() {
    local n=$1
    kcli exec fwcut "$n" || return
    kcli fw test >/dev/null 2>&1 || true
    wait_qemu_gone || return
    console_says "fwcut: power cut after $n bytes" || return
    boot_update || return
    if [ "$n" -lt 128 ]; then
        runs kcli 2.0.0 active && slot_is kcli 0 5.0.0 pending
    else
        runs kcli 5.0.0 trial
    fi
}

# cut_boot N IMAGE VERSION: IMAGE (when not empty) is uploaded into the slot that is not running,
# marked by `fw test`, and the power goes after N bytes of the boot stage's first record write
# after the reset (the one that starts the trial). That copy is not whole, so the record still says
# "test": the next boot starts the trial again and VERSION runs on trial.
cut_boot() {
    local n=$1 image=$2 version=$3
    # The trial image of the previous case may not have confirmed itself yet.
    kcli fw confirm >/dev/null || return
    if [ -n "$image" ]; then
        kcli fw upload "$WORK/$image.img" || return
    fi
    kcli exec fwcut boot "$n" || return
    kcli fw test || return
    kcli reset || return
    wait_qemu_gone || return
    console_says "tether-boot: test hook: power cut after $n bytes" || return
    boot_update || return
    runs kcli "$version" trial && console_says "tether-boot: booting slot ., version $version, on trial"
}

# The last cut: the whole new copy is written, then the power goes: the new record counts, and v8
# (uploaded into the slot that is not running) boots on trial.
cut_app_whole() {
    kcli fw confirm >/dev/null || return
    kcli fw upload "$WORK/v8.img" || return
    kcli exec fwcut 128 || return
    kcli fw test >/dev/null 2>&1 || true
    wait_qemu_gone || return
    console_says "fwcut: power cut after 128 bytes" || return
    boot_update || return
    runs kcli 8.0.0 trial
}

update_tests() {
    echo
    echo "== firmware update: the boot stage and keyed images in the file-backed PSRAM, TCP and UART0"
    # Keys in WORK (removed on exit): `test` has set KEYS for the keyed board's cases before.
    KEYS=$WORK/update-keys
    mkdir -m 700 "$KEYS"
    make_key "$KEYS/board.key"
    UPDATE_KEY=$KEYS/fw.key
    "$HOST_CLI" fw keygen "$UPDATE_KEY" >/dev/null
    "$HOST_CLI" fw keygen "$KEYS/other.key" >/dev/null
    FW_KEY_FILE=$KEYS/board.key
    build_boot cut
    build_slot 0 secure,update,cut
    build_slot 1 secure,update,cut
    build_slot 0 secure,update,cut,no-confirm
    build_slot 0 secure,update,hang
    sign v1 0 secure,update,cut 1.0.0 1
    sign v2 1 secure,update,cut 2.0.0 2
    sign v3 0 secure,update,cut,no-confirm 3.0.0 3
    sign v4 0 secure,update,hang 4.0.0 4
    sign v5 0 secure,update,cut 5.0.0 5
    sign v6 1 secure,update,cut 6.0.0 6
    sign v7 0 secure,update,cut 7.0.0 7
    sign v8 1 secure,update,cut 8.0.0 8
    SIGN_KEY=$KEYS/other.key sign badsig 0 secure,update,cut 6.0.0 6
    SIGN_BOARD=other-board sign otherboard 0 secure,update,cut 6.0.0 6
    sign downgrade 0 secure,update,cut 1.5.0 1
    sign wrongslot 1 secure,update,cut 6.0.0 6
    cp "$WORK/v5.img" "$WORK/corrupt.img"
    # One body byte changed: the header's hash no longer matches.
    printf '\xa5' | dd of="$WORK/corrupt.img" bs=1 seek=$((256 + 5000)) conv=notrunc status=none
    log "image: $(stat -c %s "$WORK/v1.img") bytes"

    new_flash "$WORK/v1.img"
    boot_update
    check_here "factory: the boot stage records the dd'd image in slot 0 and boots it (1.0.0)" factory_boot
    check_here "no key: fw status refused (exit 6)" expect_exit 6 cli fw status
    check_here "v1 -> v2 over TCP: fw update, trial boot, confirmed" v2_confirmed
    check_here "v2 survives a reset" survives_reset
    check_here "v2 survives a new QEMU process" survives_new_process
    check_here "info names the running image" expect_out 'firmware.*2\.0\.0' kcli info
    check_here "v3 (never confirms) over UART0: on trial, then a reset reverts it; fw status says reverted" v3_reverts
    check_here "v4 (hangs at start): the watchdog resets it, the board reverts, fw update exits 7" v4_watchdog
    check_here "refused: a corrupted image (hash), v2 untouched" refused corrupt 'SHA-256|hash'
    check_here "refused: wrongly signed, v2 untouched" refused badsig 'signature'
    check_here "refused: another board's image, v2 untouched" refused otherboard 'another board'
    check_here "refused: a downgrade (counter 1 < floor 2), v2 untouched" refused downgrade 'security counter'
    check_here "refused: an image linked for the other slot, v2 untouched" refused wrongslot 'load address'
    check_here "stack: an upload verified (SHA-256, Ed25519) within $((STACK_RUN_BUDGET / 1024)) KiB" stack_of_verify
    sed 's/^/        /' "$WORK/stack.last" 2>/dev/null || true
    check_here "QEMU killed mid-upload (UART0): the next fw upload resumes and verifies" upload_killed
    local n
    for n in 0 4 64 124 127; do
        check_here "power cut after $n bytes of the fw test record write: v2 runs, v5 pending" cut_app "$n"
    done
    check_here "power cut after 1 byte of the boot stage's trial record write: v5 boots on trial" cut_boot 1 "" 5.0.0
    check_here "power cut after 64 bytes of the boot stage's trial record write: v6 boots on trial" cut_boot 64 v6 6.0.0
    check_here "power cut after 127 bytes of the boot stage's trial record write: v7 boots on trial" cut_boot 127 v7 7.0.0
    check_here "power cut after the whole record copy of fw test: it counts (v8 boots on trial)" cut_app_whole
    cleanup
}

# --- bench ----------------------------------------------------------------------------------

# timed LABEL CMD...: runs CMD (its output to $WORK/timed.out), prints "LABEL SECONDS".
timed() {
    local label=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    "$@" >"$WORK/timed.out" 2>&1 || { cat "$WORK/timed.out" >&2; return 1; }
    t1=$(date +%s.%N)
    echo "$label $(python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$t1")"
}

# cmd_bench_update RUNS: the time of a firmware update against a raw copy of the same bytes
# (`put` of the image into the RAM store: the same windowed transfer without the update service's
# erase, checkpoints and checks) and the line rate:
#  1. the emulated board (keyed, sealed sessions), Ethernet and UART0 (QEMU's pty is not paced: it
#     runs as fast as QEMU feeds the UART): `fw upload`, `put`, and the whole `fw update`
#     (upload, test, reset, reboot, reconnect, confirm);
#  2. `sim --serial --baud B` (a pseudo-terminal paced like a UART) at 115200 and 921600 baud: the
#     same core update service, open sessions, `fw upload` and `put` of the same image.
cmd_bench_update() {
    local runs=$1 i line results pty baud port
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    build_host_cli
    host_cargo build --release --quiet --bin sim
    WORK=$(mktemp -d)
    KEYS=$(mktemp -d)
    # The sim's pid is global: the trap runs after this function's locals are gone.
    BENCH_SIM_PID=""
    trap 'cleanup; [ -n "$BENCH_SIM_PID" ] && kill "$BENCH_SIM_PID" 2>/dev/null; rm -rf "$WORK" "$KEYS"' EXIT
    make_key "$KEYS/board.key"
    UPDATE_KEY=$KEYS/fw.key
    "$HOST_CLI" fw keygen "$UPDATE_KEY" >/dev/null
    FW_KEY_FILE=$KEYS/board.key
    # A store large enough for a raw copy of the image.
    SMALL_STORE_KIB=1024
    build_boot cut
    build_slot 0 secure,update,cut
    build_slot 1 secure,update,cut
    sign v1 0 secure,update,cut 1.0.0 1
    local size
    results=$WORK/results
    : >"$results"
    for i in $(seq 1 "$runs"); do
        # Each run from the factory state: v1 in slot 0; the v2 image goes to slot 1.
        sign v2 1 secure,update,cut "2.0.$i" $((i + 1))
        size=$(stat -c %s "$WORK/v2.img")
        new_flash "$WORK/v1.img"
        boot_update
        line=$(timed tcp-upload kcli fw upload "$WORK/v2.img") || die "fw upload over TCP failed"
        echo "$line" >>"$results"
        line=$(timed tcp-put kcli put "$WORK/v2.img" raw.img --overwrite) || die "put over TCP failed"
        echo "$line" >>"$results"
        line=$(timed uart-put kscli put "$WORK/v2.img" raw.img --overwrite) || die "put over UART0 failed"
        echo "$line" >>"$results"
        # The same image again over UART0: the pending one is discarded and replaced, in full.
        sign v2 1 secure,update,cut "2.1.$i" $((i + 1))
        line=$(timed uart-upload kscli fw upload "$WORK/v2.img") || die "fw upload over UART0 failed"
        echo "$line" >>"$results"
        sign v2 1 secure,update,cut "2.2.$i" $((i + 1))
        line=$(timed tcp-update kcli fw update "$WORK/v2.img") || die "fw update over TCP failed"
        echo "$line" >>"$results"
        cleanup
    done
    # The paced serial line of the sim: the same service, any board, no load address.
    "$HOST_CLI" fw sign --key "$UPDATE_KEY" --version 9.0.0 --security-counter 9 "$(slot_bin_for 1 secure,update,cut)" \
        "$WORK/sim.img" >/dev/null
    for baud in 115200 921600; do
        for i in $(seq 1 "$runs"); do
            port=$(free_port)
            mkdir -p "$WORK/sim-root-$baud-$i"
            "$ROOT/target/release/sim" --serial --baud "$baud" --fw-key "$UPDATE_KEY.pub" --root "$WORK/sim-root-$baud-$i" \
                --tcp-port "$port" --udp-port "$(free_port)" --no-plain >"$WORK/sim.log" 2>&1 &
            BENCH_SIM_PID=$!
            pty=""
            for _ in $(seq 100); do
                pty=$(grep -so '/dev/pts/[0-9]*' "$WORK/sim.log" | head -1 || true)
                [ -n "$pty" ] && [ -e "$pty" ] && break
                sleep 0.05
            done
            [ -n "$pty" ] || die "the sim named no pty: $(cat "$WORK/sim.log")"
            line=$(timed "sim$baud-upload" timeout "$SERIAL_CMD_TIMEOUT" "$HOST_CLI" --to "serial:$pty@$baud" fw upload "$WORK/sim.img") ||
                die "fw upload to the sim at $baud failed"
            echo "$line" >>"$results"
            line=$(timed "sim$baud-put" timeout "$SERIAL_CMD_TIMEOUT" "$HOST_CLI" --to "serial:$pty@$baud" put "$WORK/sim.img" raw.img --overwrite) ||
                die "put to the sim at $baud failed"
            echo "$line" >>"$results"
            kill "$BENCH_SIM_PID" 2>/dev/null || true
            wait "$BENCH_SIM_PID" 2>/dev/null || true
            BENCH_SIM_PID=""
        done
    done
    python3 - "$results" "$size" "$(stat -c %s "$WORK/sim.img")" "$runs" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
board_size, sim_size, runs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = {}
for name, secs in rows:
    t.setdefault(name, []).append(float(secs))
def cell(name, size, line=None):
    best, med = min(t[name]), statistics.median(t[name])
    s = "%.2f s (%.1f kB/s)" % (med, size / med / 1000)
    if line:
        s += ", %.2f of line rate" % (size / med / line)
    return s
print()
print("firmware update time (median of %d; image %d bytes on the board, %d on the sim)" % (runs, board_size, sim_size))
print("| link | fw upload | put (raw copy of the same bytes) | upload / put | fw update (upload, test, reset, reconnect, confirm) |")
print("|---|---:|---:|---:|---:|")
up, put = statistics.median(t["tcp-upload"]), statistics.median(t["tcp-put"])
print("| QEMU board, Ethernet (sealed) | %s | %s | %.2f | %s |" % (cell("tcp-upload", board_size), cell("tcp-put", board_size), up / put, cell("tcp-update", board_size)))
up, put = statistics.median(t["uart-upload"]), statistics.median(t["uart-put"])
print("| QEMU board, UART0 pty, unpaced (sealed) | %s | %s | %.2f | - |" % (cell("uart-upload", board_size), cell("uart-put", board_size), up / put))
for baud in (115200, 921600):
    up, put = statistics.median(t["sim%d-upload" % baud]), statistics.median(t["sim%d-put" % baud])
    print("| sim, serial at %d baud (line rate %.1f kB/s) | %s | %s | %.2f | - |" % (
        baud, baud / 10 / 1000, cell("sim%d-upload" % baud, sim_size, baud / 10), cell("sim%d-put" % baud, sim_size, baud / 10), up / put))
PY
}

# --- what Ed25519 verification costs --------------------------------------------------------

# cmd_crypto_cost: links firmware/crypto-cost with nothing, X25519, Ed25519 verification and both,
# for thumbv7em (the MPS2's Cortex-M4) and thumbv6m (a Cortex-M0), with the firmware's profile,
# with sha2's default (unrolled) backend and with the compact one the update builds use; prints the
# flash each adds and how much of it the two share (curve25519-dalek's field arithmetic; SHA-512
# is Ed25519's own).
cmd_crypto_cost() {
    local t v sha dir=firmware/crypto-cost out
    ensure_apt_packages "${APT_PACKAGES[@]}" || die "cannot install ${APT_PACKAGES[*]}"
    out=$(mktemp)
    for sha in unrolled compact; do
        local config=()
        for t in thumbv7em-none-eabihf thumbv6m-none-eabi; do
            [ "$sha" = compact ] && config=(--config "target.$t.rustflags=[\"--cfg\", \"sha2_backend_soft=\\\"compact\\\"\"]")
            for v in none x25519 ed25519 x25519,ed25519; do
                log "crypto-cost: $t, $v, SHA-2 $sha"
                local features=""
                [ "$v" = none ] || features=$v
                (cd "$dir" && deb_cargo build --release --locked --target "$t" -Zbuild-std=core "${config[@]}" \
                    --target-dir "$TARGET_DIR/crypto${config:+-compact}" ${features:+--features "$features"}) >&2 ||
                    die "crypto-cost $t $v ($sha) did not build"
                local elf=$TARGET_DIR/crypto${config:+-compact}/$t/release/crypto-cost
                echo "$sha $t $v $(($(section_size "$elf" .vector_table) + $(section_size "$elf" .text) + $(section_size "$elf" .rodata) + $(section_size "$elf" .data)))" >>"$out"
            done
        done
    done
    python3 - "$out" <<'PY'
import sys
f = {}
for line in open(sys.argv[1]):
    sha, t, v, n = line.split()
    f[(sha, t, v)] = int(n)
print("| target | SHA-2 | X25519 alone | Ed25519 verification alone | both | shared (alone + alone - both) | Ed25519 beside X25519 |")
print("|---|---|---:|---:|---:|---:|---:|")
for sha in ("unrolled", "compact"):
    for t in ("thumbv7em-none-eabihf", "thumbv6m-none-eabi"):
        base = f[(sha, t, "none")]
        x, e, b = (f[(sha, t, v)] - base for v in ("x25519", "ed25519", "x25519,ed25519"))
        print("| %s | %s | %d B | %d B | %d B | %d B | +%d B |" % (t, sha, x, e, b, x + e - b, b - x))
PY
    rm -f "$out"
}
