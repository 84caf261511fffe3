//! Puts `memory.x` where the linker finds it, turns the build-time RAM store size
//! (`TETHER_FW_STORE_KIB`, default 2048) into a constant and, with feature `secure`, provisions
//! the board: its pre-shared key from the key file named by `TETHER_FIRMWARE_KEY_FILE` and a fresh
//! random boot seed for its generator of ephemeral keys (docs/PORTING.md, "Provisioning a key").

use std::env;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process;

/// The RAM store of the QEMU build: 2 MiB, so that 1 MiB transfers fit.
const DEFAULT_STORE_KIB: u32 = 2048;
/// RAM at 0x2000_0000 is 4 MiB; the store may take up to 3 MiB of it, the rest is for the
/// network buffers and the stack.
const MAX_STORE_KIB: u32 = 3 * 1024;
fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../shared/provision.rs");

    println!("cargo:rerun-if-env-changed=TETHER_FW_STORE_KIB");
    let kib = match env::var("TETHER_FW_STORE_KIB") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u32>()
            .unwrap_or_else(|_| panic!("TETHER_FW_STORE_KIB={v:?} is not a number of KiB")),
        _ => DEFAULT_STORE_KIB,
    };
    assert!(
        (4..=MAX_STORE_KIB).contains(&kib),
        "TETHER_FW_STORE_KIB must be 4..={MAX_STORE_KIB}, got {kib}"
    );
    fs::write(
        out.join("config.rs"),
        format!("/// Size of the RAM file store in KiB (TETHER_FW_STORE_KIB at build time).\npub const STORE_KIB: usize = {kib};\n"),
    )
    .expect("write config.rs");

    if env::var_os("CARGO_FEATURE_SECURE").is_some() {
        provision(&out);
    }
}

// `provision` and its checks, shared with the serial probe's build script.
include!("../shared/provision.rs");
