//! Frame encoding into caller-provided buffers and onto blocking writers.

use serde::Serialize;

use crate::crc32::Crc32;
use crate::wire::{FrameSpec, Header, HEADER_LEN, MAX_META_LEN, VERSION};

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer cannot hold the frame.
    BufferTooSmall {
        /// Bytes the frame needs (at least; metadata that did not fit is not counted).
        needed: usize,
        /// Bytes the buffer has.
        capacity: usize,
    },
    /// The metadata does not serialize within [`MAX_META_LEN`] bytes.
    MetaTooLarge,
    /// The body is longer than a `u32` can say.
    BodyTooLarge,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed, capacity } => {
                write!(f, "frame needs {needed} bytes, buffer has {capacity}")
            }
            EncodeError::MetaTooLarge => write!(f, "metadata exceeds {MAX_META_LEN} bytes"),
            EncodeError::BodyTooLarge => f.write_str("body exceeds 4 GiB"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Serialises `meta` with postcard into `out`, returning its length.
pub fn encode_meta<M: Serialize + ?Sized>(meta: &M, out: &mut [u8]) -> Result<usize, EncodeError> {
    let room = out.len().min(MAX_META_LEN);
    match postcard::to_slice(meta, &mut out[..room]) {
        Ok(used) => Ok(used.len()),
        Err(_) if room < MAX_META_LEN => {
            // Did it fail for want of buffer, or because it breaks the protocol's limit?
            let mut probe = [0u8; MAX_META_LEN];
            match postcard::to_slice(meta, &mut probe) {
                Ok(used) => Err(EncodeError::BufferTooSmall {
                    needed: used.len(),
                    capacity: room,
                }),
                Err(_) => Err(EncodeError::MetaTooLarge),
            }
        }
        Err(_) => Err(EncodeError::MetaTooLarge),
    }
}

/// The header of a version-1 frame; `meta_len` is at most [`MAX_META_LEN`], so it fits a `u16`.
fn header(spec: FrameSpec, meta_len: usize, body_len: u32, crc: Crc32) -> Header {
    Header {
        version: VERSION,
        kind: spec.kind,
        flags: spec.flags,
        request_id: spec.request_id,
        meta_len: meta_len as u16,
        body_len,
        payload_crc: crc.finish(),
    }
}

/// Finishes a frame whose metadata and body already sit at `out[HEADER_LEN..]`.
fn seal(out: &mut [u8], spec: FrameSpec, meta_len: usize, body_len: usize) -> Result<usize, EncodeError> {
    let body_len32 = u32::try_from(body_len).map_err(|_| EncodeError::BodyTooLarge)?;
    let total = HEADER_LEN + meta_len + body_len;
    let mut crc = Crc32::new();
    crc.update(&out[HEADER_LEN..total]);
    header(spec, meta_len, body_len32, crc).emit(out);
    Ok(total)
}

/// Encodes a frame with ready-made metadata bytes into `out`; returns the frame length.
pub fn encode_raw(out: &mut [u8], spec: FrameSpec, meta: &[u8], body: &[u8]) -> Result<usize, EncodeError> {
    if meta.len() > MAX_META_LEN {
        return Err(EncodeError::MetaTooLarge);
    }
    let total = HEADER_LEN + meta.len() + body.len();
    if out.len() < total {
        return Err(EncodeError::BufferTooSmall {
            needed: total,
            capacity: out.len(),
        });
    }
    out[HEADER_LEN..HEADER_LEN + meta.len()].copy_from_slice(meta);
    out[HEADER_LEN + meta.len()..total].copy_from_slice(body);
    seal(out, spec, meta.len(), body.len())
}

/// Encodes a frame with typed metadata into `out`; returns the frame length.
pub fn encode<M: Serialize + ?Sized>(
    out: &mut [u8],
    spec: FrameSpec,
    meta: &M,
    body: &[u8],
) -> Result<usize, EncodeError> {
    encode_with(out, spec, meta, |room| {
        let n = body.len();
        if room.len() < n {
            return Err(n);
        }
        room[..n].copy_from_slice(body);
        Ok(n)
    })
}

/// Encodes a frame whose body is produced in place: `fill` gets the space after the metadata and
/// returns how many bytes it wrote, or `Err(wanted)` when the space is too small. Lets a device read
/// a file chunk straight into its transmit buffer.
pub fn encode_with<M, F>(out: &mut [u8], spec: FrameSpec, meta: &M, fill: F) -> Result<usize, EncodeError>
where
    M: Serialize + ?Sized,
    F: FnOnce(&mut [u8]) -> Result<usize, usize>,
{
    if out.len() < HEADER_LEN {
        return Err(EncodeError::BufferTooSmall {
            needed: HEADER_LEN,
            capacity: out.len(),
        });
    }
    let capacity = out.len();
    let meta_len = encode_meta(meta, &mut out[HEADER_LEN..]).map_err(|e| match e {
        EncodeError::BufferTooSmall { needed, .. } => EncodeError::BufferTooSmall {
            needed: HEADER_LEN + needed,
            capacity,
        },
        other => other,
    })?;
    let body_at = HEADER_LEN + meta_len;
    let body_len = fill(&mut out[body_at..]).map_err(|wanted| EncodeError::BufferTooSmall {
        needed: body_at + wanted,
        capacity,
    })?;
    if u32::try_from(body_len).is_err() {
        return Err(EncodeError::BodyTooLarge);
    }
    if body_len > capacity - body_at {
        // A fill closure that claims more than it was given must not make us slice past the end.
        return Err(EncodeError::BufferTooSmall {
            needed: body_at + body_len,
            capacity,
        });
    }
    seal(out, spec, meta_len, body_len)
}

/// Why [`write_frame`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError<E> {
    /// The writer failed.
    Io(E),
    /// The frame could not be encoded.
    Encode(EncodeError),
}

impl<E: core::fmt::Debug> core::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::Io(e) => write!(f, "write failed: {e:?}"),
            WriteError::Encode(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug> std::error::Error for WriteError<E> {}

/// Writes one frame onto a blocking writer and flushes it.
///
/// Header and metadata go out in one `write_all`, the body in a second, so the body is never
/// copied; wrap a socket in a buffered writer (and set `TCP_NODELAY`) for small frames.
pub fn write_frame<W, M>(writer: &mut W, spec: FrameSpec, meta: &M, body: &[u8]) -> Result<(), WriteError<W::Error>>
where
    W: embedded_io::Write,
    M: Serialize + ?Sized,
{
    let mut head = [0u8; HEADER_LEN + MAX_META_LEN];
    let meta_len = encode_meta(meta, &mut head[HEADER_LEN..]).map_err(WriteError::Encode)?;
    let body_len = u32::try_from(body.len()).map_err(|_| WriteError::Encode(EncodeError::BodyTooLarge))?;
    let mut crc = Crc32::new();
    crc.update(&head[HEADER_LEN..HEADER_LEN + meta_len]);
    crc.update(body);
    header(spec, meta_len, body_len, crc).emit(&mut head);
    writer
        .write_all(&head[..HEADER_LEN + meta_len])
        .map_err(WriteError::Io)?;
    writer.write_all(body).map_err(WriteError::Io)?;
    writer.flush().map_err(WriteError::Io)
}
