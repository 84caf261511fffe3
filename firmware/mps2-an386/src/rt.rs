//! Start-up, exception and interrupt glue: the second (and last) place with `unsafe` code.
//!
//! Interrupts are masked (PRIMASK) until the application has set everything up, then enabled
//! for good. Four sources are used:
//!
//! - UART0's RX and TX interrupts (IRQ 0 and 1) and the UARTs' combined overrun interrupt
//!   (IRQ 12) run real handlers: the Tether serial port has a one-byte buffer each way, so its
//!   bytes are moved to and from rings in `uart` right when the UART asks (see there);
//! - the LAN9118's receive interrupt (IRQ 13) and a 1 kHz SysTick only wake the main loop: their
//!   handlers set a flag ([`take_wakes`]) and the Ethernet handler masks its own line, which the
//!   main loop unmasks ([`rearm_network`]) after acknowledging the chip, so a level interrupt
//!   does not re-enter while the main loop is busy.
//!
//! The main loop sleeps with [`sleep_unless`]: its "is there work?" check and the WFI happen with
//! interrupts masked, so an interrupt that arrives in between still ends the WFI (a pending
//! interrupt wakes WFI even while PRIMASK masks it) and its handler runs right after; an interrupt
//! that leaves the main loop nothing to do (a UART byte short of a packet's end) does not end the
//! sleep.
#![allow(unsafe_code)]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{NVIC, SYST};
use cortex_m_rt::{entry, exception, ExceptionFrame};

use crate::uart::{self, Console};

/// Core clock of the AN386 (and QEMU's model of it).
pub const SYSCLK_HZ: u32 = 25_000_000;
/// SysTick wake-ups per second.
pub const TICK_HZ: u32 = 1000;

/// An external interrupt line of the AN386 that this firmware uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum Irq {
    /// UART0 received a byte.
    Uart0Rx = 0,
    /// UART0 sent its byte.
    Uart0Tx = 1,
    /// Overrun of UART0, 1 or 2.
    UartOverrun = 12,
    /// The LAN9118.
    Ethernet = 13,
}

// SAFETY: every variant is a valid external interrupt number of the AN386's NVIC.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self as u16
    }
}

/// Set by the Ethernet handler, taken by the main loop.
static NETWORK: AtomicBool = AtomicBool::new(false);
/// Set by SysTick, taken by the main loop.
static TICK: AtomicBool = AtomicBool::new(false);
/// FREE_RUN ticks spent in WFI since the main loop last took them ([`take_idle_ticks`]): every
/// sleep adds the interval from just before its WFI to just after it (both read with interrupts
/// masked, so no handler's time is counted as idle).
static IDLE_TICKS: AtomicU32 = AtomicU32::new(0);

/// What woke the main loop since it last asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakes {
    /// The LAN9118 raised its interrupt (its line is masked until [`rearm_network`]).
    pub network: bool,
    /// A SysTick period passed.
    pub tick: bool,
}

#[entry]
fn entry() -> ! {
    // Masked until the application is ready for the handlers (see the module doc).
    cortex_m::interrupt::disable();
    // Before anything else uses the stack: the `stack` command's high-water mark.
    crate::stack::paint();
    crate::app::run()
}

/// Starts SysTick at [`TICK_HZ`], unmasks the four interrupt lines and enables interrupts.
/// Call once, after the UART and the LAN9118 are set up.
pub fn enable_interrupts(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
    for irq in [Irq::Uart0Rx, Irq::Uart0Tx, Irq::UartOverrun, Irq::Ethernet] {
        NVIC::unpend(irq);
        // SAFETY: nothing in this firmware relies on these lines staying masked; the state their
        // handlers share with the main loop is behind critical sections or atomics.
        unsafe { NVIC::unmask(irq) };
    }
    // SAFETY: as above; no critical section is open here.
    unsafe { cortex_m::interrupt::enable() };
}

/// Takes (and clears) the wake-up flags.
pub fn take_wakes() -> Wakes {
    Wakes {
        network: NETWORK.swap(false, Ordering::AcqRel),
        tick: TICK.swap(false, Ordering::AcqRel),
    }
}

/// Unmasks the Ethernet line again; call after acknowledging the chip's interrupt, so that a
/// frame arriving from then on wakes the main loop.
pub fn rearm_network() {
    // SAFETY: see `enable_interrupts`.
    unsafe { NVIC::unmask(Irq::Ethernet) };
}

/// Sleeps until a wake-up flag is set or `work()` says there is something to do. `work` runs with
/// interrupts masked, so nothing can slip in between it and the WFI. An interrupt that sets no
/// flag and makes no work (a UART byte short of a packet's end: `uart::Port::pull`) runs its
/// handler and the sleep goes on, without a pass of the main loop.
pub fn sleep_unless(mut work: impl FnMut() -> bool) {
    let enabled = cortex_m::register::primask::read().is_active();
    cortex_m::interrupt::disable();
    while !work() && !NETWORK.load(Ordering::Acquire) && !TICK.load(Ordering::Acquire) {
        let before = crate::lan9118::ticks();
        cortex_m::asm::wfi();
        let slept = crate::lan9118::ticks().wrapping_sub(before);
        // Only this context writes it (handlers never do), so a load and a store suffice.
        IDLE_TICKS.store(
            IDLE_TICKS.load(Ordering::Relaxed).wrapping_add(slept),
            Ordering::Relaxed,
        );
        if !enabled {
            break;
        }
        // SAFETY: as below; the pending interrupt that ended the WFI is taken here (the ISB makes
        // sure it is before interrupts are masked again), then the flags are looked at again.
        unsafe { cortex_m::interrupt::enable() };
        cortex_m::asm::isb();
        cortex_m::interrupt::disable();
    }
    if enabled {
        // SAFETY: restores the state found on entry; no critical section spans this call.
        unsafe { cortex_m::interrupt::enable() };
    }
}

/// FREE_RUN ticks spent asleep in WFI since the last call (see [`sleep_unless`]); clears them.
pub fn take_idle_ticks() -> u32 {
    IDLE_TICKS.swap(0, Ordering::Relaxed)
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
    TICK.store(true, Ordering::Release);
}

/// The watchdog's first expiry (feature `update`; the boot stage started it for a trial image):
/// the main loop has not fed it for a period. Said once; the second expiry resets the board.
#[cfg(feature = "update")]
#[exception]
unsafe fn NonMaskableInt() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        let _ = writeln!(
            Console,
            "\nwatchdog: not fed for a period; the next expiry resets the board"
        );
    }
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

/// Every external interrupt lands here (there is no device crate to give each its own vector):
/// dispatch by number.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    match irqn {
        0 => uart::on_rx(),
        1 => uart::on_tx(),
        12 => uart::on_overrun(),
        13 => {
            // Level-triggered until the main loop acknowledges the chip: mask, then flag.
            NVIC::mask(Irq::Ethernet);
            NETWORK.store(true, Ordering::Release);
        }
        _ => {
            let _ = writeln!(Console, "\nunexpected exception {irqn}");
            halt(2)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Where, not what: formatting the message would link the formatting of every panic site's
    // arguments (`str` slicing's char-boundary message alone brings Unicode tables), about
    // 7.3 KB of flash; the file and line find the message in the source.
    match info.location() {
        Some(at) => {
            let _ = writeln!(Console, "\nPANIC at {}:{}", at.file(), at.line());
        }
        None => {
            let _ = writeln!(Console, "\nPANIC");
        }
    }
    halt(1)
}
