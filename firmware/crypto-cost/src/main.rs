//! Links one X25519 scalar multiplication (feature `x25519`), one Ed25519 image signature check
//! (feature `ed25519`), both, or neither, with the firmware's profile, so that
//! `scripts/firmware.sh crypto-cost` can weigh each and see whether Ed25519 verification shares
//! curve25519-dalek's field arithmetic with X25519 (docs/BENCHMARKS.md, "Firmware update").
//! The inputs go through `black_box`, so nothing is computed at build time.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::hint::black_box;
use cortex_m_rt::entry;

static INPUT: [u8; 256] = [7; 256];

#[entry]
fn main() -> ! {
    let input = black_box(&INPUT);
    #[cfg(feature = "x25519")]
    {
        let mut scalar = [0u8; 32];
        scalar.copy_from_slice(&input[..32]);
        let mut point = [0u8; 32];
        point.copy_from_slice(&input[32..64]);
        black_box(x25519_dalek::x25519(scalar, point));
    }
    #[cfg(feature = "ed25519")]
    {
        use tether_core::update::image::{Header, ImageKey};
        let mut key = [0u8; 32];
        key.copy_from_slice(&input[64..96]);
        if let (Ok(key), Ok(header)) = (ImageKey::from_bytes(&key), Header::parse(&input[..])) {
            black_box(key.verify(&header).is_ok());
        }
    }
    black_box(input);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
