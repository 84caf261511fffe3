//! The console: CMSDK APB UART0, transmit only (QEMU shows it on `-nographic`'s stdio).

use core::fmt;

use crate::mmio::UART0 as REGS;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const CTRL_TX_EN: u32 = 1 << 0;
/// 25 MHz / 115200 baud.
const DIVIDER: u32 = 25_000_000 / 115_200;

/// A `fmt::Write` to the serial console.
#[derive(Debug, Clone, Copy)]
pub struct Console;

impl Console {
    /// Sets the baud rate and enables the transmitter.
    pub fn init() -> Self {
        REGS.write(BAUDDIV, DIVIDER);
        REGS.write(CTRL, CTRL_TX_EN);
        Console
    }

    fn put(self, byte: u8) {
        // Bounded: at 115200 baud a byte leaves in ~87 us; a stuck UART loses the byte.
        for _ in 0..100_000 {
            if REGS.read(STATE) & STATE_TX_FULL == 0 {
                REGS.write(DATA, u32::from(byte));
                return;
            }
        }
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}
