//! The nRF51's random number generator (RNG at 0x4000_D000, which QEMU's `-M microbit` models):
//! the secure probe's seed at boot and the entropy it mixes into every handshake
//! ([`tether_core::hooks::EntropySource`], given to its `Lock`).
//!
//! The peripheral yields a byte every ~170 us (more with bias correction), so the main loop
//! collects its bytes into a small pool as they come ([`collect`], one register read a pass) and a
//! handshake takes what the pool holds (32 bytes when the last handshake is 32 passes or more
//! ago), without waiting. Only the boot seed waits for its 32 bytes ([`fill_waiting`]).
#![allow(unsafe_code)]

use core::cell::RefCell;

use cortex_m::interrupt::Mutex;
use tether_core::hooks::EntropySource;

const BASE: usize = 0x4000_D000;
const TASKS_START: usize = 0x000;
const EVENTS_VALRDY: usize = 0x100;
const CONFIG: usize = 0x504;
const VALUE: usize = 0x508;
/// CONFIG: digital error correction (bias removal).
const DERCEN: u32 = 1;

fn read(offset: usize) -> u32 {
    // SAFETY: an aligned word of the RNG's register block (device memory no Rust object occupies).
    unsafe { core::ptr::read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((BASE + offset) as *mut u32, value) }
}

/// Bytes the pool holds: one handshake's worth.
const POOL: usize = 32;

struct Pool {
    bytes: [u8; POOL],
    len: usize,
}

static POOL_STATE: Mutex<RefCell<Pool>> = Mutex::new(RefCell::new(Pool {
    bytes: [0; POOL],
    len: 0,
}));

/// Starts the generator (bias correction on); call once at boot.
pub fn start() {
    write(CONFIG, DERCEN);
    write(EVENTS_VALRDY, 0);
    write(TASKS_START, 1);
}

/// Takes the generator's next byte if it has one.
fn take() -> Option<u8> {
    if read(EVENTS_VALRDY) == 0 {
        return None;
    }
    write(EVENTS_VALRDY, 0);
    Some(read(VALUE) as u8)
}

/// Moves a ready byte into the pool (the main loop, every pass).
pub fn collect() {
    cortex_m::interrupt::free(|cs| {
        let mut pool = POOL_STATE.borrow(cs).borrow_mut();
        if pool.len < POOL {
            if let Some(b) = take() {
                let at = pool.len;
                pool.bytes[at] = b;
                pool.len += 1;
            }
        }
    });
}

/// Waits for `out.len()` bytes of the generator (the boot seed: some 20 ms for 32 bytes on an
/// nRF51 with bias correction).
pub fn fill_waiting(out: &mut [u8]) {
    for byte in out.iter_mut() {
        *byte = loop {
            if let Some(b) = take() {
                break b;
            }
        };
    }
}

/// The generator as an entropy source: hands over what the pool holds, without waiting.
pub struct Trng;

/// The probe's one generator.
pub static RNG: Trng = Trng;

impl EntropySource for Trng {
    fn fill(&self, out: &mut [u8]) -> usize {
        cortex_m::interrupt::free(|cs| {
            let mut pool = POOL_STATE.borrow(cs).borrow_mut();
            let pool = &mut *pool;
            let n = out.len().min(pool.len);
            let taken = &mut pool.bytes[pool.len - n..pool.len];
            out[..n].copy_from_slice(taken);
            taken.fill(0);
            pool.len -= n;
            n
        })
    }
}
