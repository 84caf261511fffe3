//! The boot stage's hardware access: the one module with `unsafe` code. Volatile writes to two
//! peripheral blocks (UART1, the console; the watchdog), and the jump into an image.

#![allow(unsafe_code)]

use crate::psram_slots::wdog;

/// CMSDK APB UART1: the console (QEMU's second `-serial`), as the application uses it.
const UART1: u32 = 0x4000_5000;
const DATA: u32 = 0x00;
const STATE: u32 = 0x04;
const CTRL: u32 = 0x08;
const BAUDDIV: u32 = 0x10;
const STATE_TX_FULL: u32 = 1;
const CTRL_TX_EN: u32 = 1;

fn write(addr: u32, value: u32) {
    // SAFETY: `addr` is one of the register addresses of this module (UART1, the watchdog):
    // device memory that no Rust object occupies; a write has effects on the device only.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

fn read(addr: u32) -> u32 {
    // SAFETY: as in `write`.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Enables the console's transmitter at 115200 baud.
pub fn console_init() {
    write(UART1 + BAUDDIV, 25_000_000 / 115_200);
    write(UART1 + CTRL, CTRL_TX_EN);
}

/// Sends one byte on the console (bounded wait: a stuck UART loses it).
pub fn put(byte: u8) {
    for _ in 0..100_000 {
        if read(UART1 + STATE) & STATE_TX_FULL == 0 {
            write(UART1 + DATA, u32::from(byte));
            return;
        }
    }
}

/// Starts the watchdog: reset after two periods without a feed (firmware/shared/psram_slots.rs).
pub fn start_watchdog() {
    let base = wdog::BASE;
    write(base + wdog::LOCK as u32, wdog::UNLOCK);
    write(base + wdog::LOAD as u32, wdog::PERIOD);
    write(base + wdog::INTCLR as u32, 1);
    write(base + wdog::CONTROL as u32, wdog::INTEN_RESEN);
    // Locked again: a wild write of the image cannot stop it.
    write(base + wdog::LOCK as u32, 0);
}

/// Runs the image whose vector table is at `vectors`: VTOR points at it, MSP takes its first word
/// and the core branches to its reset vector. The caller checked both words (`main::runnable`).
pub fn jump(vectors: u32) -> ! {
    // SAFETY: `vectors` is the body of a slot whose image hash the boot just checked and whose
    // header says it is linked for this address; its first two words were checked to be a stack
    // top in data SRAM and a Thumb address inside the image. Nothing of the boot stage is used
    // after the jump (the application sets up its own RAM).
    unsafe {
        (*cortex_m::peripheral::SCB::PTR).vtor.write(vectors);
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        cortex_m::asm::bootload(vectors as *const u32)
    }
}

/// Reads the word at `addr` of a slot body (the vector table's first words).
pub fn word(addr: u32) -> u32 {
    debug_assert!(addr % 4 == 0);
    // SAFETY: callers pass an aligned address inside a slot of the PSRAM (plain RAM, mapped on
    // every AN386), which nothing else holds a reference to while the boot stage runs.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Ends the boot: under QEMU by semihosting exit with a failure (a test sees it at once), on a
/// board by parking the core.
pub fn halt() -> ! {
    #[cfg(feature = "qemu")]
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// The external interrupt vectors (cortex-m-rt's `device` feature, so that the table has one entry
/// rather than a generic build's 240): the boot stage enables no interrupt.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
static __INTERRUPTS: [unsafe extern "C" fn(); 1] = [unexpected_interrupt];

extern "C" fn unexpected_interrupt() {
    crate::say("\ntether-boot: unexpected interrupt\n");
    halt()
}
