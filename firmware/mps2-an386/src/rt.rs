//! Start-up, exception and interrupt glue: the second (and last) place with `unsafe` code.
//!
//! The firmware runs with interrupts masked (PRIMASK set) for its whole life and has no
//! interrupt handlers that ever run. Interrupts are used only to wake the core from WFI: a
//! pending, enabled interrupt ends WFI even while PRIMASK masks it. Two sources are enabled,
//! the LAN9118's receive interrupt (IRQ 13 on the AN386) and a 1 kHz SysTick; after each wake
//! the main loop clears both pending bits (and the chip's interrupt status), serves the
//! network, and sleeps again. Nothing is shared with a handler, so there is no critical section
//! to get wrong, and the emulated chip is not polled while idle.
#![allow(unsafe_code)]

use core::fmt::Write as _;

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{NVIC, SCB, SYST};
use cortex_m_rt::{entry, exception, ExceptionFrame};

use crate::uart::Console;

/// Core clock of the AN386 (and QEMU's model of it).
pub const SYSCLK_HZ: u32 = 25_000_000;
/// SysTick wake-ups per second.
pub const TICK_HZ: u32 = 1000;

/// The LAN9118's interrupt line on the AN386.
#[derive(Debug, Clone, Copy)]
struct EthernetIrq;

// SAFETY: 13 is a valid external interrupt number of the AN386's NVIC.
unsafe impl InterruptNumber for EthernetIrq {
    fn number(self) -> u16 {
        13
    }
}

#[entry]
fn entry() -> ! {
    // Mask interrupts before anything can pend one; they stay masked (see the module doc).
    cortex_m::interrupt::disable();
    crate::app::run()
}

/// Turns on the two wake-up sources: SysTick at [`TICK_HZ`] and the Ethernet interrupt.
pub fn enable_wakeups(syst: &mut SYST) {
    assert!(
        cortex_m::register::primask::read().is_inactive(),
        "interrupts must stay masked"
    );
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
    // SAFETY: unmasking an interrupt can break a critical section that relies on it staying
    // masked; here PRIMASK stays set for the firmware's life, so the interrupt never runs a
    // handler and only ends WFI.
    unsafe { NVIC::unmask(EthernetIrq) };
}

/// Clears the pending state of both wake-up sources, so the next WFI sleeps until a new event.
pub fn clear_wakeups() {
    NVIC::unpend(EthernetIrq);
    SCB::clear_pendst();
}

/// Sleeps until the next wake-up event (a frame or the next tick).
pub fn sleep() {
    cortex_m::asm::wfi();
}

/// Ends the program: under QEMU (feature `qemu`) by semihosting exit with `code`, so a test
/// sees the failure at once; on a board by parking the core.
pub fn halt(code: i32) -> ! {
    #[cfg(feature = "qemu")]
    {
        let status = if code == 0 {
            cortex_m_semihosting::debug::EXIT_SUCCESS
        } else {
            cortex_m_semihosting::debug::EXIT_FAILURE
        };
        cortex_m_semihosting::debug::exit(status);
    }
    let _ = code;
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
fn SysTick() {
    // Never runs (PRIMASK); present so that the vector is not the default handler.
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let _ = writeln!(
        Console,
        "\nHARD FAULT at pc {:#010x}, lr {:#010x}",
        frame.pc(),
        frame.lr()
    );
    halt(2)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    let _ = writeln!(Console, "\nunexpected exception {irqn}");
    halt(2)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Console, "\nPANIC: {info}");
    halt(1)
}
