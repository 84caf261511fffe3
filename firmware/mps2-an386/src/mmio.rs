//! Volatile access to the board's memory-mapped peripheral registers.
//!
//! This module and the start-up glue in `rt` are the only places with `unsafe` code. What is
//! unsafe here is turning a fixed physical address into a pointer and reading or writing it;
//! the safe API below makes that sound by construction:
//!
//! - a [`Block`] can only be one of the constants of this module, each a register block of the
//!   MPS2 AN386 memory map (peripheral space, where no Rust object is ever placed);
//! - every access is an aligned 32-bit volatile load or store inside its block (checked; the
//!   offsets are constants at every call site, so the checks fold away);
//! - register accesses have side effects on the device (a FIFO read pops a word), never on Rust
//!   memory, so no aliasing rule is involved. Which device side effects are wanted is the
//!   drivers' business, and they are safe code.
#![allow(unsafe_code)]

/// A block of 32-bit device registers at a fixed address.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    base: usize,
    len: usize,
}

impl Block {
    const fn new(base: usize, len: usize) -> Self {
        assert!(base % 4 == 0 && len % 4 == 0 && len > 0);
        Block { base, len }
    }

    #[inline(always)]
    fn addr(&self, offset: usize) -> usize {
        assert!(
            offset % 4 == 0 && offset < self.len,
            "register offset outside its block"
        );
        self.base + offset
    }

    /// Reads the register at `offset` (bytes from the block's base).
    #[inline(always)]
    pub fn read(&self, offset: usize) -> u32 {
        let addr = self.addr(offset);
        // SAFETY: `addr` is an aligned word inside one of this module's register blocks
        // (checked above): device memory that no Rust object occupies.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }

    /// Writes `value` to the register at `offset`.
    #[inline(always)]
    pub fn write(&self, offset: usize, value: u32) {
        let addr = self.addr(offset);
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
    }
}

/// SMSC LAN9118 Ethernet controller (its 256-byte register window).
pub const LAN9118: Block = Block::new(0x4020_0000, 0x100);
/// CMSDK APB UART0: the Tether serial port (QEMU's first `-serial`).
pub const UART0: Block = Block::new(0x4000_4000, 0x20);
/// CMSDK APB UART1: the console (QEMU's second `-serial`).
pub const UART1: Block = Block::new(0x4000_5000, 0x20);
/// MPS2 FPGA I/O: user LEDs at offset 0.
pub const FPGAIO: Block = Block::new(0x4002_8000, 0x60);
/// CMSDK APB watchdog (its lock register is at 0xc00; firmware/shared/psram_slots.rs, `wdog`).
#[cfg(feature = "update")]
pub const WATCHDOG: Block = Block::new(crate::psram_slots::wdog::BASE as usize, 0x1000);
