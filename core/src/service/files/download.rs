//! Download (Get): a file streamed as `GetData` frames and closed by `FileDone`.
//!
//! A download stats the file once and then reads that [`Version`](super::Version) of it to the
//! end: if the file is removed or replaced in the meantime the store refuses the next read and
//! the stream ends with `Changed`, so no frame ever carries bytes of two versions and `FileDone`
//! carries the digest of the version whose bytes were sent. For a store that cannot always tell
//! (see [`Storage::verify_reads`]) the stream also hashes what it sends, when it starts at 0, and
//! ends with `Changed` instead of `FileDone` if that is not the announced digest.

use crate::hooks::Sha256;

use super::{FileInfo, FileName, Storage, StoreError};
use crate::codec::encode_with;
use crate::msg::{self, Digest};
use crate::service::{Conn, Failure, Shared, Stream};
use crate::wire::{ErrorCode, Frame, FrameSpec, HeaderView, Kind};

/// A download in progress on one connection.
pub(crate) struct Download {
    id: u32,
    name: FileName,
    /// The next byte to send.
    offset: u64,
    /// What the file was when the download began: the version read, the size and digest sent.
    info: FileInfo,
    /// SHA-256 of the bytes sent so far, when the store asks for it and the stream began at 0.
    hasher: Option<Sha256>,
}

/// Answers `Get`: its first frame, the rest of the file as `conn`'s stream.
pub(in crate::service) fn get<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    conn: &mut Conn,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let req = frame.meta::<msg::Get<'_>>().map_err(|c| (c, "get metadata"))?;
    let info = sh.storage.stat(req.name).map_err(|e| (e.into(), "no such file"))?;
    if req.offset > info.size {
        return Err((ErrorCode::BadOffset, "offset past the end of the file"));
    }
    let name = FileName::try_from(req.name).map_err(|_| (ErrorCode::InvalidName, "name too long"))?;
    let hasher = (req.offset == 0 && sh.storage.verify_reads()).then(Sha256::new);
    let download = Download {
        id: frame.request_id(),
        name,
        offset: req.offset,
        info,
        hasher,
    };
    let (n, next) = get_step(sh, download, out);
    conn.stream = next;
    Ok(n)
}

/// The next frame of a download: a chunk, or `FileDone` at the end; returns its length and what
/// the stream does next.
pub(in crate::service) fn get_step<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    mut d: Download,
    out: &mut [u8],
) -> (usize, Stream) {
    let id = d.id;
    if d.offset >= d.info.size {
        if let Some(hasher) = d.hasher.take() {
            let sent: Digest = hasher.finalize();
            if sent != d.info.sha256 {
                sh.storage.read_mismatch(&d.name, d.info.version);
                // (Messages stay short: an ErrorInfo message holds 96 bytes, names up to 64.)
                let detail = format_args!("{} changed in place mid-stream", d.name);
                return (sh.error(out, Kind::Get, id, ErrorCode::Changed, detail), Stream::Idle);
            }
        }
        sh.stats.downloads = sh.stats.downloads.wrapping_add(1);
        let done = msg::FileDone {
            size: d.info.size,
            sha256: d.info.sha256,
        };
        return (
            sh.reply(out, FrameSpec::response(Kind::Get, id), &done, &[]),
            Stream::Idle,
        );
    }
    let chunk = (d.info.size - d.offset).min(sh.facts.max_chunk() as u64) as usize;
    let storage = &mut *sh.storage;
    let mut failed = None;
    let meta = msg::GetData { offset: d.offset };
    let n = encode_with(out, FrameSpec::more(Kind::Get, id), &meta, |room| {
        let want = chunk.min(room.len());
        match storage.read(&d.name, d.info.version, d.offset, &mut room[..want]) {
            // Shorter than the version's size: it changed in a way the store missed.
            Ok(0) => {
                failed = Some(StoreError::Changed);
                Err(0)
            }
            Ok(got) => {
                if let Some(h) = &mut d.hasher {
                    h.update(&room[..got]);
                }
                Ok(got)
            }
            Err(e) => {
                failed = Some(e);
                Err(0)
            }
        }
    });
    match (n, failed) {
        (Ok(n), None) => {
            // The frame says how much was read: the body length, recovered from the header.
            let got = HeaderView::new_checked(&out[..]).map_or(0, |h| u64::from(h.body_len()));
            d.offset += got;
            (n, Stream::Get(d))
        }
        (_, Some(StoreError::Changed)) => {
            let detail = format_args!("{} was replaced or removed mid-stream", d.name);
            (sh.error(out, Kind::Get, id, ErrorCode::Changed, detail), Stream::Idle)
        }
        (_, code) => {
            let code = code.map_or(ErrorCode::Internal, ErrorCode::from);
            let detail = format_args!("reading {} at {} failed", d.name, d.offset);
            (sh.error(out, Kind::Get, id, code, detail), Stream::Idle)
        }
    }
}
