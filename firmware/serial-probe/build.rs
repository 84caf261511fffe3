//! Picks the board by target: the linker script `memory.x` for cortex-m-rt and a `board` cfg
//! that selects the UART driver. With feature `secure`, provisions the key as the MPS2 firmware's
//! build script does (firmware/shared/provision.rs).
//!
//! - thumbv6m-none-eabi: the BBC micro:bit v1 (nRF51822, Cortex-M0: 256 KiB flash, 16 KiB RAM),
//!   which QEMU models as `-M microbit`;
//! - any other thumb target (thumbv7em-none-eabihf): the MPS2 AN386 (Cortex-M4), `-M mps2-an386`.
//!
//! The memory sizes are the real chips'. The stack gets a region of its own at the bottom of RAM,
//! below the statics (as flip-link arranges it): the link fails if the statics outgrow the rest,
//! and a stack that outgrows its region runs off the start of RAM into unmapped memory and faults
//! (the probe then hangs, and `scripts/serial-probe.sh test` fails), instead of silently
//! overwriting the statics as a stack growing down towards .bss would.

use std::env;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process;

/// The micro:bit's memory map with a stack region of `stack_kib` KiB below the statics: 6 KiB; 7 KiB
/// with feature `secure`, whose handshake (X25519) takes the stack to 6.3 KiB (the 6 KiB region
/// overflowed, and the core locked up), while the RAM store shrinks to 2.5 KiB to leave the statics
/// room (src/main.rs).
fn microbit(stack_kib: u32) -> String {
    format!(
        "/* BBC micro:bit v1: nRF51822-QFAA, 256 KiB flash, 16 KiB RAM: {stack_kib} KiB stack, statics. */
MEMORY
{{
  FLASH : ORIGIN = 0x00000000, LENGTH = 256K
  STACK : ORIGIN = 0x20000000, LENGTH = {stack_kib}K
  RAM   : ORIGIN = 0x20000000 + {stack_kib}K, LENGTH = 16K - {stack_kib}K
}}
_stack_start = ORIGIN(STACK) + LENGTH(STACK);
_stack_end = ORIGIN(STACK);
"
    )
}

const MPS2: &str = "/* Arm MPS2 AN386 (QEMU): code SRAM at 0, data SRAM at 0x2000_0000: 64 KiB stack, statics. */
MEMORY
{
  FLASH : ORIGIN = 0x00000000, LENGTH = 4M
  STACK : ORIGIN = 0x20000000, LENGTH = 64K
  RAM   : ORIGIN = 0x20010000, LENGTH = 4M - 64K
}
_stack_start = ORIGIN(STACK) + LENGTH(STACK);
_stack_end = ORIGIN(STACK);
";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").expect("TARGET");
    let secure = env::var_os("CARGO_FEATURE_SECURE").is_some();
    let (board, memory) = if target.starts_with("thumbv6m") {
        ("microbit", microbit(if secure { 7 } else { 6 }))
    } else {
        ("mps2", MPS2.to_string())
    };
    fs::write(out.join("memory.x"), memory).expect("write memory.x");
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rustc-check-cfg=cfg(board, values(\"microbit\", \"mps2\"))");
    println!("cargo::rustc-cfg=board=\"{board}\"");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../shared/provision.rs");
    // Feature `secure`: the board's key (and a boot seed) from the key file, as the MPS2
    // firmware's (docs/PORTING.md, "Provisioning a key").
    if secure {
        provision(&out);
    }
}

// `provision` and its checks, shared with the MPS2 firmware's build script.
include!("../shared/provision.rs");
