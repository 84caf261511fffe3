//! Firmware update (feature `update`): signed images, two slots, a trial boot, confirm or
//! revert. Sans I/O: a board provides the storage, a reset and a watchdog through [`SlotStore`]
//! and [`Board`]; everything else is decided here.
//!
//! - [`image`]: the image format — a 256-byte header (version, security counter, board, load
//!   address, length, SHA-256) signed with Ed25519, then the body — and its checks.
//! - [`record`]: the state record, `{version, hash, state}` per slot, kept in two copies with a
//!   sequence number and a CRC so that a power cut at any instant leaves a whole one.
//! - [`Slots`]: the state machine over the record: upload into the slot that is not running,
//!   `test` (boot it once), `confirm` (keep it), and at boot the choice of the slot to run — a
//!   trial image reset before it confirmed is reverted.
//!
//! The update service (`service`, kinds `FwStatus` … `Reset`) drives it over the wire; a boot
//! stage calls [`boot`] before it jumps to the image. The byte layouts are `docs/PROTOCOL.md`
//! §18; what a board implements is `docs/PORTING.md`.

pub mod image;
pub mod record;
mod slots;

pub use image::{BoardId, Header, ImageError, ImageHasher, ImageKey, Semver};
pub use record::{Record, SlotRecord, SlotState, RECORD_LEN};
pub use slots::{boot, Boot, Slots, UpdateError, CHECKPOINT};

/// One of the two application slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Slot 0.
    A,
    /// Slot 1.
    B,
}

impl Slot {
    /// Both slots, in order.
    pub const BOTH: [Slot; 2] = [Slot::A, Slot::B];

    /// 0 or 1.
    pub const fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    /// The other slot.
    pub const fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot of index 0 or 1.
    pub const fn from_index(i: usize) -> Option<Slot> {
        match i {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            _ => None,
        }
    }
}

/// A storage operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The medium failed (or, in tests, the power went).
    Io,
}

/// Where a board keeps the two slots and the two copies of the state record.
///
/// Writes need not be atomic: the state machine never relies on a write completing. It marks a
/// slot as being written in the record before it writes it, and writes a new record to the copy
/// that does not hold the current one, so a power cut at any instant leaves either the old
/// record or the new one whole, and never a half-written image marked bootable.
pub trait SlotStore {
    /// The size of each slot, in bytes (the largest image it holds).
    fn slot_size(&self) -> u32;
    /// Where an image in `slot` must be linked to run, for a board that runs images in place;
    /// `None` for one that copies or does not run them (the simulator).
    fn load_address(&self, slot: Slot) -> Option<u32> {
        let _ = slot;
        None
    }
    /// Reads `buf.len()` bytes of `slot` from `offset`.
    fn read(&mut self, slot: Slot, offset: u32, buf: &mut [u8]) -> Result<(), Fault>;
    /// Writes `data` into `slot` at `offset`; the bytes were erased since, or are the same.
    fn write(&mut self, slot: Slot, offset: u32, data: &[u8]) -> Result<(), Fault>;
    /// Erases `slot` before a new image is written into it.
    fn erase(&mut self, slot: Slot) -> Result<(), Fault>;
    /// Reads copy `copy` (0 or 1) of the state record.
    fn read_record(&mut self, copy: usize, buf: &mut [u8; RECORD_LEN]) -> Result<(), Fault>;
    /// Writes copy `copy` (0 or 1) of the state record (erasing it first if the medium needs it).
    fn write_record(&mut self, copy: usize, record: &[u8; RECORD_LEN]) -> Result<(), Fault>;
}

/// What a board provides beyond storage: a reset and a watchdog.
pub trait Board: SlotStore {
    /// Resets the device once the answer being sent has gone out (the `Reset` request). The next
    /// boot runs [`boot`], which picks the slot.
    fn schedule_reset(&mut self);
    /// Starts the watchdog before a trial image runs ([`boot`] calls it): an image that hangs
    /// before it confirms is reset, and the next boot reverts it. A board whose images cannot
    /// hang (the simulator runs none) may only note it.
    fn start_watchdog(&mut self);
}
