//! The probe's UART: polled, no interrupts, no rings. Reads and writes are volatile accesses to
//! the chip's registers, so the linked size includes a real driver's I/O path and nothing the
//! optimiser could drop.
//!
//! - `board = "mps2"`: UART0 of the MPS2 AN386, a CMSDK APB UART (one byte each way; QEMU's first
//!   `-serial`).
//! - `board = "microbit"`: UART0 of the nRF51822 (QEMU's `-M microbit` wires it to the first
//!   `-serial`; its six-byte RX FIFO is behind one RXD register).
//!
//! A polled UART is enough for a probe under QEMU, which hands over the next received byte only
//! once the last was read. On a real board at speed the one-byte CMSDK buffer would overrun while
//! the session hashes a chunk: drive it from interrupts there, as firmware/mps2-an386 does.
#![allow(unsafe_code)]

use core::convert::Infallible;

/// One register of the UART at `offset` from its base.
#[derive(Clone, Copy)]
struct Reg(usize);

impl Reg {
    #[inline(always)]
    fn read(self) -> u32 {
        // SAFETY: every `Reg` is one of the constants below: an aligned word in the UART's
        // register block, device memory that no Rust object occupies.
        unsafe { core::ptr::read_volatile((BASE + self.0) as *const u32) }
    }

    #[inline(always)]
    fn write(self, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((BASE + self.0) as *mut u32, value) }
    }
}

#[cfg(board = "mps2")]
mod regs {
    use super::Reg;
    pub const BASE: usize = 0x4000_4000;
    pub const DATA: Reg = Reg(0x00);
    pub const STATE: Reg = Reg(0x04);
    pub const CTRL: Reg = Reg(0x08);
    pub const BAUDDIV: Reg = Reg(0x10);
    pub const STATE_TX_FULL: u32 = 1 << 0;
    pub const STATE_RX_FULL: u32 = 1 << 1;
    pub const CTRL_TX_EN: u32 = 1 << 0;
    pub const CTRL_RX_EN: u32 = 1 << 1;
    /// 25 MHz / 115200 baud.
    pub const DIVIDER: u32 = 25_000_000 / 115_200;
}

#[cfg(board = "microbit")]
mod regs {
    use super::Reg;
    pub const BASE: usize = 0x4000_2000;
    pub const STARTRX: Reg = Reg(0x000);
    pub const STARTTX: Reg = Reg(0x008);
    pub const RXDRDY: Reg = Reg(0x108);
    pub const TXDRDY: Reg = Reg(0x11C);
    pub const ENABLE: Reg = Reg(0x500);
    pub const PSELTXD: Reg = Reg(0x50C);
    pub const PSELRXD: Reg = Reg(0x514);
    pub const RXD: Reg = Reg(0x518);
    pub const TXD: Reg = Reg(0x51C);
    pub const BAUDRATE: Reg = Reg(0x524);
    pub const INTENSET: Reg = Reg(0x304);
    pub const INT_RXDRDY: u32 = 1 << 2;
    pub const INT_TXDRDY: u32 = 1 << 7;
    pub const ENABLE_UART: u32 = 4;
    /// The micro:bit's USB-serial pins (P0.24 TX, P0.25 RX).
    pub const PIN_TX: u32 = 24;
    pub const PIN_RX: u32 = 25;
    pub const BAUD_115200: u32 = 0x01D7_E000;
}

use regs::*;

/// The UART as an `embedded-io` byte stream. Reads and writes never fail.
pub struct Uart {
    /// microbit: a byte was written to TXD and its TXDRDY event has not been seen yet.
    #[cfg(board = "microbit")]
    tx_busy: bool,
    /// Bytes received and sent since boot (the cost meter's sign of work).
    moved: u64,
}

/// The nRF51's UART0 interrupt line (NVIC 2), unmasked only around WFI ([`Uart::sleep`]): it
/// wakes the core but its handler never runs.
#[cfg(board = "microbit")]
#[derive(Clone, Copy)]
struct Uart0Irq;

// SAFETY: 2 is UART0's interrupt number on the nRF51.
#[cfg(board = "microbit")]
unsafe impl cortex_m::interrupt::InterruptNumber for Uart0Irq {
    fn number(self) -> u16 {
        2
    }
}

impl Uart {
    /// Sets 115200 baud and enables both directions.
    #[cfg(board = "mps2")]
    pub fn init() -> Self {
        BAUDDIV.write(DIVIDER);
        CTRL.write(CTRL_TX_EN | CTRL_RX_EN);
        Uart { moved: 0 }
    }

    /// Sets the pins and 115200 baud, enables the UART and starts both directions.
    #[cfg(board = "microbit")]
    pub fn init() -> Self {
        PSELTXD.write(PIN_TX);
        PSELRXD.write(PIN_RX);
        BAUDRATE.write(BAUD_115200);
        ENABLE.write(ENABLE_UART);
        STARTTX.write(1);
        STARTRX.write(1);
        // The RXDRDY and TXDRDY events raise the interrupt line, which wakes WFI (`sleep`).
        INTENSET.write(INT_RXDRDY | INT_TXDRDY);
        Uart {
            tx_busy: false,
            moved: 0,
        }
    }

    /// Sleeps in WFI until the UART has an event or the tick comes, unless it has one already;
    /// returns the clock ticks asleep and whether the tick alone woke it (`None`: did not sleep).
    /// With interrupts masked throughout, so nothing slips in between the check and the WFI: the
    /// UART's line is unmasked in the NVIC only meanwhile, and a pending line ends WFI without its
    /// handler ever running; SysTick's handler runs once interrupts are enabled again.
    #[cfg(board = "microbit")]
    pub fn sleep(&mut self) -> Option<(u64, bool)> {
        use cortex_m::peripheral::NVIC;
        cortex_m::interrupt::free(|_| {
            if RXDRDY.read() != 0 || TXDRDY.read() != 0 {
                return None;
            }
            NVIC::unpend(Uart0Irq);
            // SAFETY: the line is masked again before interrupts are enabled, so its handler
            // (cortex-m-rt's default) never runs; no critical section relies on it being masked.
            unsafe { NVIC::unmask(Uart0Irq) };
            let start = crate::clock::ticks();
            cortex_m::asm::wfi();
            let slept = crate::clock::ticks().wrapping_sub(start);
            NVIC::mask(Uart0Irq);
            let uart = NVIC::is_pending(Uart0Irq);
            NVIC::unpend(Uart0Irq);
            Some((slept, !uart))
        })
    }

    /// The AN386's UART is polled without interrupts here: no sleep, the loop spins.
    #[cfg(board = "mps2")]
    pub fn sleep(&mut self) -> Option<(u64, bool)> {
        None
    }

    /// Bytes received and sent since boot.
    pub fn bytes_moved(&self) -> u64 {
        self.moved
    }

    #[cfg(board = "mps2")]
    fn rx_ready(&mut self) -> bool {
        STATE.read() & STATE_RX_FULL != 0
    }

    #[cfg(board = "mps2")]
    fn rx_take(&mut self) -> u8 {
        DATA.read() as u8
    }

    #[cfg(board = "mps2")]
    fn tx_ready(&mut self) -> bool {
        STATE.read() & STATE_TX_FULL == 0
    }

    #[cfg(board = "mps2")]
    fn tx_put(&mut self, byte: u8) {
        DATA.write(u32::from(byte));
    }

    #[cfg(board = "microbit")]
    fn rx_ready(&mut self) -> bool {
        RXDRDY.read() != 0
    }

    #[cfg(board = "microbit")]
    fn rx_take(&mut self) -> u8 {
        // Clear the event first: reading RXD raises it again if the FIFO holds more.
        RXDRDY.write(0);
        RXD.read() as u8
    }

    #[cfg(board = "microbit")]
    fn tx_ready(&mut self) -> bool {
        if self.tx_busy && TXDRDY.read() != 0 {
            TXDRDY.write(0);
            self.tx_busy = false;
        }
        !self.tx_busy
    }

    #[cfg(board = "microbit")]
    fn tx_put(&mut self, byte: u8) {
        self.tx_busy = true;
        TXD.write(u32::from(byte));
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.rx_ready())
    }
}

impl embedded_io::WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.tx_ready())
    }
}

impl embedded_io::Read for Uart {
    /// Waits (spinning) for one byte, then takes what else has arrived.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.rx_ready() {}
        let mut n = 0;
        while n < buf.len() && self.rx_ready() {
            buf[n] = self.rx_take();
            n += 1;
        }
        self.moved += n as u64;
        Ok(n)
    }
}

impl embedded_io::Write for Uart {
    /// Waits (spinning) until the transmitter takes a byte, then gives it what it takes.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.tx_ready() {}
        let mut n = 0;
        while n < buf.len() && self.tx_ready() {
            self.tx_put(buf[n]);
            n += 1;
        }
        self.moved += n as u64;
        Ok(n)
    }

    /// Waits until the transmitter has taken the last byte.
    fn flush(&mut self) -> Result<(), Infallible> {
        while !self.tx_ready() {}
        Ok(())
    }
}
