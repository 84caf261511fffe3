//! The firmware-update medium of the MPS2 AN386 in QEMU: the two application slots and the two
//! copies of the state record, in the 16 MiB PSRAM at 0x2100_0000, which QEMU backs with a file
//! (`-object memory-backend-file,…,share=on -machine mps2-an386,memory-backend=…`), so that it
//! survives a reset and a new QEMU process, as flash would. Shared by the boot stage
//! (firmware/mps2-boot) and the application (firmware/mps2-an386, feature `update`); the layout
//! is docs/PORTING.md §8.
//!
//! ```text
//! 0x2100_0000  record copy 0 (128 B)        0x2100_0800  record copy 1 (128 B)
//! 0x2100_0c00  test hook cell (8 B; only builds with the `cut` hook read it)
//! 0x2100_0f00  slot 0: header (256 B), body at 0x2100_1000 (the load address of slot 0)
//! 0x2180_0f00  slot 1: header (256 B), body at 0x2180_1000 (the load address of slot 1)
//! ```
//!
//! Images run in place: each slot's body is linked for its own address (the image header's
//! `load_address`; the device refuses an image linked for the other slot). Nothing here is in a
//! `-kernel` blob, which QEMU rewrites at every reset.
//!
//! The one `unsafe` thing is turning those fixed addresses into slices (module `medium`).

use tether_core::update::{Fault, Slot, SlotStore, RECORD_LEN};

/// Where the PSRAM starts, and its length.
pub const PSRAM: u32 = 0x2100_0000;
pub const PSRAM_LEN: u32 = 16 << 20;
/// The two copies of the state record, 2 KiB apart (separate erase blocks on a flash part).
pub const RECORD_AT: [u32; 2] = [PSRAM, PSRAM + 0x800];
/// The test hook cell (builds with the `cut` hook only): `CUT_MAGIC` and a byte count.
pub const CUT_AT: u32 = PSRAM + 0xc00;
#[cfg_attr(not(feature = "cut"), allow(dead_code))]
pub const CUT_MAGIC: u32 = 0x5455_4321;
/// Where each slot starts (its image header); the body follows 256 bytes later.
pub const SLOT_AT: [u32; 2] = [PSRAM + 0xf00, PSRAM + 0x80_0f00];
/// Each slot's size: 4 MiB, far more than the firmware (about 150 KiB).
pub const SLOT_SIZE: u32 = 4 << 20;
/// Where the body of an image in `slot` lies: the address it must be linked for.
pub const fn body_at(slot: Slot) -> u32 {
    SLOT_AT[slot.index()] + tether_core::update::image::HEADER_LEN as u32
}

/// Fixed-address access to the PSRAM regions above.
#[allow(unsafe_code)]
mod medium {
    use super::{CUT_AT, PSRAM, PSRAM_LEN, RECORD_AT, SLOT_AT, SLOT_SIZE};
    use tether_core::update::RECORD_LEN;

    /// The region of `len` bytes at `at`: a slot, a record copy or the hook cell.
    fn region(at: u32, len: u32) -> &'static mut [u8] {
        // Only the constants of this file come here (all inside the PSRAM), so no Rust object
        // overlaps them: the linker scripts of both programs place nothing in the PSRAM except the
        // application's code, which lies in a slot body and is only read through these slices.
        assert!(at >= PSRAM && at + len <= PSRAM + PSRAM_LEN);
        // SAFETY: plain RAM, mapped on every AN386; the caller holds the only slice of it (each
        // use is a short borrow in one method, and the program is single-threaded: no interrupt
        // handler touches the PSRAM).
        unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len as usize) }
    }

    pub fn slot(i: usize) -> &'static mut [u8] {
        region(SLOT_AT[i], SLOT_SIZE)
    }

    pub fn record(i: usize) -> &'static mut [u8] {
        region(RECORD_AT[i], RECORD_LEN as u32)
    }

    #[allow(dead_code)]
    pub fn cut_cell() -> &'static mut [u8] {
        region(CUT_AT, 8)
    }
}

/// The slots and the record copies in the PSRAM. (With the `cut` test hook, the including crate
/// provides `cut_power(n) -> !` at its root: it ends the emulator as a power cut would.)
#[derive(Debug, Default)]
pub struct PsramSlots {
    /// Test hook (the `cut` builds): the next record write stops after this many bytes, and
    /// `cut_power` then ends the emulator as a power cut would.
    #[cfg(feature = "cut")]
    pub cut: Option<usize>,
}

impl PsramSlots {
    /// The slots' span within `slot`, checked.
    fn span(offset: u32, len: usize) -> Result<core::ops::Range<usize>, Fault> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(Fault::Io)?;
        if end > SLOT_SIZE as usize {
            return Err(Fault::Io);
        }
        Ok(start..end)
    }

    /// Reads the test hook cell: `Some(n)` when a cut of the record write after `n` bytes is
    /// armed (and disarms it, so that it happens once).
    #[cfg(feature = "cut")]
    #[allow(dead_code)] // only the boot stage reads it; the application arms it
    pub fn take_cut_cell() -> Option<usize> {
        let cell = medium::cut_cell();
        let magic = u32::from_le_bytes([cell[0], cell[1], cell[2], cell[3]]);
        let n = u32::from_le_bytes([cell[4], cell[5], cell[6], cell[7]]);
        cell.fill(0);
        (magic == CUT_MAGIC).then_some(n as usize)
    }

    #[allow(dead_code)] // only the application arms it; the boot stage reads it
    /// Arms the test hook cell for the next boot stage (or application) that reads it.
    #[cfg(feature = "cut")]
    pub fn arm_cut_cell(n: u32) {
        let cell = medium::cut_cell();
        cell[..4].copy_from_slice(&CUT_MAGIC.to_le_bytes());
        cell[4..].copy_from_slice(&n.to_le_bytes());
    }
}

impl SlotStore for PsramSlots {
    fn slot_size(&self) -> u32 {
        SLOT_SIZE
    }

    fn load_address(&self, slot: Slot) -> Option<u32> {
        Some(body_at(slot))
    }

    fn read(&mut self, slot: Slot, offset: u32, buf: &mut [u8]) -> Result<(), Fault> {
        let span = Self::span(offset, buf.len())?;
        buf.copy_from_slice(&medium::slot(slot.index())[span]);
        Ok(())
    }

    fn write(&mut self, slot: Slot, offset: u32, data: &[u8]) -> Result<(), Fault> {
        let span = Self::span(offset, data.len())?;
        medium::slot(slot.index())[span].copy_from_slice(data);
        Ok(())
    }

    fn erase(&mut self, slot: Slot) -> Result<(), Fault> {
        // Erased flash reads 0xff; so does an erased slot here.
        medium::slot(slot.index()).fill(0xff);
        Ok(())
    }

    fn read_record(&mut self, copy: usize, buf: &mut [u8; RECORD_LEN]) -> Result<(), Fault> {
        buf.copy_from_slice(medium::record(copy & 1));
        Ok(())
    }

    fn write_record(&mut self, copy: usize, record: &[u8; RECORD_LEN]) -> Result<(), Fault> {
        let dst = medium::record(copy & 1);
        #[cfg(feature = "cut")]
        if let Some(n) = self.cut.take() {
            // The power goes after `n` bytes of this copy: write them, then stop the machine.
            let n = n.min(RECORD_LEN);
            dst[..n].copy_from_slice(&record[..n]);
            super::cut_power(n);
        }
        dst.copy_from_slice(record);
        Ok(())
    }
}

/// The CMSDK APB watchdog of the AN386 (its registers, and the period both programs use). The
/// boot stage starts it before a trial image runs (`Board::start_watchdog`); the application
/// feeds it from its main loop. Its first expiry raises the NMI, the second resets the system
/// (RESEN), keeping the PSRAM: so an image that stops feeding for two periods is reset, and the
/// boot stage then reverts it.
#[allow(dead_code)] // the boot stage starts it, the application feeds it: each uses a part
pub mod wdog {
    /// The block's base address.
    pub const BASE: u32 = 0x4000_8000;
    /// WDOGLOAD: the count each period starts from.
    pub const LOAD: usize = 0x00;
    /// WDOGCONTROL: bit 0 INTEN (count and raise the interrupt), bit 1 RESEN.
    pub const CONTROL: usize = 0x08;
    pub const INTEN_RESEN: u32 = 0b11;
    /// WDOGINTCLR: any write clears the interrupt and reloads the counter (a feed).
    pub const INTCLR: usize = 0x0c;
    /// WDOGLOCK: writing `UNLOCK` enables writes to the other registers, anything else locks.
    pub const LOCK: usize = 0xc00;
    pub const UNLOCK: u32 = 0x1acc_e551;
    /// One period: 2 s of the 25 MHz WDOGCLK, so a hung image is reset after 4 s.
    pub const PERIOD: u32 = 2 * 25_000_000;
}
