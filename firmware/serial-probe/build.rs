//! Picks the board by target: the linker script `memory.x` for cortex-m-rt and a `board` cfg
//! that selects the UART driver.
//!
//! - thumbv6m-none-eabi: the BBC micro:bit v1 (nRF51822, Cortex-M0: 256 KiB flash, 16 KiB RAM),
//!   which QEMU models as `-M microbit`;
//! - any other thumb target (thumbv7em-none-eabihf): the MPS2 AN386 (Cortex-M4), `-M mps2-an386`.
//!
//! The memory sizes are the real chips', so the link fails if the probe's statics do not fit.

use std::env;
use std::fs;
use std::path::PathBuf;

const MICROBIT: &str = "/* BBC micro:bit v1: nRF51822-QFAA. */
MEMORY
{
  FLASH : ORIGIN = 0x00000000, LENGTH = 256K
  RAM   : ORIGIN = 0x20000000, LENGTH = 16K
}
";

const MPS2: &str = "/* Arm MPS2 AN386 as QEMU models it: code SRAM at 0, data SRAM at 0x2000_0000. */
MEMORY
{
  FLASH : ORIGIN = 0x00000000, LENGTH = 4M
  RAM   : ORIGIN = 0x20000000, LENGTH = 4M
}
";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").expect("TARGET");
    let (board, memory) = if target.starts_with("thumbv6m") {
        ("microbit", MICROBIT)
    } else {
        ("mps2", MPS2)
    };
    fs::write(out.join("memory.x"), memory).expect("write memory.x");
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rustc-check-cfg=cfg(board, values(\"microbit\", \"mps2\"))");
    println!("cargo::rustc-cfg=board=\"{board}\"");
    println!("cargo::rerun-if-changed=build.rs");
}
