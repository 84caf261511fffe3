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
}

impl Uart {
    /// Sets 115200 baud and enables both directions.
    #[cfg(board = "mps2")]
    pub fn init() -> Self {
        BAUDDIV.write(DIVIDER);
        CTRL.write(CTRL_TX_EN | CTRL_RX_EN);
        Uart {}
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
        Uart { tx_busy: false }
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
        Ok(n)
    }

    /// Waits until the transmitter has taken the last byte.
    fn flush(&mut self) -> Result<(), Infallible> {
        while !self.tx_ready() {}
        Ok(())
    }
}
