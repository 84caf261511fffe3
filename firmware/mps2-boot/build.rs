//! Puts `memory.x` where the linker finds it.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    // cortex-m-rt's `device` feature includes `device.x` (a device crate's handler names): none here.
    fs::write(out.join("device.x"), "").expect("write device.x");
    println!("cargo:rerun-if-changed=build.rs");
}
