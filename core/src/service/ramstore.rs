//! A file store in a caller-provided RAM region, for devices without a file system.

use heapless::Vec;

use super::files::{check_name, FileInfo, FileName, Owner, Storage, StoreError, Version};
use crate::msg::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Visible,
    /// An upload: attached to its owner's session, or suspended (`None`).
    Pending {
        owner: Option<Owner>,
    },
}

#[derive(Debug, Clone)]
struct Slot {
    name: FileName,
    /// Start of the slot's bytes in the arena.
    start: usize,
    /// Bytes reserved: the file's (announced) size.
    len: usize,
    /// Bytes written so far (equals `len` for a visible file).
    held: usize,
    sha256: Digest,
    state: State,
    /// For a visible file, the commit that made it: its [`Version`].
    generation: u64,
}

/// A file store over `&mut [u8]` with a table of at most `FILES` entries (visible files and
/// pending uploads together).
///
/// Slots are packed from the start of the region in table order, so free space is always one
/// run at the end: a removal moves later slots down (`copy_within`), which costs a copy of the
/// files behind it but never fragments. An upload reserves its full size at `begin`, so it can
/// never run out of room halfway.
///
/// Every commit numbers the file it makes visible from a store-wide counter; that number is the
/// file's [`Version`], so a read of a version that was replaced or removed is refused exactly.
pub struct RamStore<'m, const FILES: usize> {
    mem: &'m mut [u8],
    slots: Vec<Slot, FILES>,
    /// The last generation handed out (never reused, not even across [`RamStore::clear`]).
    generation: u64,
}

impl<'m, const FILES: usize> RamStore<'m, FILES> {
    /// A store using all of `mem`.
    pub fn new(mem: &'m mut [u8]) -> Self {
        RamStore {
            mem,
            slots: Vec::new(),
            generation: 0,
        }
    }

    /// Drops every file and pending upload.
    pub fn clear(&mut self) {
        self.slots.clear();
    }

    fn top(&self) -> usize {
        self.slots.iter().map(|s| s.len).sum()
    }

    fn find(&self, name: &str, pending: bool) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.name == name && matches!(s.state, State::Pending { .. }) == pending)
    }

    fn drop_slot(&mut self, index: usize) {
        let slot = self.slots.remove(index);
        let end = self.top() + slot.len;
        self.mem.copy_within(slot.start + slot.len..end, slot.start);
        for s in self.slots.iter_mut().skip(index) {
            s.start -= slot.len;
        }
    }

    /// Drops suspended uploads until `need` bytes and one table entry are free.
    fn make_room(&mut self, need: usize) -> Result<(), StoreError> {
        loop {
            let fits = self.mem.len() - self.top() >= need && !self.slots.is_full();
            if fits {
                return Ok(());
            }
            let victim = self
                .slots
                .iter()
                .position(|s| s.state == State::Pending { owner: None });
            match victim {
                Some(i) => self.drop_slot(i),
                None => return Err(StoreError::NoSpace),
            }
        }
    }

    fn visible(&self, name: &str) -> Result<&Slot, StoreError> {
        check_name(name)?;
        self.find(name, false)
            .map(|i| &self.slots[i])
            .ok_or(StoreError::NotFound)
    }

    /// The index of `owner`'s pending upload of `name`.
    fn owned(&self, name: &str, owner: Owner) -> Result<usize, StoreError> {
        let i = self.find(name, true).ok_or(StoreError::NotFound)?;
        match self.slots[i].state {
            State::Pending { owner: Some(o) } if o == owner => Ok(i),
            _ => Err(StoreError::TakenOver),
        }
    }
}

impl<const FILES: usize> Storage for RamStore<'_, FILES> {
    fn capacity(&self) -> u64 {
        self.mem.len() as u64
    }

    fn used(&self) -> u64 {
        self.top() as u64
    }

    fn entry(&mut self, index: usize, name: &mut FileName) -> Option<u64> {
        let slot = self.slots.iter().filter(|s| s.state == State::Visible).nth(index)?;
        name.clone_from(&slot.name);
        Some(slot.len as u64)
    }

    fn stat(&mut self, name: &str) -> Result<FileInfo, StoreError> {
        let slot = self.visible(name)?;
        Ok(FileInfo {
            size: slot.len as u64,
            sha256: slot.sha256,
            version: Version([slot.generation, 0, 0, 0]),
        })
    }

    fn read(&mut self, name: &str, version: Version, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let slot = match self.visible(name) {
            Ok(slot) if Version([slot.generation, 0, 0, 0]) == version => slot,
            Ok(_) | Err(StoreError::NotFound) => return Err(StoreError::Changed),
            Err(e) => return Err(e),
        };
        read_slot(self.mem, slot, slot.len, offset, buf)
    }

    fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let i = self.find(name, false).ok_or(StoreError::NotFound)?;
        self.drop_slot(i);
        Ok(())
    }

    fn begin(
        &mut self,
        name: &str,
        owner: Owner,
        size: u64,
        sha256: &Digest,
        overwrite: bool,
    ) -> Result<u64, StoreError> {
        check_name(name)?;
        if !overwrite && self.find(name, false).is_some() {
            return Err(StoreError::AlreadyExists);
        }
        if let Some(i) = self.find(name, true) {
            let slot = &mut self.slots[i];
            if slot.len as u64 == size && slot.sha256 == *sha256 {
                // Resumed, or taken over from a session that may be gone without a word.
                slot.state = State::Pending { owner: Some(owner) };
                return Ok(slot.held as u64);
            }
            if matches!(slot.state, State::Pending { owner: Some(o) } if o != owner) {
                return Err(StoreError::Busy);
            }
            self.drop_slot(i);
        }
        let size = usize::try_from(size).map_err(|_| StoreError::NoSpace)?;
        if size > self.mem.len() {
            return Err(StoreError::NoSpace);
        }
        self.make_room(size)?;
        let slot = Slot {
            name: FileName::try_from(name).map_err(|_| StoreError::InvalidName)?,
            start: self.top(),
            len: size,
            held: 0,
            sha256: *sha256,
            state: State::Pending { owner: Some(owner) },
            generation: 0,
        };
        self.slots.push(slot).map_err(|_| StoreError::NoSpace)?;
        Ok(0)
    }

    fn write(&mut self, name: &str, owner: Owner, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let i = self.owned(name, owner)?;
        let slot = &mut self.slots[i];
        if offset != slot.held as u64 || slot.held + data.len() > slot.len {
            return Err(StoreError::BadOffset);
        }
        let at = slot.start + slot.held;
        self.mem[at..at + data.len()].copy_from_slice(data);
        slot.held += data.len();
        Ok(())
    }

    fn read_pending(&mut self, name: &str, owner: Owner, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let i = self.owned(name, owner)?;
        let slot = &self.slots[i];
        read_slot(self.mem, slot, slot.held, offset, buf)
    }

    fn commit(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        let i = self.owned(name, owner)?;
        if self.slots[i].held != self.slots[i].len {
            return Err(StoreError::BadOffset);
        }
        if let Some(old) = self.find(name, false) {
            self.drop_slot(old);
        }
        let i = self.find(name, true).ok_or(StoreError::NotFound)?;
        self.generation += 1;
        self.slots[i].state = State::Visible;
        self.slots[i].generation = self.generation;
        Ok(())
    }

    fn abort(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        let i = self.owned(name, owner)?;
        self.drop_slot(i);
        Ok(())
    }

    fn suspend(&mut self, name: &str, owner: Owner) {
        if let Ok(i) = self.owned(name, owner) {
            self.slots[i].state = State::Pending { owner: None };
        }
    }
}

fn read_slot(mem: &[u8], slot: &Slot, limit: usize, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
    let offset = usize::try_from(offset).map_err(|_| StoreError::BadOffset)?;
    if offset > limit {
        return Err(StoreError::BadOffset);
    }
    let n = buf.len().min(limit - offset);
    let at = slot.start + offset;
    buf[..n].copy_from_slice(&mem[at..at + n]);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: Digest = [1; 32];
    const D2: Digest = [2; 32];
    const A: Owner = Owner(1);
    const B: Owner = Owner(2);

    fn put(s: &mut RamStore<'_, 4>, name: &str, data: &[u8], d: &Digest) {
        assert_eq!(s.begin(name, A, data.len() as u64, d, true), Ok(0));
        s.write(name, A, 0, data).unwrap();
        s.commit(name, A).unwrap();
    }

    fn content(s: &mut RamStore<'_, 4>, name: &str) -> std::vec::Vec<u8> {
        let mut buf = [0u8; 64];
        let version = s.stat(name).unwrap().version;
        let n = s.read(name, version, 0, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn upload_is_invisible_until_commit_and_replaces_atomically() {
        let mut mem = [0u8; 64];
        let mut s = RamStore::<4>::new(&mut mem);
        put(&mut s, "a", b"old", &D1);
        assert_eq!(s.begin("a", A, 3, &D2, false), Err(StoreError::AlreadyExists));
        assert_eq!(s.begin("a", A, 5, &D2, true), Ok(0));
        s.write("a", A, 0, b"ne").unwrap();
        assert_eq!(content(&mut s, "a"), b"old");
        assert_eq!(
            s.commit("a", A),
            Err(StoreError::BadOffset),
            "incomplete upload must not commit"
        );
        s.write("a", A, 2, b"new").unwrap();
        s.commit("a", A).unwrap();
        assert_eq!(content(&mut s, "a"), b"nenew");
        let info = s.stat("a").unwrap();
        assert_eq!((info.size, info.sha256), (5, D2));
        assert_eq!(s.used(), 5);
    }

    #[test]
    fn suspended_upload_resumes_and_busy_while_active() {
        let mut mem = [0u8; 64];
        let mut s = RamStore::<4>::new(&mut mem);
        assert_eq!(s.begin("f", A, 6, &D1, false), Ok(0));
        assert_eq!(s.begin("f", B, 6, &D2, false), Err(StoreError::Busy), "another upload");
        assert_eq!(s.begin("f", B, 5, &D1, false), Err(StoreError::Busy), "another size");
        s.write("f", A, 0, b"abc").unwrap();
        assert_eq!(s.write("f", A, 1, b"x"), Err(StoreError::BadOffset));
        s.suspend("f", A);
        assert_eq!(s.begin("f", A, 6, &D1, false), Ok(3));
        let mut b = [0u8; 8];
        assert_eq!(s.read_pending("f", A, 0, &mut b), Ok(3));
        s.suspend("f", A);
        assert_eq!(s.begin("f", A, 6, &D2, false), Ok(0), "a different digest restarts");
        assert_eq!(s.stat("f"), Err(StoreError::NotFound));
    }

    #[test]
    fn removal_compacts_and_suspended_uploads_yield_room() {
        let mut mem = [0u8; 16];
        let mut s = RamStore::<4>::new(&mut mem);
        put(&mut s, "a", b"aaaa", &D1);
        put(&mut s, "b", b"bbbb", &D1);
        put(&mut s, "c", b"cccc", &D1);
        s.remove("b").unwrap();
        assert_eq!(content(&mut s, "a"), b"aaaa");
        assert_eq!(content(&mut s, "c"), b"cccc");
        assert_eq!(s.begin("d", A, 9, &D1, false), Err(StoreError::NoSpace));
        assert_eq!(s.begin("d", A, 8, &D1, false), Ok(0));
        s.suspend("d", A);
        put(&mut s, "e", b"eeeeeeee", &D1);
        assert_eq!(
            s.begin("d", A, 8, &D1, false),
            Err(StoreError::NoSpace),
            "evicted for e"
        );
        let mut name = FileName::new();
        let names: std::vec::Vec<_> = (0..)
            .map_while(|i| s.entry(i, &mut name).map(|_| name.clone()))
            .collect();
        assert_eq!(names, ["a", "c", "e"]);
        assert_eq!(s.remove("../a"), Err(StoreError::InvalidName));
        assert_eq!(s.remove("zz"), Err(StoreError::NotFound));
    }

    #[test]
    fn the_same_upload_is_taken_over_and_the_old_owner_locked_out() {
        let mut mem = [0u8; 64];
        let mut s = RamStore::<4>::new(&mut mem);
        assert_eq!(s.begin("f", A, 6, &D1, false), Ok(0));
        s.write("f", A, 0, b"abc").unwrap();
        // A's session went silent; B presents the same upload and takes it over.
        assert_eq!(s.begin("f", B, 6, &D1, false), Ok(3));
        let mut b = [0u8; 8];
        assert_eq!(s.read_pending("f", A, 0, &mut b), Err(StoreError::TakenOver));
        assert_eq!(s.write("f", A, 3, b"xyz"), Err(StoreError::TakenOver));
        assert_eq!(s.commit("f", A), Err(StoreError::TakenOver));
        // A's abort or end (suspend) leaves B's upload alone.
        assert_eq!(s.abort("f", A), Err(StoreError::TakenOver));
        s.suspend("f", A);
        s.write("f", B, 3, b"def").unwrap();
        s.commit("f", B).unwrap();
        assert_eq!(content(&mut s, "f"), b"abcdef");
        // A different upload is Busy only while its owner is attached.
        assert_eq!(s.begin("g", A, 2, &D1, false), Ok(0));
        assert_eq!(s.begin("g", B, 3, &D2, false), Err(StoreError::Busy));
        s.suspend("g", A);
        assert_eq!(s.begin("g", B, 3, &D2, false), Ok(0), "replaces the suspended one");
        assert_eq!(s.write("g", A, 0, b"x"), Err(StoreError::TakenOver));
    }

    #[test]
    fn reads_are_pinned_to_a_version() {
        let mut mem = [0u8; 64];
        let mut s = RamStore::<4>::new(&mut mem);
        put(&mut s, "f", b"first", &D1);
        let v1 = s.stat("f").unwrap().version;
        let mut b = [0u8; 8];
        assert_eq!(s.read("f", v1, 0, &mut b[..2]), Ok(2));
        // Replaced by a file of the same size: the old version is gone.
        put(&mut s, "f", b"secnd", &D2);
        assert_eq!(s.read("f", v1, 2, &mut b), Err(StoreError::Changed));
        let v2 = s.stat("f").unwrap().version;
        assert_ne!(v1, v2);
        assert_eq!(s.read("f", v2, 0, &mut b), Ok(5));
        // Removed, then put again with the very same bytes: still another version.
        s.remove("f").unwrap();
        assert_eq!(s.read("f", v2, 0, &mut b), Err(StoreError::Changed));
        put(&mut s, "f", b"secnd", &D2);
        assert_eq!(s.read("f", v2, 0, &mut b), Err(StoreError::Changed));
        // Another file's removal moves the bytes but not the version.
        s.remove("f").unwrap();
        put(&mut s, "a", b"aa", &D1);
        put(&mut s, "f", b"third", &D1);
        let v3 = s.stat("f").unwrap().version;
        s.remove("a").unwrap();
        assert_eq!(s.read("f", v3, 0, &mut b), Ok(5));
        assert_eq!(&b[..5], b"third");
    }
}
