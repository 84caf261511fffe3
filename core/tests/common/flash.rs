//! A simulated flash for the update tests: two slots and two record copies in RAM, written in
//! steps, that can lose power after any step.

use ed25519_dalek::{Signer, SigningKey};
use tether_core::update::{Board, BoardId, Fault, Header, ImageKey, Record, Semver, Slot, SlotStore, RECORD_LEN};

pub const SLOT_SIZE: usize = 4096;
/// Bytes one write step programs (a flash's write granule).
pub const GRAIN: usize = 16;
/// Bytes one erase step clears.
const SECTOR: usize = 1024;

/// Two slots and two record copies in RAM, written in steps; after `budget` steps the power is
/// gone and every write fails, leaving whatever it had done.
#[derive(Clone)]
pub struct Flash {
    pub slots: [Vec<u8>; 2],
    pub records: [[u8; RECORD_LEN]; 2],
    pub budget: Option<usize>,
    pub steps: usize,
    pub watchdogs: usize,
    pub resets: usize,
    /// Every record written whole, in order.
    pub written: Vec<Record>,
}

impl Flash {
    pub fn new() -> Flash {
        Flash {
            slots: [vec![0xff; SLOT_SIZE], vec![0xff; SLOT_SIZE]],
            records: [[0xff; RECORD_LEN]; 2],
            budget: None,
            steps: 0,
            watchdogs: 0,
            resets: 0,
            written: Vec::new(),
        }
    }

    fn step(&mut self) -> Result<(), Fault> {
        match &mut self.budget {
            Some(0) => return Err(Fault::Io),
            Some(n) => *n -= 1,
            None => {}
        }
        self.steps += 1;
        Ok(())
    }

    /// The board after a power cycle: the same bytes, power back.
    pub fn power_on(&self) -> Flash {
        Flash {
            budget: None,
            ..self.clone()
        }
    }
}

impl SlotStore for Flash {
    fn slot_size(&self) -> u32 {
        SLOT_SIZE as u32
    }

    fn read(&mut self, slot: Slot, offset: u32, buf: &mut [u8]) -> Result<(), Fault> {
        let at = offset as usize;
        buf.copy_from_slice(self.slots[slot.index()].get(at..at + buf.len()).ok_or(Fault::Io)?);
        Ok(())
    }

    fn write(&mut self, slot: Slot, offset: u32, data: &[u8]) -> Result<(), Fault> {
        let mut at = offset as usize;
        if at + data.len() > SLOT_SIZE {
            return Err(Fault::Io);
        }
        for piece in data.chunks(GRAIN) {
            self.step()?;
            self.slots[slot.index()][at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        Ok(())
    }

    fn erase(&mut self, slot: Slot) -> Result<(), Fault> {
        for sector in 0..SLOT_SIZE / SECTOR {
            self.step()?;
            self.slots[slot.index()][sector * SECTOR..(sector + 1) * SECTOR].fill(0xff);
        }
        Ok(())
    }

    fn read_record(&mut self, copy: usize, buf: &mut [u8; RECORD_LEN]) -> Result<(), Fault> {
        *buf = self.records[copy];
        Ok(())
    }

    fn write_record(&mut self, copy: usize, record: &[u8; RECORD_LEN]) -> Result<(), Fault> {
        self.step()?;
        self.records[copy] = [0xff; RECORD_LEN];
        for (i, piece) in record.chunks(GRAIN).enumerate() {
            self.step()?;
            self.records[copy][i * GRAIN..i * GRAIN + piece.len()].copy_from_slice(piece);
        }
        if let Some(r) = Record::from_bytes(record) {
            self.written.push(r);
        }
        Ok(())
    }
}

impl Board for Flash {
    fn schedule_reset(&mut self) {
        self.resets += 1;
    }

    fn start_watchdog(&mut self) {
        self.watchdogs += 1;
    }
}

/// The signing key of the update tests.
pub fn signer() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32])
}

pub fn key() -> ImageKey {
    ImageKey::from_bytes(&signer().verifying_key().to_bytes()).unwrap()
}

pub fn board() -> BoardId {
    BoardId::new("test-board").unwrap()
}

/// A signed image: version `minor` of 1.x.0, `len` body bytes, security counter `counter`.
pub fn image_with(signer: &SigningKey, minor: u16, counter: u32, board: BoardId, len: usize) -> Vec<u8> {
    let body: Vec<u8> = (0..len).map(|i| (i as u8) ^ (minor as u8).wrapping_mul(31)).collect();
    let mut h = Header::for_body(Semver::new(1, minor, 0), counter, board, 0, &body);
    h.signature = signer.sign(&h.signed_bytes()).to_bytes();
    let mut image = h.to_bytes().to_vec();
    image.extend_from_slice(&body);
    image
}
