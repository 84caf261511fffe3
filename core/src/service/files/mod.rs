//! The storage abstraction behind the file services, and the file-name rules.

mod download;
mod listing;
mod upload;

pub(in crate::service) use download::get_step;
pub(crate) use download::Download;
pub(in crate::service) use listing::list_step;
pub(crate) use upload::Upload;

use heapless::String;

use super::policy::{Rule, ServedBy};
use super::stats::Service;
use super::{Conn, Failure, Shared};
use crate::msg::{Digest, MAX_NAME_LEN};
use crate::wire::{ErrorCode, Frame, Kind};

/// The file services: sessions only. Sent again, `PutBegin` answers the same offset (the upload
/// resumes), and the reads answer the same. An upload counts once as a put (at its `PutBegin`), a
/// download as a get; listing, `Stat` and `Remove` as file requests.
pub(crate) const RULES: [Rule; 8] = [
    Rule {
        counted_as: Some(Service::Put),
        ..Rule::session_only(Kind::PutBegin, ServedBy::Files, true, true)
    },
    Rule {
        counted_as: None,
        ..Rule::session_only(Kind::PutData, ServedBy::Files, true, false)
    },
    Rule {
        counted_as: None,
        ..Rule::session_only(Kind::PutCommit, ServedBy::Files, true, false)
    },
    Rule {
        counted_as: None,
        ..Rule::session_only(Kind::PutAbort, ServedBy::Files, true, false)
    },
    Rule {
        streams: true,
        counted_as: Some(Service::Get),
        ..Rule::session_only(Kind::Get, ServedBy::Files, false, true)
    },
    Rule {
        streams: true,
        ..Rule::session_only(Kind::List, ServedBy::Files, false, true)
    },
    Rule::session_only(Kind::Stat, ServedBy::Files, false, true),
    Rule::session_only(Kind::Remove, ServedBy::Files, true, false),
];

/// An owned file name.
pub type FileName = String<MAX_NAME_LEN>;

/// Size, content digest and version of a stored file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Digest,
    /// Which version of the file this is; [`Storage::read`] takes it back.
    pub version: Version,
}

/// One version of a file's content, as its store tells versions apart.
///
/// Opaque to the file service: a store fills it in [`Storage::stat`] (a generation counter, or
/// an inode and time stamps) and [`Storage::read`] refuses with [`StoreError::Changed`] once the
/// file under that name is no longer that version. So a download reads one version from its
/// first byte to its last, or stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version(pub [u64; 4]);

/// The session an attached upload belongs to.
///
/// The file service gives every connection that uploads its own owner (never 0, never reused
/// while the device runs, in practice: a `u32` counter). A store records the owner with the
/// pending upload at [`Storage::begin`] and refuses [`Storage::write`], [`Storage::commit`] and
/// [`Storage::read_pending`] from anyone else with [`StoreError::TakenOver`]; `abort` and
/// `suspend` from anyone else do nothing. That is what makes a takeover safe: the session that
/// lost an upload can never write into it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(pub u32);

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
    /// Another session is uploading the same name (with another size or digest).
    Busy,
    /// The pending upload now belongs to another session, which took it over.
    TakenOver,
    /// The file is no longer the version asked for: removed or replaced since it was opened.
    Changed,
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
            StoreError::TakenOver => ErrorCode::NoTransfer,
            StoreError::Changed => ErrorCode::Changed,
            StoreError::Io => ErrorCode::Internal,
        }
    }
}

/// A flat file store with crash-safe uploads.
///
/// An upload goes to a hidden pending slot named after its target. The slot becomes the visible
/// file only at [`Storage::commit`], which the file service calls after it has checked size and
/// SHA-256; until then readers see the old file, or none. A pending slot is *attached* to the
/// session ([`Owner`]) that began it, or *suspended* once that session went away: it keeps its
/// bytes so that the same upload (same name, size and digest) can resume, and a store may
/// reclaim it when it needs the room. The same upload presented by another session takes an
/// attached slot over (its owner may be a client that vanished without closing); a different
/// upload of the name is `Busy` while the slot is attached and replaces it once suspended.
///
/// Reads are pinned to a [`Version`]: a download stats the file once and reads that version, so
/// a commit, removal or outside rewrite in the middle makes the next read fail with `Changed`
/// instead of mixing two versions.
pub trait Storage {
    /// Total bytes the store can hold.
    fn capacity(&self) -> u64;
    /// Bytes in use, pending uploads included.
    fn used(&self) -> u64;
    /// The `index`-th visible file in a stable order: its name goes into `name`, its size is
    /// returned. `None` past the end.
    fn entry(&mut self, index: usize, name: &mut FileName) -> Option<u64>;
    /// Size, digest and version of a visible file.
    fn stat(&mut self, name: &str) -> Result<FileInfo, StoreError>;
    /// Reads from a visible file at `offset`; returns the bytes read (0 at the end). Fails with
    /// `Changed`, before giving any byte of another version, when the file under `name` is no
    /// longer `version` (from [`Storage::stat`]); removed counts as changed.
    fn read(&mut self, name: &str, version: Version, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// Whether a download must hash the bytes it streams and refuse to confirm them
    /// (`FileDone`) unless they match the digest: for a store whose files can change behind
    /// its back in ways `read` cannot always notice (another process writing in place). Costs
    /// one SHA-256 pass over what is streamed.
    fn verify_reads(&self) -> bool {
        false
    }
    /// A download of `version` from offset 0 hashed its bytes (see [`Storage::verify_reads`])
    /// and they did not match the digest `stat` gave: a store that caches digests forgets the
    /// one of that version, so the next `stat` computes it from the bytes again instead of
    /// failing every download the same way.
    fn read_mismatch(&mut self, name: &str, version: Version) {
        let _ = (name, version);
    }
    /// Removes a visible file.
    fn remove(&mut self, name: &str) -> Result<(), StoreError>;

    /// Opens a pending upload of `size` bytes for `owner`. Returns how many bytes the slot
    /// already holds (0 for a new upload).
    ///
    /// A pending upload of the name with the same size and digest is resumed, suspended or
    /// attached to another owner alike (the new owner takes it over). One with a different size
    /// or digest is replaced if suspended and `Busy` if attached to another owner. Other errors:
    /// `AlreadyExists` when a visible file has the name and `overwrite` is false, `NoSpace` when
    /// `size` does not fit.
    fn begin(
        &mut self,
        name: &str,
        owner: Owner,
        size: u64,
        sha256: &Digest,
        overwrite: bool,
    ) -> Result<u64, StoreError>;
    /// Writes upload bytes at `offset`, which must equal the bytes held so far. `TakenOver` if
    /// `owner` no longer holds the upload, `NotFound` if there is none.
    fn write(&mut self, name: &str, owner: Owner, offset: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Reads back bytes of `owner`'s pending upload (to rebuild the digest when resuming).
    fn read_pending(&mut self, name: &str, owner: Owner, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// Makes `owner`'s complete pending upload the visible file, atomically replacing any old
    /// one. On failure the visible file is untouched and the upload's bytes are kept (the file
    /// service then suspends it).
    fn commit(&mut self, name: &str, owner: Owner) -> Result<(), StoreError>;
    /// Drops `owner`'s pending upload; the visible file, if any, is untouched. Does nothing and
    /// answers `TakenOver` if another owner holds it, `NotFound` if there is none.
    fn abort(&mut self, name: &str, owner: Owner) -> Result<(), StoreError>;
    /// Detaches `owner`'s pending upload from its session (it stays resumable). Does nothing if
    /// `owner` does not hold it.
    fn suspend(&mut self, name: &str, owner: Owner);
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

/// The file service's own state: the counter that gives each uploading connection its
/// [`Owner`].
pub(crate) struct Files {
    /// The last upload [`Owner`] number given to a connection.
    last_owner: u32,
}

impl Files {
    /// No owner given yet.
    pub(crate) const fn new() -> Self {
        Files { last_owner: 0 }
    }

    /// Answers a request of the file services ([`RULES`]).
    pub(in crate::service) fn serve<C, S: Storage>(
        &mut self,
        sh: &mut Shared<'_, C, S>,
        conn: &mut Conn,
        frame: &Frame<'_>,
        out: &mut [u8],
    ) -> Result<usize, Failure> {
        match frame.kind() {
            Kind::PutBegin => self.put_begin(sh, conn, frame, out),
            Kind::PutData => upload::put_data(sh, conn, frame, out),
            Kind::PutCommit => upload::put_commit(sh, conn, frame, out),
            Kind::PutAbort => upload::put_abort(sh, conn, frame, out),
            Kind::Get => download::get(sh, conn, frame, out),
            Kind::List => listing::list(sh, conn, frame, out),
            Kind::Stat => listing::stat(sh, frame, out),
            Kind::Remove => listing::remove(sh, frame, out),
            _ => Err((ErrorCode::UnknownKind, "no such service")),
        }
    }

    /// `conn`'s upload owner, given on first use: a number no other session of this boot had
    /// (the counter would take 2^32 sessions that upload to wrap).
    fn owner_of(&mut self, conn: &mut Conn) -> Owner {
        if conn.owner == 0 {
            self.last_owner = self.last_owner.wrapping_add(1).max(1);
            conn.owner = self.last_owner;
        }
        Owner(conn.owner)
    }
}

/// Ends `conn`'s part in the file services: an upload in progress is suspended (resumable by the
/// same name, size and digest, and replaceable by another upload of the name), and the
/// connection's owner number is dropped, so a `Conn` reused for the next session is a new owner.
pub(in crate::service) fn close<S: Storage>(storage: &mut S, conn: &mut Conn) {
    if let Some(up) = conn.upload.take() {
        storage.suspend(&up.name, up.owner);
    }
    conn.owner = 0;
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
