//! Storage back ends of the simulator: the RAM store of a real board, or a directory on the PC.
//!
//! [`DirStore`] keeps the device's files in one directory, sandboxed to it. [`SimStore`] is what
//! the simulated device runs on: either store, chosen at start-up (`--root DIR`).
//!
//! # On-disk layout of a [`DirStore`]
//!
//! Everything lives directly in the directory; nothing is ever created elsewhere. Names of
//! entries the store manages start with `.`, which no valid file name does, so they can neither
//! collide with a user's file nor be listed:
//!
//! | entry | what it is |
//! |---|---|
//! | `NAME` | a visible file: a regular file (never a symlink) with a valid name |
//! | `.tether-sha-NAME` | digest cache of `NAME`: its SHA-256 and the size, inode, mtime and ctime it was computed for |
//! | `.tether-upload-NAME` | a pending upload of `NAME`: the bytes received so far (its length is the resume offset) |
//! | `.tether-upmeta-NAME` | the pending upload's announced size and SHA-256 |
//!
//! The sidecars are small text files (`key value` lines). An upload writes only its
//! `.tether-upload-` file; commit fsyncs it, renames it over `NAME` (atomic: readers see the old
//! file or the new one), writes the digest cache and fsyncs the directory. A pending upload whose
//! session went away stays on disk and can resume, also after the simulator restarts. A digest
//! cache that does not match its file (the file was copied or edited by hand) is ignored and
//! rebuilt by reading the file.
//!
//! A file's [`Version`] is its stamp (inode, size, mtime, ctime); a download reads one version
//! and stops with `Changed` when the name leads to another (see [`DirStore`]'s `read`). A pending
//! upload's owner lives only in memory: after a restart every upload is suspended.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use sha2::{Digest as _, Sha256};
use tether_core::msg::Digest;
use tether_core::service::files::{check_name, FileInfo, FileName, Owner, Storage, StoreError, Version};
use tether_core::service::ramstore::RamStore;

use crate::device::FILES;

/// Prefix of a visible file's digest cache.
pub const SHA_PREFIX: &str = ".tether-sha-";
/// Prefix of a pending upload's bytes.
pub const UPLOAD_PREFIX: &str = ".tether-upload-";
/// Prefix of a pending upload's size and digest.
pub const UPMETA_PREFIX: &str = ".tether-upmeta-";

/// How long a directory listing is reused between `entry` calls of one `list` stream.
const LISTING_TTL: std::time::Duration = std::time::Duration::from_secs(1);

fn io_err(e: io::Error) -> StoreError {
    log::warn!("storage: {e}");
    StoreError::Io
}

fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Digest> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut d = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        d[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(d)
}

/// Opens an existing entry for reading without following a symlink (or blocking on a FIFO).
fn open_nofollow(path: &Path, write: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    Ok(file)
}

/// Creates a fresh regular file at `path`, replacing whatever entry was there (a stale file or
/// a planted symlink is unlinked, never followed).
fn create_fresh(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("storage: cannot remove {}: {e}", path.display());
        }
    }
}

/// Reads a small sidecar (`key value` lines) without following symlinks.
fn read_sidecar(path: &Path) -> Option<HashMap<String, String>> {
    let mut file = open_nofollow(path, false).ok()?;
    let mut text = String::new();
    io::Read::by_ref(&mut file).take(4096).read_to_string(&mut text).ok()?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let (k, v) = line.split_once(' ')?;
        map.insert(k.to_string(), v.to_string());
    }
    Some(map)
}

fn write_sidecar(path: &Path, text: &str) -> io::Result<()> {
    let mut file = create_fresh(path)?;
    file.write_all(text.as_bytes())
}

/// What a digest cache was computed for: if any of it changed, the file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(md: &fs::Metadata) -> Stamp {
        Stamp {
            size: md.size(),
            ino: md.ino(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }

    fn sidecar(&self, sha256: &Digest) -> String {
        format!(
            "tether-sha 1\nsize {}\nino {}\nmtime {}.{:09}\nctime {}.{:09}\nsha256 {}\n",
            self.size,
            self.ino,
            self.mtime.0,
            self.mtime.1,
            self.ctime.0,
            self.ctime.1,
            hex(sha256)
        )
    }

    /// The file version this stamp identifies: a file replaced (another inode) or written in
    /// place (another size, mtime or ctime) is another version.
    fn version(&self) -> Version {
        let ns = |(s, ns): (i64, i64)| (s as u64).wrapping_mul(1_000_000_000).wrapping_add(ns as u64);
        Version([self.ino, self.size, ns(self.mtime), ns(self.ctime)])
    }

    fn parse(map: &HashMap<String, String>) -> Option<(Stamp, Digest)> {
        let time = |key: &str| -> Option<(i64, i64)> {
            let (s, ns) = map.get(key)?.split_once('.')?;
            Some((s.parse().ok()?, ns.parse().ok()?))
        };
        if map.get("tether-sha").map(String::as_str) != Some("1") {
            return None;
        }
        let stamp = Stamp {
            size: map.get("size")?.parse().ok()?,
            ino: map.get("ino")?.parse().ok()?,
            mtime: time("mtime")?,
            ctime: time("ctime")?,
        };
        Some((stamp, unhex(map.get("sha256")?)?))
    }
}

/// An upload that has not been committed.
#[derive(Debug)]
struct Pending {
    /// Announced size: what the upload reserves of the capacity.
    size: u64,
    sha256: Digest,
    /// Bytes written so far (the length of the `.tether-upload-` file).
    held: u64,
    /// The open upload file while a session is attached; `None` when suspended.
    file: Option<File>,
    /// The session attached (set exactly when `file` is).
    owner: Option<Owner>,
    /// When it was last attached or suspended: the oldest suspended upload is reclaimed first.
    touched: SystemTime,
}

/// A [`Storage`] over one directory of the PC's file system, sandboxed to it.
///
/// Names are checked with [`check_name`] (no `/`, no `..`, no leading `.`), so every file is a
/// direct child of the directory; entries that are not regular files (symlinks, directories,
/// devices) are never opened, listed, replaced or removed, and every open uses `O_NOFOLLOW`.
/// See the [module documentation](self) for the layout.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    capacity: u64,
    pending: HashMap<String, Pending>,
    listing: Vec<(FileName, u64)>,
    listed_at: Option<Instant>,
    /// The file last read (name, inode, handle): a download reads it chunk by chunk.
    reader: Option<(String, u64, File)>,
}

impl DirStore {
    /// A store over `root` (created if missing) holding at most `capacity` bytes.
    ///
    /// Pending uploads left by an earlier run become suspended uploads (resumable); stray
    /// temporary files and digest caches of vanished files are removed.
    pub fn open(root: impl AsRef<Path>, capacity: u64) -> io::Result<DirStore> {
        let root = root.as_ref();
        fs::create_dir_all(root)?;
        let root = fs::canonicalize(root)?;
        if !fs::metadata(&root)?.is_dir() {
            return Err(io::Error::other(format!("{} is not a directory", root.display())));
        }
        let mut store = DirStore {
            root,
            capacity,
            pending: HashMap::new(),
            listing: Vec::new(),
            listed_at: None,
            reader: None,
        };
        store.recover()?;
        Ok(store)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes in use, not limited to the capacity (files copied in by hand may exceed it).
    pub fn used_unclamped(&self) -> u64 {
        self.visible_bytes() + self.pending.values().map(|p| p.size).sum::<u64>()
    }

    /// Names of the uploads held (attached or suspended).
    pub fn pending_uploads(&self) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = self.pending.iter().map(|(n, p)| (n.clone(), p.held, p.size)).collect();
        v.sort();
        v
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn hidden(&self, prefix: &str, name: &str) -> PathBuf {
        self.root.join(format!("{prefix}{name}"))
    }

    /// Loads pending uploads from disk and removes leftovers.
    fn recover(&mut self) -> io::Result<()> {
        let mut uploads = Vec::new();
        let mut metas = Vec::new();
        let mut shas = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let Ok(fname) = entry.file_name().into_string() else {
                continue;
            };
            let split = |prefix: &str| {
                fname
                    .strip_prefix(prefix)
                    .filter(|n| check_name(n).is_ok())
                    .map(str::to_string)
            };
            if let Some(n) = split(UPLOAD_PREFIX) {
                uploads.push(n);
            } else if let Some(n) = split(UPMETA_PREFIX) {
                metas.push(n);
            } else if let Some(n) = split(SHA_PREFIX) {
                shas.push(n);
            }
        }
        for name in &metas {
            let meta = read_sidecar(&self.hidden(UPMETA_PREFIX, name)).and_then(|m| {
                if m.get("tether-upload").map(String::as_str) != Some("1") {
                    return None;
                }
                Some((m.get("size")?.parse::<u64>().ok()?, unhex(m.get("sha256")?)?))
            });
            let part = fs::symlink_metadata(self.hidden(UPLOAD_PREFIX, name))
                .ok()
                .filter(|md| md.is_file());
            match (meta, part) {
                (Some((size, sha256)), Some(md)) if md.len() <= size => {
                    let touched = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    log::info!("storage: suspended upload of {name} holds {} of {size} bytes", md.len());
                    self.pending.insert(
                        name.clone(),
                        Pending {
                            size,
                            sha256,
                            held: md.len(),
                            file: None,
                            owner: None,
                            touched,
                        },
                    );
                }
                _ => self.drop_pending_files(name),
            }
        }
        for name in uploads.iter().filter(|n| !self.pending.contains_key(*n)) {
            remove_quietly(&self.hidden(UPLOAD_PREFIX, name));
        }
        for name in shas {
            let visible = fs::symlink_metadata(self.path(&name))
                .map(|md| md.is_file())
                .unwrap_or(false);
            if !visible {
                remove_quietly(&self.hidden(SHA_PREFIX, &name));
            }
        }
        Ok(())
    }

    fn drop_pending_files(&self, name: &str) {
        remove_quietly(&self.hidden(UPLOAD_PREFIX, name));
        remove_quietly(&self.hidden(UPMETA_PREFIX, name));
    }

    fn drop_pending(&mut self, name: &str) {
        self.pending.remove(name);
        self.drop_pending_files(name);
    }

    /// The visible files, sorted by name.
    fn scan(&self) -> io::Result<Vec<(FileName, u64)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks.
            let Ok(md) = entry.metadata() else { continue };
            if !md.is_file() {
                continue;
            }
            if let Ok(name) = FileName::try_from(name.as_str()) {
                files.push((name, md.len()));
            }
        }
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(files)
    }

    fn visible_bytes(&self) -> u64 {
        match self.scan() {
            Ok(files) => files.iter().map(|f| f.1).sum(),
            Err(e) => {
                log::warn!("storage: cannot list {}: {e}", self.root.display());
                0
            }
        }
    }

    fn invalidate(&mut self) {
        self.listed_at = None;
        self.reader = None;
    }

    /// Metadata of a visible file: a regular file with a valid name (symlinks are not files).
    fn visible(&self, name: &str) -> Result<fs::Metadata, StoreError> {
        check_name(name)?;
        match fs::symlink_metadata(self.path(name)) {
            Ok(md) if md.is_file() => Ok(md),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Hashes a file (a digest cache was missing or stale) and caches the result. A file that
    /// changes while it is hashed is hashed again, a few times, then reported as `Changed`: a
    /// digest is only ever given with the stamp of the bytes it was computed over.
    fn digest_of(&self, name: &str) -> Result<(Stamp, Digest), StoreError> {
        let mut buf = vec![0u8; 256 * 1024];
        for _ in 0..3 {
            let mut file = open_nofollow(&self.path(name), false).map_err(io_err)?;
            let before = Stamp::of(&file.metadata().map_err(io_err)?);
            let mut hasher = Sha256::new();
            loop {
                let n = file.read(&mut buf).map_err(io_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            let digest: Digest = hasher.finalize().into();
            let after = Stamp::of(&file.metadata().map_err(io_err)?);
            if before == after {
                if let Err(e) = write_sidecar(&self.hidden(SHA_PREFIX, name), &after.sidecar(&digest)) {
                    log::warn!("storage: cannot cache the digest of {name}: {e}");
                }
                return Ok((after, digest));
            }
        }
        log::warn!("storage: {name} keeps changing while it is hashed");
        Err(StoreError::Changed)
    }

    /// `owner`'s pending upload of `name`.
    fn owned(&mut self, name: &str, owner: Owner) -> Result<&mut Pending, StoreError> {
        let p = self.pending.get_mut(name).ok_or(StoreError::NotFound)?;
        if p.owner != Some(owner) || p.file.is_none() {
            return Err(StoreError::TakenOver);
        }
        Ok(p)
    }

    /// Reclaims suspended uploads, oldest first, until `need` bytes are free.
    fn make_room(&mut self, need: u64) -> Result<(), StoreError> {
        loop {
            if self.capacity.saturating_sub(self.used_unclamped()) >= need {
                return Ok(());
            }
            let victim = self
                .pending
                .iter()
                .filter(|(_, p)| p.owner.is_none())
                .min_by_key(|(_, p)| p.touched)
                .map(|(n, _)| n.clone());
            match victim {
                Some(n) => {
                    log::info!("storage: reclaiming the suspended upload of {n}");
                    self.drop_pending(&n);
                }
                None => return Err(StoreError::NoSpace),
            }
        }
    }

    /// Attaches a suspended upload to `owner`, or hands an attached one over to it.
    fn resume(&mut self, name: &str, owner: Owner) -> Result<u64, StoreError> {
        let p = self.pending.get_mut(name).ok_or(StoreError::NotFound)?;
        if p.file.is_some() {
            // Taken over: same bytes, same open file, a new owner.
            p.owner = Some(owner);
            p.touched = SystemTime::now();
            return Ok(p.held);
        }
        let path = self.hidden(UPLOAD_PREFIX, name);
        let file = open_nofollow(&path, true).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let p = self.pending.get_mut(name).ok_or(StoreError::NotFound)?;
        if len > p.size {
            return Err(StoreError::BadOffset);
        }
        // The file is the truth (a write may have failed halfway before a crash).
        p.held = len;
        p.file = Some(file);
        p.owner = Some(owner);
        p.touched = SystemTime::now();
        Ok(len)
    }

    fn start(&mut self, name: &str, owner: Owner, size: u64, sha256: &Digest) -> io::Result<()> {
        let meta = format!("tether-upload 1\nsize {size}\nsha256 {}\n", hex(sha256));
        write_sidecar(&self.hidden(UPMETA_PREFIX, name), &meta)?;
        let file = create_fresh(&self.hidden(UPLOAD_PREFIX, name))?;
        let p = Pending {
            size,
            sha256: *sha256,
            held: 0,
            file: Some(file),
            owner: Some(owner),
            touched: SystemTime::now(),
        };
        self.pending.insert(name.to_string(), p);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.root)?.sync_all()
    }

    fn finish(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        let p = self.owned(name, owner)?;
        let file = p.file.as_ref().ok_or(StoreError::NotFound)?;
        if p.held != p.size {
            return Err(StoreError::BadOffset);
        }
        let sha256 = p.sha256;
        file.sync_all().map_err(io_err)?;
        let target = self.path(name);
        match fs::symlink_metadata(&target) {
            Ok(md) if !md.is_file() => {
                log::warn!("storage: {} is not a regular file; not replacing it", target.display());
                return Err(StoreError::Io);
            }
            _ => {}
        }
        fs::rename(self.hidden(UPLOAD_PREFIX, name), &target).map_err(io_err)?;
        // Visible now: nothing after this point may fail the commit.
        self.pending.remove(name);
        self.invalidate();
        remove_quietly(&self.hidden(UPMETA_PREFIX, name));
        match fs::symlink_metadata(&target) {
            Ok(md) => {
                let text = Stamp::of(&md).sidecar(&sha256);
                if let Err(e) = write_sidecar(&self.hidden(SHA_PREFIX, name), &text) {
                    log::warn!("storage: cannot cache the digest of {name}: {e}");
                }
            }
            Err(e) => log::warn!("storage: {name} vanished right after commit: {e}"),
        }
        if let Err(e) = self.sync_dir() {
            log::warn!("storage: cannot sync {}: {e}", self.root.display());
        }
        Ok(())
    }
}

impl Storage for DirStore {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes in use, pending uploads' announced sizes included; never more than the capacity
    /// (files copied in by hand can exceed it, and callers compute `capacity - used`).
    fn used(&self) -> u64 {
        self.used_unclamped().min(self.capacity)
    }

    fn entry(&mut self, index: usize, name: &mut FileName) -> Option<u64> {
        let fresh = self.listed_at.is_some_and(|t| t.elapsed() < LISTING_TTL);
        if index == 0 || !fresh {
            self.listing = self.scan().unwrap_or_else(|e| {
                log::warn!("storage: cannot list {}: {e}", self.root.display());
                Vec::new()
            });
            self.listed_at = Some(Instant::now());
        }
        let (n, size) = self.listing.get(index)?;
        name.clone_from(n);
        Some(*size)
    }

    fn stat(&mut self, name: &str) -> Result<FileInfo, StoreError> {
        let md = self.visible(name)?;
        let now = Stamp::of(&md);
        if let Some((stamp, sha256)) = read_sidecar(&self.hidden(SHA_PREFIX, name)).and_then(|m| Stamp::parse(&m)) {
            if stamp == now {
                return Ok(FileInfo {
                    size: now.size,
                    sha256,
                    version: now.version(),
                });
            }
        }
        let (stamp, sha256) = self.digest_of(name)?;
        Ok(FileInfo {
            size: stamp.size,
            sha256,
            version: stamp.version(),
        })
    }

    /// Reads `version` of a file: the name must still lead to that inode with that size, mtime
    /// and ctime, before the read and, on the open file, after it. A replacement (a commit, or
    /// another process renaming a file over it) or a removal is caught exactly. A write in place
    /// by another process moves mtime and ctime before its bytes land, so it is caught too —
    /// unless it falls in the same file-system timestamp tick as the version's stamp (a few
    /// milliseconds on Linux) or goes through a shared mapping, whose mtime lags. What slips
    /// through is caught by the digest check the file service makes ([`Storage::verify_reads`])
    /// on a download from offset 0, and by the client's own check of a resumed one.
    fn read(&mut self, name: &str, version: Version, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let md = match self.visible(name) {
            Ok(md) => md,
            Err(StoreError::NotFound) => return Err(StoreError::Changed),
            Err(e) => return Err(e),
        };
        if Stamp::of(&md).version() != version {
            self.reader = None;
            return Err(StoreError::Changed);
        }
        let cached = matches!(&self.reader, Some((n, ino, _)) if n == name && *ino == md.ino());
        if !cached {
            let file = open_nofollow(&self.path(name), false).map_err(io_err)?;
            let ino = file.metadata().map_err(io_err)?.ino();
            self.reader = Some((name.to_string(), ino, file));
        }
        let Some((_, _, file)) = &self.reader else {
            return Err(StoreError::Io);
        };
        if offset > md.len() {
            return Err(StoreError::BadOffset);
        }
        let n = read_full_at(file, offset, buf).map_err(io_err)?;
        // Checked after the read: whatever wrote into the bytes just read has moved the stamp
        // by now (the file opened may also be a replacement that arrived after the check above).
        let after = file.metadata().map_err(io_err)?;
        if Stamp::of(&after).version() != version {
            self.reader = None;
            return Err(StoreError::Changed);
        }
        Ok(n)
    }

    /// Other processes may write the directory's files in place: see `read` for what the
    /// stamps miss.
    fn verify_reads(&self) -> bool {
        true
    }

    /// The digest cache of that version was wrong (a write in place within one timestamp tick
    /// of it): it goes, and the next `stat` hashes the file.
    fn read_mismatch(&mut self, name: &str, version: Version) {
        let path = self.hidden(SHA_PREFIX, name);
        if let Some((stamp, _)) = read_sidecar(&path).and_then(|m| Stamp::parse(&m)) {
            if stamp.version() == version {
                log::warn!("storage: {name} does not match its digest cache; dropping it");
                remove_quietly(&path);
            }
        }
    }

    fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        self.visible(name)?;
        fs::remove_file(self.path(name)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound,
            _ => io_err(e),
        })?;
        self.invalidate();
        remove_quietly(&self.hidden(SHA_PREFIX, name));
        if let Err(e) = self.sync_dir() {
            log::warn!("storage: cannot sync {}: {e}", self.root.display());
        }
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
        match fs::symlink_metadata(self.path(name)) {
            Ok(md) if md.is_file() && !overwrite => return Err(StoreError::AlreadyExists),
            // A symlink, directory or device the user put there: never replaced.
            Ok(md) if !md.is_file() => return Err(StoreError::AlreadyExists),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        if let Some(p) = self.pending.get(name) {
            if p.size == size && p.sha256 == *sha256 {
                // Resumed, or taken over from a session that may be gone without a word.
                match self.resume(name, owner) {
                    Ok(held) => return Ok(held),
                    Err(e) => log::warn!("storage: cannot resume the upload of {name} ({e:?}); starting over"),
                }
            } else if p.owner.is_some_and(|o| o != owner) {
                return Err(StoreError::Busy);
            }
            self.drop_pending(name);
        }
        if size > self.capacity {
            return Err(StoreError::NoSpace);
        }
        self.make_room(size)?;
        if let Err(e) = self.start(name, owner, size, sha256) {
            self.drop_pending(name);
            return Err(io_err(e));
        }
        Ok(0)
    }

    fn write(&mut self, name: &str, owner: Owner, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let p = self.owned(name, owner)?;
        let Some(file) = &p.file else {
            return Err(StoreError::NotFound);
        };
        if offset != p.held || p.held + data.len() as u64 > p.size {
            return Err(StoreError::BadOffset);
        }
        if let Err(e) = file.write_all_at(data, offset) {
            // Keep the file's length equal to what is held, so a resume starts at the right place.
            let _ = file.set_len(p.held);
            return Err(io_err(e));
        }
        p.held += data.len() as u64;
        Ok(())
    }

    fn read_pending(&mut self, name: &str, owner: Owner, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let p = self.owned(name, owner)?;
        let Some(file) = &p.file else {
            return Err(StoreError::NotFound);
        };
        if offset > p.held {
            return Err(StoreError::BadOffset);
        }
        let n = buf.len().min((p.held - offset).try_into().unwrap_or(usize::MAX));
        read_full_at(file, offset, &mut buf[..n]).map_err(io_err)
    }

    fn commit(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        let result = self.finish(name, owner);
        if result.is_err() {
            // Not stuck as "in use": the upload stays resumable (and reclaimable).
            self.suspend(name, owner);
        }
        result
    }

    fn abort(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        self.owned(name, owner)?;
        self.drop_pending(name);
        Ok(())
    }

    fn suspend(&mut self, name: &str, owner: Owner) {
        let Ok(p) = self.owned(name, owner) else {
            return;
        };
        if let Some(file) = p.file.take() {
            if let Err(e) = file.sync_data() {
                log::warn!("storage: cannot sync the upload of {name}: {e}");
            }
        }
        p.owner = None;
        p.touched = SystemTime::now();
    }
}

/// Reads at `offset` until `buf` is full or the file ends.
fn read_full_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The simulated device's storage: a board's RAM store, or a directory on the PC.
pub enum SimStore {
    /// A RAM store (lost on reboot, like a board's). Boxed: its file table is large.
    Ram(Box<RamStore<'static, FILES>>),
    /// A directory (kept across reboots and restarts).
    Dir(DirStore),
}

impl SimStore {
    /// A RAM store of `capacity` bytes. The memory lives as long as the process: a simulated
    /// device's RAM, reused across its reboots.
    pub fn ram(capacity: usize) -> SimStore {
        SimStore::Ram(Box::new(RamStore::new(Box::leak(
            vec![0u8; capacity].into_boxed_slice(),
        ))))
    }

    /// A directory store over `root` (created if missing) of `capacity` bytes.
    pub fn dir(root: impl AsRef<Path>, capacity: u64) -> io::Result<SimStore> {
        DirStore::open(root, capacity).map(SimStore::Dir)
    }

    /// What a reboot does to the storage: the RAM store is cleared, a directory persists.
    pub fn clear_volatile(&mut self) {
        match self {
            SimStore::Ram(s) => s.clear(),
            SimStore::Dir(_) => {}
        }
    }

    /// Whether files survive a reboot.
    pub fn is_persistent(&self) -> bool {
        matches!(self, SimStore::Dir(_))
    }

    /// A one-line description, for logs.
    pub fn describe(&self) -> String {
        match self {
            SimStore::Ram(s) => format!("RAM store, {} bytes", s.capacity()),
            SimStore::Dir(s) => format!("directory {}, {} bytes", s.root().display(), s.capacity()),
        }
    }
}

impl From<DirStore> for SimStore {
    fn from(s: DirStore) -> SimStore {
        SimStore::Dir(s)
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            SimStore::Ram($s) => $e,
            SimStore::Dir($s) => $e,
        }
    };
}

impl Storage for SimStore {
    fn capacity(&self) -> u64 {
        delegate!(self, s => s.capacity())
    }
    fn used(&self) -> u64 {
        delegate!(self, s => s.used())
    }
    fn entry(&mut self, index: usize, name: &mut FileName) -> Option<u64> {
        delegate!(self, s => s.entry(index, name))
    }
    fn stat(&mut self, name: &str) -> Result<FileInfo, StoreError> {
        delegate!(self, s => s.stat(name))
    }
    fn read(&mut self, name: &str, version: Version, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        delegate!(self, s => s.read(name, version, offset, buf))
    }
    fn verify_reads(&self) -> bool {
        delegate!(self, s => s.verify_reads())
    }
    fn read_mismatch(&mut self, name: &str, version: Version) {
        delegate!(self, s => s.read_mismatch(name, version))
    }
    fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        delegate!(self, s => s.remove(name))
    }
    fn begin(
        &mut self,
        name: &str,
        owner: Owner,
        size: u64,
        sha256: &Digest,
        overwrite: bool,
    ) -> Result<u64, StoreError> {
        delegate!(self, s => s.begin(name, owner, size, sha256, overwrite))
    }
    fn write(&mut self, name: &str, owner: Owner, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        delegate!(self, s => s.write(name, owner, offset, data))
    }
    fn read_pending(&mut self, name: &str, owner: Owner, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        delegate!(self, s => s.read_pending(name, owner, offset, buf))
    }
    fn commit(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        delegate!(self, s => s.commit(name, owner))
    }
    fn abort(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        delegate!(self, s => s.abort(name, owner))
    }
    fn suspend(&mut self, name: &str, owner: Owner) {
        delegate!(self, s => s.suspend(name, owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d: Digest = core::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(unhex(&hex(&d)), Some(d));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }
}
