//! The storage abstraction behind the file services, and the file-name rules.

mod download;
mod listing;
mod upload;

pub(crate) use upload::Upload;

use heapless::String;

use crate::msg::{Digest, MAX_NAME_LEN};
use crate::wire::ErrorCode;

/// An owned file name.
pub type FileName = String<MAX_NAME_LEN>;

/// Size and content digest of a stored file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Digest,
}

/// Why a storage operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// No such file (or no such pending upload).
    NotFound,
    /// A file of that name exists and overwrite was not asked for.
    AlreadyExists,
    /// Not enough room, or no free entry in the file table.
    NoSpace,
    /// The offset is outside the file or not where the upload stands.
    BadOffset,
    /// The name breaks the rules of [`check_name`].
    InvalidName,
    /// Another session is uploading the same name.
    Busy,
    /// The medium failed.
    Io,
}

impl From<StoreError> for ErrorCode {
    fn from(e: StoreError) -> ErrorCode {
        match e {
            StoreError::NotFound => ErrorCode::NotFound,
            StoreError::AlreadyExists => ErrorCode::AlreadyExists,
            StoreError::NoSpace => ErrorCode::NoSpace,
            StoreError::BadOffset => ErrorCode::BadOffset,
            StoreError::InvalidName => ErrorCode::InvalidName,
            StoreError::Busy => ErrorCode::Busy,
            StoreError::Io => ErrorCode::Internal,
        }
    }
}

/// A flat file store with crash-safe uploads.
///
/// An upload goes to a hidden pending slot named after its target. The slot becomes the visible
/// file only at [`Storage::commit`], which the file service calls after it has checked size and
/// SHA-256; until then readers see the old file, or none. A pending slot whose session went away
/// is *suspended*: it keeps its bytes so that the same upload (same name, size and digest) can
/// resume, and a store may reclaim it when it needs the room.
pub trait Storage {
    /// Total bytes the store can hold.
    fn capacity(&self) -> u64;
    /// Bytes in use, pending uploads included.
    fn used(&self) -> u64;
    /// The `index`-th visible file in a stable order: its name goes into `name`, its size is
    /// returned. `None` past the end.
    fn entry(&mut self, index: usize, name: &mut FileName) -> Option<u64>;
    /// Size and digest of a visible file.
    fn stat(&mut self, name: &str) -> Result<FileInfo, StoreError>;
    /// Reads from a visible file at `offset`; returns the bytes read (0 at the end).
    fn read(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// Removes a visible file.
    fn remove(&mut self, name: &str) -> Result<(), StoreError>;

    /// Opens a pending upload of `size` bytes, or resumes a suspended one with the same size and
    /// digest. Returns how many bytes the slot already holds (0 for a new upload). Fails with
    /// `Busy` while another session has the same name open, `AlreadyExists` when a visible file
    /// has the name and `overwrite` is false, `NoSpace` when `size` does not fit.
    fn begin(&mut self, name: &str, size: u64, sha256: &Digest, overwrite: bool) -> Result<u64, StoreError>;
    /// Writes upload bytes at `offset`, which must equal the bytes held so far.
    fn write(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Reads back bytes of a pending upload (to rebuild the digest when resuming).
    fn read_pending(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// Makes a complete pending upload the visible file, atomically replacing any old one.
    fn commit(&mut self, name: &str) -> Result<(), StoreError>;
    /// Drops a pending upload; the visible file, if any, is untouched.
    fn abort(&mut self, name: &str);
    /// Marks a pending upload as no longer attached to a session (it stays resumable).
    fn suspend(&mut self, name: &str);
}

/// Checks a file name against the protocol's rules.
///
/// A name is 1 to [`MAX_NAME_LEN`] bytes of `A-Z a-z 0-9 . _ -`, and does not start with `.`:
/// so no path separators, no `.` or `..`, no absolute paths, no hidden files, nothing a shell or
/// a FAT or ext4 file system would treat specially.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "log.txt", "fw-1.2_b.bin", "A9", "x..y"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "a b",
            "a\\b",
            "é",
            "a\0",
            long.as_str(),
        ] {
            assert_eq!(check_name(bad), Err(StoreError::InvalidName), "{bad:?}");
        }
        assert_eq!(check_name(&"a".repeat(MAX_NAME_LEN)), Ok(()));
    }
}
