//! Upload (PutBegin, PutData, PutCommit, PutAbort): two-phase, SHA-256 checked, resumable.

use crate::hooks::Sha256;

use super::Files;
use super::{check_name, FileName, Owner, Storage, StoreError};
use crate::msg::{self, Digest};
use crate::service::{Conn, Failure, Shared};
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind};

/// An upload in progress on one connection.
pub(crate) struct Upload {
    pub(crate) name: FileName,
    /// The connection's owner number, as the store recorded it with the pending upload.
    pub(crate) owner: Owner,
    pub(crate) size: u64,
    /// The largest chunk body `PutReady` allowed.
    pub(crate) chunk: usize,
    pub(crate) received: u64,
    pub(crate) sha256: Digest,
    pub(crate) hasher: Sha256,
}

/// The answer to `PutData`, `PutCommit` or `PutAbort` from a session whose upload another
/// session took over (by a `PutBegin` of the same name, size and digest). The connection has no
/// upload any more; the bytes it sent before stay with the new owner.
const TAKEN_OVER: Failure = (ErrorCode::NoTransfer, "upload taken over by another session");

impl Files {
    /// Answers `PutBegin`: starts an upload on `conn`, or resumes one of the same name, size and
    /// digest (this connection's, a suspended one, or another session's, taken over).
    pub(super) fn put_begin<C, S: Storage>(
        &mut self,
        sh: &mut Shared<'_, C, S>,
        conn: &mut Conn,
        frame: &Frame<'_>,
        out: &mut [u8],
    ) -> Result<usize, Failure> {
        let req = frame
            .meta::<msg::PutBegin<'_>>()
            .map_err(|c| (c, "put-begin metadata"))?;
        check_name(req.name).map_err(|e| (e.into(), "names are 1-64 of A-Z a-z 0-9 . _ - and do not start with ."))?;
        if let Some(old) = conn.upload.take() {
            sh.storage.suspend(&old.name, old.owner);
        }
        let owner = self.owner_of(conn);
        let held = match sh.storage.begin(req.name, owner, req.size, &req.sha256, req.overwrite) {
            Ok(held) => held,
            Err(e) => {
                let (id, code) = (frame.request_id(), ErrorCode::from(e));
                let free = sh.storage.capacity().saturating_sub(sh.storage.used());
                let detail = match code {
                    ErrorCode::NoSpace => format_args!("{} bytes do not fit ({free} bytes free)", req.size),
                    ErrorCode::AlreadyExists => format_args!("{} exists; use overwrite", req.name),
                    ErrorCode::Busy => {
                        format_args!("another session is uploading {} with another size or digest", req.name)
                    }
                    _ => format_args!("{}", code.text()),
                };
                return Ok(sh.error(out, Kind::PutBegin, id, code, detail));
            }
        };
        let mut hasher = Sha256::new();
        // Resuming: the digest state is rebuilt from the bytes already held (out is scratch).
        let mut at = 0;
        while at < held {
            let n = sh
                .storage
                .read_pending(req.name, owner, at, out)
                .map_err(|e| (e.into(), "reading back the upload"))?;
            if n == 0 {
                let _ = sh.storage.abort(req.name, owner);
                return Err((ErrorCode::Internal, "upload shorter than recorded"));
            }
            hasher.update(&out[..n]);
            at += n as u64;
        }
        let name = FileName::try_from(req.name).map_err(|_| (ErrorCode::InvalidName, "name too long"))?;
        let chunk = sh.facts.max_chunk();
        conn.upload = Some(Upload {
            name,
            owner,
            size: req.size,
            chunk,
            received: held,
            sha256: req.sha256,
            hasher,
        });
        let ready = msg::PutReady {
            offset: held,
            chunk: chunk as u32,
            window: sh.facts.config.window.max(1),
        };
        Ok(sh.reply(
            out,
            FrameSpec::response(Kind::PutBegin, frame.request_id()),
            &ready,
            &[],
        ))
    }
}

/// Answers `PutData`: appends a chunk to `conn`'s upload.
pub(super) fn put_data<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    conn: &mut Conn,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let req = frame.meta::<msg::PutData>().map_err(|c| (c, "put-data metadata"))?;
    let up = conn
        .upload
        .as_mut()
        .ok_or((ErrorCode::NoTransfer, "send put-begin first"))?;
    let id = frame.request_id();
    let len = frame.body.len();
    let refused = len > up.chunk || req.offset != up.received || up.received + len as u64 > up.size;
    if refused && taken_over(sh.storage, up) {
        conn.upload = None;
        return Err(TAKEN_OVER);
    }
    if len > up.chunk {
        let detail = format_args!("a chunk of {len} bytes; put-ready allows {}", up.chunk);
        return Ok(sh.error(out, Kind::PutData, id, ErrorCode::TooLarge, detail));
    }
    if req.offset != up.received {
        let detail = format_args!("chunk at {} but the device holds {} bytes", req.offset, up.received);
        return Ok(sh.error(out, Kind::PutData, id, ErrorCode::BadOffset, detail));
    }
    if up.received + len as u64 > up.size {
        let detail = format_args!("chunk ends past the announced size of {} bytes", up.size);
        return Ok(sh.error(out, Kind::PutData, id, ErrorCode::BadOffset, detail));
    }
    match sh.storage.write(&up.name, up.owner, req.offset, frame.body) {
        Ok(()) => {}
        // Only a takeover removes an attached upload: gone means taken (and finished).
        Err(StoreError::TakenOver | StoreError::NotFound) => {
            conn.upload = None;
            return Err(TAKEN_OVER);
        }
        Err(e) => return Err((e.into(), "writing the upload")),
    }
    up.hasher.update(frame.body);
    up.received += frame.body.len() as u64;
    let ack = msg::PutAck { received: up.received };
    Ok(sh.reply(out, FrameSpec::response(Kind::PutData, id), &ack, &[]))
}

/// Answers `PutCommit`: checks size and digest and makes the upload the visible file.
pub(super) fn put_commit<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    conn: &mut Conn,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    named_upload(conn, frame, "put-commit metadata")?;
    let id = frame.request_id();
    let up = conn.upload.take().ok_or((ErrorCode::NoTransfer, "no upload"))?;
    if up.received != up.size && taken_over(sh.storage, &up) {
        return Err(TAKEN_OVER);
    }
    if up.received != up.size {
        let detail = format_args!("have {} of {} bytes", up.received, up.size);
        let n = sh.error(out, Kind::PutCommit, id, ErrorCode::BadOffset, detail);
        conn.upload = Some(up);
        return Ok(n);
    }
    let digest: Digest = up.hasher.finalize();
    if digest != up.sha256 {
        if let Err(StoreError::TakenOver | StoreError::NotFound) = sh.storage.abort(&up.name, up.owner) {
            return Err(TAKEN_OVER);
        }
        return Err((
            ErrorCode::DigestMismatch,
            "SHA-256 of the received bytes differs; upload discarded",
        ));
    }
    if let Err(e) = sh.storage.commit(&up.name, up.owner) {
        if matches!(e, StoreError::TakenOver | StoreError::NotFound) {
            return Err(TAKEN_OVER);
        }
        // Keep the received bytes: a new put-begin of the same file resumes and commits again.
        sh.storage.suspend(&up.name, up.owner);
        return Err((
            e.into(),
            "commit failed; the old file is intact and the upload can resume",
        ));
    }
    sh.stats.uploads = sh.stats.uploads.wrapping_add(1);
    let done = msg::FileDone {
        size: up.size,
        sha256: digest,
    };
    Ok(sh.reply(out, FrameSpec::response(Kind::PutCommit, id), &done, &[]))
}

/// Answers `PutAbort`: drops `conn`'s upload.
pub(super) fn put_abort<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    conn: &mut Conn,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    named_upload(conn, frame, "put-abort metadata")?;
    if let Some(up) = conn.upload.take() {
        if let Err(StoreError::TakenOver | StoreError::NotFound) = sh.storage.abort(&up.name, up.owner) {
            return Err(TAKEN_OVER);
        }
    }
    Ok(sh.reply(out, FrameSpec::response(Kind::PutAbort, frame.request_id()), &(), &[]))
}

/// Whether `up` no longer belongs to its connection: another session took the pending upload
/// over (and may have finished it), so the store refuses this owner. Asked only before a refusal,
/// so that the old owner hears `NoTransfer` rather than a complaint about its own, stale, state.
fn taken_over<S: Storage>(storage: &mut S, up: &Upload) -> bool {
    matches!(
        storage.read_pending(&up.name, up.owner, 0, &mut []),
        Err(StoreError::TakenOver | StoreError::NotFound)
    )
}

/// Checks that a `PutCommit` or `PutAbort` names the upload this connection has in progress.
fn named_upload(conn: &Conn, frame: &Frame<'_>, what: &'static str) -> Result<(), Failure> {
    let req = frame.meta::<msg::NameRef<'_>>().map_err(|c| (c, what))?;
    if conn.uploading() != Some(req.name) {
        return Err((ErrorCode::NoTransfer, "no upload of that name on this connection"));
    }
    Ok(())
}
