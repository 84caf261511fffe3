//! The state record: what each slot holds and in which state, in 128 bytes with a CRC
//! (`docs/PROTOCOL.md` §18.3).
//!
//! ```text
//! offset  size  field
//!   0x00     4  magic     "TSR1"
//!   0x04     4  seq       u32 LE: the copy with the greater one (wrapping) is the current record
//!   0x08     4  floor     u32 LE: the lowest security counter accepted
//!   0x0c     4  reserved  0
//!   0x10    52  slot 0    state u8, reserved u8, major/minor/patch u16 LE, security counter,
//!   0x44    52  slot 1    size and held u32 LE, hash [32]
//!   0x78     4  reserved  0
//!   0x7c     4  crc       CRC-32 (ISO-HDLC, as frames) of bytes 0x00..0x7c
//! ```

use crate::crc32;
use crate::msg::Digest;

use super::image::{Header, Semver};
use super::Slot;

/// Length of one copy of the record.
pub const RECORD_LEN: usize = 128;
/// The four bytes a record starts with.
pub const MAGIC: [u8; 4] = *b"TSR1";
const SLOT_AT: [usize; 2] = [0x10, 0x44];
const SLOT_LEN: usize = 52;
const CRC_AT: usize = RECORD_LEN - 4;

/// What a slot holds, as the record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SlotState {
    /// Nothing bootable.
    Empty = 0,
    /// An upload is being written into it; `held` bytes of it are safely stored.
    Receiving = 1,
    /// A verified image, not yet marked to run.
    Pending = 2,
    /// Marked by `test`: the next boot runs it once.
    Test = 3,
    /// Booted once on trial and not confirmed yet: the next boot reverts it.
    Trial = 4,
    /// The confirmed image the device boots.
    Active = 5,
    /// A confirmed image that is no longer the one booted (the previous image).
    Confirmed = 6,
    /// Tried and not confirmed (or it failed its check at boot): never booted again.
    Reverted = 7,
}

impl SlotState {
    /// The state of a code (`docs/PROTOCOL.md` §18.4); `None` for a code no state has.
    pub fn from_code(v: u8) -> Option<SlotState> {
        Some(match v {
            0 => SlotState::Empty,
            1 => SlotState::Receiving,
            2 => SlotState::Pending,
            3 => SlotState::Test,
            4 => SlotState::Trial,
            5 => SlotState::Active,
            6 => SlotState::Confirmed,
            7 => SlotState::Reverted,
            _ => return None,
        })
    }

    /// The state as the protocol reports it (`docs/PROTOCOL.md` §18.4): `empty`, `pending`,
    /// `trial`, `confirmed`, `active` or `reverted`. A slot being received is `empty` (nothing
    /// in it can run); one marked for a trial and one on its trial are both `trial`.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Empty | SlotState::Receiving => "empty",
            SlotState::Pending => "pending",
            SlotState::Test | SlotState::Trial => "trial",
            SlotState::Active => "active",
            SlotState::Confirmed => "confirmed",
            SlotState::Reverted => "reverted",
        }
    }

    /// Whether the slot holds a whole image that was verified when it arrived.
    pub fn holds_image(self) -> bool {
        !matches!(self, SlotState::Empty | SlotState::Receiving)
    }
}

/// One slot's entry in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRecord {
    /// Its state.
    pub state: SlotState,
    /// The image's version (zero while empty or receiving).
    pub version: Semver,
    /// The image's security counter.
    pub security_counter: u32,
    /// The image's length, header included (while receiving: the announced length).
    pub size: u32,
    /// While receiving: how many bytes are stored for sure (an upload resumes from there after
    /// a restart). Otherwise 0.
    pub held: u32,
    /// The image hash (while receiving: the announced one).
    pub hash: Digest,
}

impl SlotRecord {
    /// An empty slot.
    pub const EMPTY: SlotRecord = SlotRecord {
        state: SlotState::Empty,
        version: Semver::new(0, 0, 0),
        security_counter: 0,
        size: 0,
        held: 0,
        hash: [0; 32],
    };

    /// The entry of a verified image with `header`, in `state`.
    pub fn image(header: &Header, state: SlotState) -> SlotRecord {
        SlotRecord {
            state,
            version: header.version,
            security_counter: header.security_counter,
            size: header.image_len() as u32,
            held: 0,
            hash: header.hash,
        }
    }

    /// An upload of `size` bytes with image hash `hash` being received, `held` bytes stored.
    pub fn receiving(size: u32, hash: Digest, held: u32) -> SlotRecord {
        SlotRecord {
            state: SlotState::Receiving,
            size,
            held,
            hash,
            ..SlotRecord::EMPTY
        }
    }

    /// The same entry in another state.
    pub fn in_state(self, state: SlotState) -> SlotRecord {
        SlotRecord { state, ..self }
    }

    fn write(&self, b: &mut [u8]) {
        b[0] = self.state as u8;
        b[2..4].copy_from_slice(&self.version.major.to_le_bytes());
        b[4..6].copy_from_slice(&self.version.minor.to_le_bytes());
        b[6..8].copy_from_slice(&self.version.patch.to_le_bytes());
        b[8..12].copy_from_slice(&self.security_counter.to_le_bytes());
        b[12..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.held.to_le_bytes());
        b[20..52].copy_from_slice(&self.hash);
    }

    fn read(b: &[u8]) -> Option<SlotRecord> {
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if b[1] != 0 {
            return None;
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[20..52]);
        Some(SlotRecord {
            state: SlotState::from_code(b[0])?,
            version: Semver::new(u16_at(2), u16_at(4), u16_at(6)),
            security_counter: u32_at(8),
            size: u32_at(12),
            held: u32_at(16),
            hash,
        })
    }
}

/// The state record: both slots and the security floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Sequence number: each write of the record adds one.
    pub seq: u32,
    /// The lowest security counter an image may have (the counter of the last image confirmed);
    /// it only grows.
    pub floor: u32,
    /// Slot 0 and slot 1.
    pub slots: [SlotRecord; 2],
}

impl Record {
    /// A board's first record: `slot` holds the factory image `header`, active; the other slot
    /// is empty.
    pub fn factory(slot: Slot, header: &Header) -> Record {
        let mut slots = [SlotRecord::EMPTY; 2];
        slots[slot.index()] = SlotRecord::image(header, SlotState::Active);
        Record {
            seq: 1,
            floor: header.security_counter,
            slots,
        }
    }

    /// The entry of `slot`.
    pub fn slot(&self, slot: Slot) -> &SlotRecord {
        &self.slots[slot.index()]
    }

    /// The record with `slot`'s entry replaced.
    pub fn with(&self, slot: Slot, entry: SlotRecord) -> Record {
        let mut r = *self;
        r.slots[slot.index()] = entry;
        r
    }

    /// The first slot in `state`.
    pub fn find(&self, state: SlotState) -> Option<Slot> {
        Slot::BOTH.into_iter().find(|s| self.slot(*s).state == state)
    }

    /// The record's bytes, CRC included.
    pub fn to_bytes(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.floor.to_le_bytes());
        for (entry, at) in self.slots.iter().zip(SLOT_AT) {
            entry.write(&mut b[at..at + SLOT_LEN]);
        }
        let crc = crc32::checksum(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A record from its bytes; `None` unless the magic, the CRC and every field hold (a copy cut
    /// short by a power cut, or never written, is `None`).
    pub fn from_bytes(b: &[u8; RECORD_LEN]) -> Option<Record> {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if b[..4] != MAGIC || crc32::checksum(&b[..CRC_AT]) != u32_at(CRC_AT) {
            return None;
        }
        if u32_at(0x0c) != 0 || u32_at(0x78) != 0 {
            return None;
        }
        Some(Record {
            seq: u32_at(4),
            floor: u32_at(8),
            slots: [
                SlotRecord::read(&b[SLOT_AT[0]..SLOT_AT[0] + SLOT_LEN])?,
                SlotRecord::read(&b[SLOT_AT[1]..SLOT_AT[1] + SLOT_LEN])?,
            ],
        })
    }

    /// Of two copies, the current record and the copy holding it: the valid one, or of two
    /// valid ones the one with the greater sequence number (compared wrapping, so the counter
    /// may roll over). `None` when neither copy is valid (a board never provisioned).
    pub fn current(copies: [Option<Record>; 2]) -> Option<(Record, usize)> {
        match copies {
            [Some(a), Some(b)] if (b.seq.wrapping_sub(a.seq) as i32) > 0 => Some((b, 1)),
            [Some(a), _] => Some((a, 0)),
            [None, Some(b)] => Some((b, 1)),
            [None, None] => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::image::BoardId;

    fn sample() -> Record {
        let h = Header::for_body(Semver::new(1, 2, 3), 7, BoardId::ANY, 0, b"body");
        Record::factory(Slot::B, &h).with(Slot::A, SlotRecord::receiving(4096, [9; 32], 1024))
    }

    #[test]
    fn a_record_round_trips_and_any_damage_is_noticed() {
        let r = sample();
        let bytes = r.to_bytes();
        assert_eq!(Record::from_bytes(&bytes), Some(r));
        assert_eq!(r.slot(Slot::B).size, 260);
        for at in 0..RECORD_LEN {
            let mut b = bytes;
            b[at] ^= 0x10;
            assert_eq!(Record::from_bytes(&b), None, "byte {at}");
        }
        assert_eq!(Record::from_bytes(&[0xff; RECORD_LEN]), None);
        assert_eq!(Record::from_bytes(&[0; RECORD_LEN]), None);
    }

    #[test]
    fn the_newer_copy_wins_also_across_the_wrap() {
        let r = sample();
        let at = |seq| Some(Record { seq, ..r });
        assert_eq!(Record::current([at(4), at(5)]).map(|c| c.1), Some(1));
        assert_eq!(Record::current([at(6), at(5)]).map(|c| c.1), Some(0));
        assert_eq!(Record::current([at(u32::MAX), at(0)]).map(|c| c.1), Some(1));
        assert_eq!(Record::current([None, at(3)]).map(|c| c.1), Some(1));
        assert_eq!(Record::current([at(3), None]).map(|c| c.1), Some(0));
        assert_eq!(Record::current([None, None]), None);
    }

    #[test]
    fn reported_state_names() {
        let names: std::vec::Vec<&str> = (0..8).map(|v| SlotState::from_code(v).unwrap().name()).collect();
        assert_eq!(
            names,
            [
                "empty",
                "empty",
                "pending",
                "trial",
                "trial",
                "active",
                "confirmed",
                "reverted"
            ]
        );
        assert_eq!(SlotState::from_code(8), None);
    }
}
