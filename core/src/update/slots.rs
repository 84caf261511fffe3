//! The slot state machine (`docs/PROTOCOL.md` §18.4): every transition is one write of the
//! state record, to the copy that does not hold the current one.

use crate::msg::Digest;

use super::image::{Acceptance, Header, ImageError, ImageHasher, HEADER_LEN};
use super::record::{Record, SlotRecord, SlotState, RECORD_LEN};
use super::{Board, Fault, Slot, SlotStore};

/// How many bytes an upload writes between two checkpoints of its progress in the record: after
/// a power cut it resumes from the last one (within a run, from the last byte received).
pub const CHECKPOINT: u32 = 64 * 1024;

/// The slot a boot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// The slot.
    pub slot: Slot,
    /// Whether this is its trial boot: unless it confirms, the next boot goes back to the other.
    pub trial: bool,
}

/// Why an update operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// The slot storage failed.
    Storage,
    /// Neither copy of the state record is valid: the board was never provisioned.
    NoRecord,
    /// No slot holds an image that checks.
    NothingBootable,
    /// An image on its trial boot runs: confirm it, or reset to go back, first.
    TrialRunning,
    /// No image with that hash in the slot that is not running (or nothing to test there).
    NoImage,
    /// That image is the one running.
    IsRunning,
    /// No upload is being received into that slot.
    NotReceiving,
    /// The image is refused.
    Image(ImageError),
}

impl From<Fault> for UpdateError {
    fn from(_: Fault) -> UpdateError {
        UpdateError::Storage
    }
}

impl core::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UpdateError::Storage => f.write_str("the slot storage failed"),
            UpdateError::NoRecord => f.write_str("the slots were never provisioned (no state record)"),
            UpdateError::NothingBootable => f.write_str("no slot holds an image that checks"),
            UpdateError::TrialRunning => f.write_str("an image on trial runs: confirm it or reset first"),
            UpdateError::NoImage => f.write_str("no such image in the slot that is not running"),
            UpdateError::IsRunning => f.write_str("that image is the one running"),
            UpdateError::NotReceiving => f.write_str("no upload is being received"),
            UpdateError::Image(e) => write!(f, "{e}"),
        }
    }
}

/// The state machine over a board's slots: the current state record and the store it lives in.
pub struct Slots<'s, S: SlotStore + ?Sized> {
    store: &'s mut S,
    record: Record,
    /// The copy (0 or 1) that holds `record`; the next write goes to the other.
    copy: usize,
}

impl<'s, S: SlotStore + ?Sized> Slots<'s, S> {
    /// Reads the current record from `store`.
    pub fn open(store: &'s mut S) -> Result<Self, UpdateError> {
        let mut copies = [None, None];
        for (i, c) in copies.iter_mut().enumerate() {
            let mut buf = [0u8; RECORD_LEN];
            // A copy that cannot be read counts as damaged: the other may still be whole.
            if store.read_record(i, &mut buf).is_ok() {
                *c = Record::from_bytes(&buf);
            }
        }
        let (record, copy) = Record::current(copies).ok_or(UpdateError::NoRecord)?;
        Ok(Slots { store, record, copy })
    }

    /// Provisions a board: writes the factory `image` into `slot` and a first record in which it
    /// is the active image (the other copy is cleared). What a board's flashing tool does once.
    pub fn provision(store: &'s mut S, slot: Slot, image: &[u8]) -> Result<Self, UpdateError> {
        let header = Header::parse(image).map_err(UpdateError::Image)?;
        if header.image_len() != image.len() as u64 {
            return Err(UpdateError::Image(ImageError::Truncated));
        }
        if image.len() as u64 > u64::from(store.slot_size()) {
            return Err(UpdateError::Image(ImageError::TooLarge));
        }
        store.erase(slot)?;
        store.write(slot, 0, image)?;
        let record = Record::factory(slot, &header);
        store.write_record(1, &[0; RECORD_LEN])?;
        store.write_record(0, &record.to_bytes())?;
        Ok(Slots { store, record, copy: 0 })
    }

    /// The current record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The store.
    pub fn store(&mut self) -> &mut S {
        self.store
    }

    /// Makes `next` the record: writes it, with the next sequence number, to the other copy.
    fn save(&mut self, next: Record) -> Result<(), UpdateError> {
        let next = Record {
            seq: self.record.seq.wrapping_add(1),
            ..next
        };
        let copy = 1 - self.copy;
        self.store.write_record(copy, &next.to_bytes())?;
        self.record = next;
        self.copy = copy;
        Ok(())
    }

    /// Starts (or resumes) an upload of `size` bytes with image hash `hash` into the slot that
    /// is not running. Returns the slot and how many bytes of it are already held: those of the
    /// same upload recorded before (a resume after a restart), else 0 — then the slot is marked
    /// `Receiving` before it is erased, so that no boot ever picks a half-written image.
    pub fn begin(&mut self, running: Boot, size: u32, hash: Digest) -> Result<(Slot, u32), UpdateError> {
        if running.trial {
            return Err(UpdateError::TrialRunning);
        }
        if (size as usize) < HEADER_LEN {
            return Err(UpdateError::Image(ImageError::Truncated));
        }
        if size > self.store.slot_size() {
            return Err(UpdateError::Image(ImageError::TooLarge));
        }
        let target = running.slot.other();
        let t = *self.record.slot(target);
        if t.state == SlotState::Receiving && t.size == size && t.hash == hash {
            return Ok((target, t.held));
        }
        self.save(self.record.with(target, SlotRecord::receiving(size, hash, 0)))?;
        self.store.erase(target)?;
        Ok((target, 0))
    }

    /// Writes upload bytes into `slot` at `offset` (the slot must be receiving).
    pub fn write(&mut self, slot: Slot, offset: u32, data: &[u8]) -> Result<(), UpdateError> {
        if self.record.slot(slot).state != SlotState::Receiving {
            return Err(UpdateError::NotReceiving);
        }
        self.store.write(slot, offset, data)?;
        Ok(())
    }

    /// Records that the first `held` bytes of the upload into `slot` are stored.
    pub fn checkpoint(&mut self, slot: Slot, held: u32) -> Result<(), UpdateError> {
        let t = *self.record.slot(slot);
        if t.state != SlotState::Receiving {
            return Err(UpdateError::NotReceiving);
        }
        if held > t.held {
            self.save(self.record.with(slot, SlotRecord { held, ..t }))?;
        }
        Ok(())
    }

    /// Ends the upload into `slot` whose bytes hashed to `hash`: the image must match the hash
    /// announced and its header, and pass `accept`; then it is `Pending`. A refused image is
    /// discarded (the slot becomes `Empty`).
    pub fn finish(&mut self, slot: Slot, hash: &Digest, accept: &Acceptance<'_>) -> Result<Header, UpdateError> {
        let t = *self.record.slot(slot);
        if t.state != SlotState::Receiving {
            return Err(UpdateError::NotReceiving);
        }
        let checked = if *hash != t.hash {
            Err(UpdateError::Image(ImageError::Hash))
        } else {
            self.header(slot, t.size).and_then(|h| {
                accept.check(&h, hash).map_err(UpdateError::Image)?;
                Ok(h)
            })
        };
        match checked {
            Ok(header) => {
                self.save(self.record.with(slot, SlotRecord::image(&header, SlotState::Pending)))?;
                Ok(header)
            }
            Err(e) => {
                self.discard(slot)?;
                Err(e)
            }
        }
    }

    /// Forgets the image or upload in `slot` (it becomes `Empty`).
    pub fn discard(&mut self, slot: Slot) -> Result<(), UpdateError> {
        self.save(self.record.with(slot, SlotRecord::EMPTY))
    }

    /// `test`: marks the image in the slot that is not running (the one with `hash`, when
    /// given) to run once at the next boot. Its bytes are hashed again and its header must pass
    /// `accept` (signature, board, security counter) now, as when it arrived.
    pub fn test(&mut self, running: Boot, hash: Option<&Digest>, accept: &Acceptance<'_>) -> Result<Slot, UpdateError> {
        if running.trial {
            return Err(UpdateError::TrialRunning);
        }
        let target = running.slot.other();
        let t = *self.record.slot(target);
        if let Some(h) = hash {
            if *h == self.record.slot(running.slot).hash {
                return Err(UpdateError::IsRunning);
            }
            if *h != t.hash {
                return Err(UpdateError::NoImage);
            }
        }
        if !t.state.holds_image() {
            return Err(UpdateError::NoImage);
        }
        if t.state == SlotState::Test {
            return Ok(target);
        }
        let header = self.verify(target)?;
        accept.check(&header, &t.hash).map_err(UpdateError::Image)?;
        self.save(self.record.with(target, t.in_state(SlotState::Test)))?;
        Ok(target)
    }

    /// `confirm`: the image on trial (`running`) becomes the active one, the previous active one
    /// is kept as `Confirmed`, and the security floor rises to the new image's counter. Returns
    /// whether anything changed (confirming a confirmed image changes nothing).
    pub fn confirm(&mut self, running: Boot) -> Result<bool, UpdateError> {
        let t = *self.record.slot(running.slot);
        if !running.trial || t.state != SlotState::Trial {
            return Ok(false);
        }
        let other = running.slot.other();
        let mut next = self.record.with(running.slot, t.in_state(SlotState::Active));
        if next.slot(other).state == SlotState::Active {
            next = next.with(other, next.slot(other).in_state(SlotState::Confirmed));
        }
        next.floor = next.floor.max(t.security_counter);
        self.save(next)?;
        Ok(true)
    }

    /// Reads and parses the header of the image in `slot`, which must be `size` bytes long.
    fn header(&mut self, slot: Slot, size: u32) -> Result<Header, UpdateError> {
        let mut buf = [0u8; HEADER_LEN];
        self.store.read(slot, 0, &mut buf)?;
        let header = Header::parse(&buf).map_err(UpdateError::Image)?;
        if header.image_len() != u64::from(size) {
            return Err(UpdateError::Image(ImageError::Truncated));
        }
        Ok(header)
    }

    /// Checks the image in `slot` against the record: its header parses, its length and hash
    /// are the recorded ones, and its bytes hash to them. (The signature was checked when it
    /// arrived; this finds an image damaged since.)
    pub fn verify(&mut self, slot: Slot) -> Result<Header, UpdateError> {
        let r = *self.record.slot(slot);
        let header = self.header(slot, r.size)?;
        let mut hasher = ImageHasher::new();
        let mut buf = [0u8; HEADER_LEN];
        let mut at = 0u32;
        while at < r.size {
            let n = (r.size - at).min(HEADER_LEN as u32) as usize;
            self.store.read(slot, at, &mut buf[..n])?;
            hasher.update(&buf[..n]);
            at += n as u32;
        }
        let hash = hasher.finish();
        if hash != r.hash || header.hash != r.hash {
            return Err(UpdateError::Image(ImageError::Hash));
        }
        Ok(header)
    }
}

/// Picks the slot to run at boot and records the choice, as a boot stage does before it jumps:
///
/// 1. an image on trial that is still `Trial` was reset before it confirmed: it is `Reverted`;
/// 2. an image marked by `test` becomes `Trial` — its one trial boot is used up before it
///    starts — and runs, with the watchdog started, if it checks;
/// 3. otherwise the `Active` image runs if it checks, else the `Confirmed` one (which then
///    becomes active).
///
/// Every step is one record write, so a power cut anywhere in it, or in the image, leads to a
/// boot that makes the same choice or the next one, and always to an image that checks.
pub fn boot<B: Board + ?Sized>(board: &mut B) -> Result<Boot, UpdateError> {
    let mut slots = Slots::open(board)?;
    if let Some(t) = slots.record.find(SlotState::Trial) {
        let entry = slots.record.slot(t).in_state(SlotState::Reverted);
        slots.save(slots.record.with(t, entry))?;
    }
    if let Some(t) = slots.record.find(SlotState::Test) {
        let entry = *slots.record.slot(t);
        slots.save(slots.record.with(t, entry.in_state(SlotState::Trial)))?;
        if slots.verify(t).is_ok() {
            slots.store.start_watchdog();
            return Ok(Boot { slot: t, trial: true });
        }
        slots.save(slots.record.with(t, entry.in_state(SlotState::Reverted)))?;
    }
    let active = slots.record.find(SlotState::Active);
    if let Some(a) = active {
        if slots.verify(a).is_ok() {
            return Ok(Boot { slot: a, trial: false });
        }
    }
    if let Some(c) = slots.record.find(SlotState::Confirmed) {
        if slots.verify(c).is_ok() {
            let mut next = slots.record.with(c, slots.record.slot(c).in_state(SlotState::Active));
            if let Some(a) = active {
                next = next.with(a, SlotRecord::EMPTY);
            }
            slots.save(next)?;
            return Ok(Boot { slot: c, trial: false });
        }
    }
    Err(UpdateError::NothingBootable)
}
