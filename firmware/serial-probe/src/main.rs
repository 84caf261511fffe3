//! The smallest linked serial-only Tether device: a footprint probe.
//!
//! tether-core without its default features (no smoltcp, no plain-socket services), one
//! [`Device`] with a small RAM store, the built-in `uptime` and `stats` commands and `stack`, and
//! [`tether_core::serial::Serial`] served from a polled UART over `embedded-io`
//! ([`uart::Uart`]). No allocator, no interrupts but SysTick (the clock the session's deadlines
//! use). Its `.text`/`.rodata`/`.data`/`.bss` are what a UART-only device pays for Tether, plus
//! cortex-m-rt's start-up and a few hundred bytes of UART driver
//! (`scripts/serial-probe.sh size`, docs/BENCHMARKS.md).
//!
//! The same source links for two boards (build.rs picks by target): the MPS2 AN386
//! (thumbv7em-none-eabihf) and the BBC micro:bit v1 (thumbv6m-none-eabi, 16 KiB of RAM). Both
//! boot in QEMU and answer host-cli on their first serial port (`scripts/serial-probe.sh test`).
//! With feature `secure` the probe requires its provisioned key (build.rs, as the MPS2 firmware)
//! and seals every session; on the micro:bit its generator of ephemeral keys is seeded and fed by
//! the nRF51's RNG (`src/rng.rs`), and its stack region grows to 7 KiB while the store shrinks to
//! 2.5 KiB.
//!
//! `unsafe` is confined to the register accesses of [`uart`] (and its sleep: the UART's interrupt
//! line unmasked around WFI) and of `rng` (feature `secure`), and the stack painting of [`stack`]
//! (the `stack` command: how deep the stack has been).
//!
//! The main loop sleeps in WFI when a pass moved nothing (on the micro:bit; the AN386's UART is
//! polled without interrupts, so there it spins), and [`cost`] meters the busy time in between:
//! the `cost` command (`scripts/serial-probe.sh cost`).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod cost;
#[path = "../../shared/floor.rs"]
mod floor;
#[cfg(all(feature = "secure", board = "microbit"))]
mod rng;
#[path = "../../shared/stack.rs"]
mod stack;
mod uart;

/// The provisioned key and boot seed (build.rs, feature `secure`).
#[cfg(feature = "secure")]
mod key {
    include!(concat!(env!("OUT_DIR"), "/key.rs"));
}

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use tether_core::serial::Serial;
use tether_core::service::builtin;
use tether_core::service::exec::Command;
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Device, DeviceConfig};
use tether_core::session::Limits;

/// Largest frame in either direction. The driver holds about `3 x MAX_FRAME` + 1.2 KiB.
const MAX_FRAME: usize = 1024;
/// Bytes of the RAM file store: 4 KiB; 2.5 KiB with feature `secure`, whose key, generator of
/// ephemeral keys and channel (0.5 KiB of statics) and deeper stack (the handshake: 6.3 KiB, a
/// 7 KiB region, build.rs) leave the statics 9 KiB of the micro:bit's 16 (docs/BENCHMARKS.md,
/// "The 16 KiB board, sealed").
const STORE_BYTES: usize = if cfg!(feature = "secure") { 2560 } else { 4096 };
/// Files and pending uploads the store can hold.
const FILES: usize = 4;
/// Upload chunks a host may keep in flight.
const WINDOW: u16 = 2;

#[cfg(board = "mps2")]
const NAME: &str = "serial-probe-mps2";
#[cfg(board = "microbit")]
const NAME: &str = "serial-probe-microbit";
/// Core clock: the AN386's 25 MHz; the nRF51's 16 MHz.
#[cfg(board = "mps2")]
const CORE_HZ: u32 = 25_000_000;
#[cfg(board = "microbit")]
const CORE_HZ: u32 = 16_000_000;

/// Milliseconds since boot, modulo 2^32: only the SysTick handler writes it (a load and a
/// store, which thumbv6m can do atomically; it has no read-modify-write atomics).
static TICKS_MS: AtomicU32 = AtomicU32::new(0);

static COMMANDS: [Command<()>; 4] = [
    builtin::uptime_command(),
    builtin::stats_command(),
    stack::stack_command(),
    cost::command(),
];

type ProbeDevice = Device<'static, (), RamStore<'static, FILES>>;

#[entry]
fn main() -> ! {
    // cortex-m-rt's #[entry] hands these out as `&'static mut`, once: no unsafe, no cell. They
    // are zero or uninitialised, so they land in .bss (a non-zero initialiser would put a copy of
    // the whole driver in flash, as .data).
    static mut STORE: [u8; STORE_BYTES] = [0; STORE_BYTES];
    static mut DRIVER: MaybeUninit<Serial<MAX_FRAME>> = MaybeUninit::uninit();
    static mut DEVICE: MaybeUninit<ProbeDevice> = MaybeUninit::uninit();

    stack::paint();
    let mut cp = cortex_m::Peripherals::take().expect("taken once");
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(CORE_HZ / 1000 - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    let mut uart = uart::Uart::init();
    #[cfg(all(feature = "secure", board = "microbit"))]
    rng::start();
    let serial = init_driver(DRIVER);
    let device = init_device(DEVICE, STORE);

    // Widen the 32-bit tick to 64 bits here (the loop runs far more often than every 49 days).
    let mut last = 0u32;
    let mut now: u64 = 0;
    loop {
        let t = TICKS_MS.load(Ordering::Relaxed);
        now += u64::from(t.wrapping_sub(last));
        last = t;
        device.set_uptime(now);
        cost::pass(uart.bytes_moved());
        #[cfg(all(feature = "secure", board = "microbit"))]
        rng::collect();
        let progress = match serial.poll(now, &mut uart, device) {
            Ok(progress) => progress,
            Err(never) => match never {},
        };
        if !progress {
            if let Some((slept, tick_only)) = uart.sleep() {
                cost::slept(slept, tick_only);
            }
        }
    }
}

/// The SysTick clock in core clock cycles since boot, for the cost meter.
pub mod clock {
    use core::sync::atomic::Ordering;

    use cortex_m::peripheral::{SCB, SYST};

    /// Core clock cycles a millisecond (SysTick's period).
    pub const PER_MS: u32 = super::CORE_HZ / 1000;

    /// Cycles since boot: the handler's milliseconds and the counter's position in the current one.
    pub fn ticks() -> u64 {
        cortex_m::interrupt::free(|_| {
            let ms = super::TICKS_MS.load(Ordering::Relaxed);
            // A wrap the handler has not counted yet shows as a pending SysTick: then the second
            // reading is after the wrap; otherwise the first one is before any.
            let first = SYST::get_current();
            let wrapped = SCB::is_pendst_pending();
            let second = SYST::get_current();
            let (ms, current) = if wrapped {
                (ms.wrapping_add(1), second)
            } else {
                (ms, first)
            };
            u64::from(ms) * u64::from(PER_MS) + u64::from(PER_MS - 1 - current.min(PER_MS - 1))
        })
    }
}

// The two constructors are functions of their own so that the value being built is a temporary
// of their frame (or, as LLVM does here, written in place), not a multi-KiB slot in `main`'s
// frame, which lives as long as the device runs: inlined into `main`, the driver's temporary
// kept 4.7 KiB of stack in use for good, more than the micro:bit can spare.
#[inline(never)]
fn init_driver(slot: &'static mut MaybeUninit<Serial<MAX_FRAME>>) -> &'static mut Serial<MAX_FRAME> {
    slot.write(Serial::new(Limits::default()))
}

#[inline(never)]
fn init_device(
    slot: &'static mut MaybeUninit<ProbeDevice>,
    store: &'static mut [u8; STORE_BYTES],
) -> &'static mut ProbeDevice {
    let device = slot.write(Device::new(
        DeviceConfig {
            name: NAME,
            window: WINDOW,
        },
        RamStore::new(store),
        &COMMANDS,
        (),
        MAX_FRAME,
        1,
    ));
    #[cfg(feature = "secure")]
    device.require_key(lock());
    device
}

/// The probe's lock (feature `secure`): the provisioned key; the generator of ephemeral keys
/// seeded with the provisioned boot seed and, on the micro:bit, 32 bytes of the nRF51's RNG, which
/// is also mixed into every handshake. (The AN386 has no RNG: there the boot seed alone seeds it,
/// the same at every boot: see docs/PORTING.md, "Provisioning a key".)
#[cfg(feature = "secure")]
#[inline(never)]
fn lock() -> tether_core::secure::Lock {
    use tether_core::secure::{Lock, Psk};
    #[allow(unused_mut)]
    let mut lock = Lock::new(Psk::from_bytes(key::PSK), key::BOOT_SEED);
    #[cfg(board = "microbit")]
    {
        let mut seed = [0u8; 32];
        rng::fill_waiting(&mut seed);
        lock.mix_entropy(&seed);
        lock.set_entropy(&rng::RNG);
    }
    lock
}

#[exception]
fn SysTick() {
    let t = TICKS_MS.load(Ordering::Relaxed);
    TICKS_MS.store(t.wrapping_add(1), Ordering::Relaxed);
}

/// A panic halts the probe, so that a test sees it (the next request goes unanswered). A device
/// with nobody watching would reset instead (`SCB::sys_reset`) and serve again. A fault (a stack
/// overflow runs into unmapped memory below RAM) ends in cortex-m-rt's HardFault loop, the same.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
