# Shared by scripts/embedded-build.sh and scripts/firmware.sh: Debian packages and Debian's
# Rust toolchain (rustc-web, cargo-web, rust-web-src), whose variables are set on one command
# line only, never exported, so that rustup's cargo never sees them.
# The sourcing script defines `log MESSAGE` first.

DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
DEB_RUSTDOC=/usr/bin/rustdoc

# ensure_apt_packages PKG...: installs the missing ones. `apt-get update` runs only when a
# missing package has no candidate (a fresh machine) or the install fails on stale lists.
# Returns 1 when it cannot install (not root and no sudo, or apt fails).
ensure_apt_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing missing packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { log "not root and no sudo: install ${missing[*]} by hand"; return 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    for p in "${missing[@]}"; do
        if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
            "${sudo[@]}" apt-get update -q
            break
        fi
    done
    if ! "${sudo[@]}" apt-get install -y -q "${missing[@]}" </dev/null; then
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" apt-get install -y -q "${missing[@]}" </dev/null
    fi
}

# deb_cargo ARGS...: Debian's cargo with Debian's rustc and rustdoc, for -Zbuild-std.
deb_cargo() {
    env RUSTC="$DEB_RUSTC" RUSTDOC="$DEB_RUSTDOC" RUSTC_BOOTSTRAP=1 "$DEB_CARGO" "$@"
}

# section_size ELF NAME: size in bytes of section NAME (0 if absent), from readelf -S (binutils;
# plain awk and bash arithmetic only, so it works with Debian's default mawk).
section_size() {
    local hex
    hex=$(readelf -SW "$1" | awk -v name="$2" '
        { for (i = 1; i <= NF; i++) if ($i == name) { print $(i + 4); exit } }')
    echo $((16#${hex:-0}))
}

# make_key FILE: a throwaway key file (32 bytes from the OS CSPRNG as 64 hex digits and a
# newline, mode 0600), for the tests only: real keys are made and kept as docs/PORTING.md says.
make_key() {
    (umask 077 && python3 -c 'import os; print(os.urandom(32).hex())' >"$1")
}

# The cost scripts' brackets (scripts/firmware.sh cost, scripts/serial-probe.sh cost;
# docs/BENCHMARKS.md, "What a byte costs on the device"). Many of each in one bracket: one
# connection's or an empty bracket's count follows the host's timing by several per cent, the
# mean of many much less.
# Echoes go one at a time with a pause after each reply, so that each finds the board idle: run
# back to back, how many of them one pass of the main loop took followed the host's timing (0.6
# to 2.0 passes an echo, 16 % on an echo's count between runs).
COST_EMPTIES=5        # brackets of nothing (reset, then read), for the bracket's own cost
COST_CONNECTIONS=10   # connections of one echo each (`ping -c 1`), for a connection's cost
COST_PINGS=1001       # echoes (and hellos) on one connection, for an echo's (a hello's) cost
COST_PING_PAUSE=5ms   # after each reply (`ping -i`)

# cost_sum: the empty brackets' lines ("empty 0 WORK WORK_PASSES HOUSEKEEPING HOUSEKEEPING_PASSES
# IDLE [RUNS]") on stdin as one, each figure summed, with their count as RUNS
# (scripts/cost-report.py divides by it).
cost_sum() {
    awk '{ label = $1; for (i = 3; i <= 7; i++) sum[i] += $i; n++ }
         END { if (n) printf "%s 0 %d %d %d %d %d %d\n", label, sum[3], sum[4], sum[5], sum[6], sum[7], n }'
}
