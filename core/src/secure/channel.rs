//! Sealed frames: the transport phase of a secure session.
//!
//! ```text
//! sealed frame = outer header (24) || counter (8, u64 LE) || ChaCha20-Poly1305(inner frame) || tag (16)
//! outer header: version 1, kind Sealed (0x41), flags 0, reserved 0, meta_len 0, request_id 0,
//!               body_len = 8 + inner length + 16, and the two CRCs as for every frame
//! nonce        = 00 00 00 00 || counter (u64 LE)          (Noise's ChaChaPoly nonce)
//! AD           = outer header bytes 0..16 (magic .. body_len, reserved taken as 0)
//! ```
//!
//! The counter is explicit so that a frame lost on a serial link (dropped by the CRC layer) does
//! not desynchronise the two ends; a receiver accepts a counter only if it is greater than that of
//! the last frame it accepted, so replayed and reordered frames are refused.

use zeroize::Zeroizing;

use super::symmetric::{open, seal};
use super::{Error, COUNTER_LEN, SEALED_PREFIX, SEAL_OVERHEAD, TAG_LEN};
use crate::codec::{parse_frame, DatagramError};
use crate::crc32;
use crate::wire::{Flags, Frame, Header, Kind, HEADER_LEN, VERSION};

/// Length of the associated data: the outer header up to and without its two CRCs.
const AD_LEN: usize = 16;

/// The two directions' keys and counters of an established secure session.
///
/// Made by [`Handshake::into_channel`](super::Handshake::into_channel). Sealing and opening work
/// in place on the caller's buffers. The first frame that fails to open (unsealed, replayed,
/// modified, truncated) closes the channel: every later call returns [`Error::State`], and the
/// session must be closed. (Not closing: an output buffer too small, and in
/// [`open_in_place`](Channel::open_in_place) bytes whose CRCs or lengths do not make one frame.)
pub struct Channel {
    /// The two keys (the AEAD is keyed per frame: an engine takes the key with every call).
    send: Zeroizing<[u8; 32]>,
    recv: Zeroizing<[u8; 32]>,
    /// Counter of the next frame sealed.
    send_next: u64,
    /// Smallest counter the next opened frame may have.
    recv_next: u64,
    closed: bool,
}

impl Channel {
    pub(crate) fn new(send_key: &[u8; 32], recv_key: &[u8; 32]) -> Channel {
        Channel {
            send: Zeroizing::new(*send_key),
            recv: Zeroizing::new(*recv_key),
            send_next: 0,
            recv_next: 0,
            closed: false,
        }
    }

    /// Whether an earlier failure (or [`close`](Channel::close)) closed the channel.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the channel: nothing more is sealed or opened.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The counter the next sealed frame will carry (= frames sealed so far).
    pub fn send_counter(&self) -> u64 {
        self.send_next
    }

    /// The smallest counter the next opened frame may carry.
    pub fn recv_counter(&self) -> u64 {
        self.recv_next
    }

    /// Seals, in place, the inner frame the caller has encoded at
    /// `buf[SEALED_PREFIX..SEALED_PREFIX + inner_len]`: writes the outer header and counter in
    /// front, encrypts the inner frame where it is and appends the tag. Returns the sealed frame's
    /// length, `inner_len + SEAL_OVERHEAD`, the frame being `buf[..that]`.
    ///
    /// The inner frame is not parsed here (the receiver checks it); it must be at least a header.
    pub fn seal_in_place(&mut self, buf: &mut [u8], inner_len: usize) -> Result<usize, Error> {
        if self.closed {
            return Err(Error::State);
        }
        if inner_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let total = inner_len + SEAL_OVERHEAD;
        if buf.len() < total {
            return Err(Error::BufferTooSmall { needed: total });
        }
        let body_len = u32::try_from(total - HEADER_LEN).map_err(|_| Error::Malformed)?;
        let counter = self.send_next;
        if counter == u64::MAX {
            return Err(Error::Exhausted);
        }
        let ad = associated_data(body_len);
        buf[HEADER_LEN..SEALED_PREFIX].copy_from_slice(&counter.to_le_bytes());
        let (inner, rest) = buf[SEALED_PREFIX..total].split_at_mut(inner_len);
        let tag = seal(&self.send, counter, &ad, inner);
        rest.copy_from_slice(&tag);
        outer_header(body_len, crc32::checksum(&buf[HEADER_LEN..total])).emit(buf);
        self.send_next = counter + 1;
        Ok(total)
    }

    /// Seals a copy of `inner` (a whole encoded frame) into `out`; returns the sealed length.
    pub fn seal(&mut self, inner: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let total = inner.len() + SEAL_OVERHEAD;
        if out.len() < total {
            return Err(Error::BufferTooSmall { needed: total });
        }
        out[SEALED_PREFIX..SEALED_PREFIX + inner.len()].copy_from_slice(inner);
        self.seal_in_place(out, inner.len())
    }

    /// Opens a sealed frame the decoder delivered (outer CRCs already checked): decrypts its inner
    /// frame into `out` (which needs `frame.body.len() - 24` bytes) and returns it, checked like
    /// any received frame.
    ///
    /// An `out` too small is the caller's problem and leaves the channel open; every other failure
    /// closes it.
    pub fn open<'o>(&mut self, frame: &Frame<'_>, out: &'o mut [u8]) -> Result<Frame<'o>, Error> {
        let result = self.open_frame(frame, out);
        self.closed |= matches!(result, Err(e) if !matches!(e, Error::BufferTooSmall { .. }));
        result
    }

    fn open_frame<'o>(&mut self, frame: &Frame<'_>, out: &'o mut [u8]) -> Result<Frame<'o>, Error> {
        let (counter, inner_len) = self.check(&frame.header, frame.meta, frame.body)?;
        if out.len() < inner_len {
            return Err(Error::BufferTooSmall { needed: inner_len });
        }
        let ciphertext = &frame.body[COUNTER_LEN..COUNTER_LEN + inner_len];
        let tag = &frame.body[COUNTER_LEN + inner_len..];
        let inner = &mut out[..inner_len];
        inner.copy_from_slice(ciphertext);
        self.decrypt(&frame.header, counter, inner, tag)?;
        inner_frame(inner)
    }

    /// Opens a whole sealed frame's bytes in place (header included) and returns the inner frame,
    /// which borrows `sealed`. Unlike [`open`](Channel::open) this checks the outer CRCs too: bytes
    /// that are not one valid frame (damage that the CRC layer drops) are refused with
    /// [`Error::Malformed`] *without* closing the channel; every other failure closes it.
    pub fn open_in_place<'a>(&mut self, sealed: &'a mut [u8]) -> Result<Frame<'a>, Error> {
        if self.closed {
            return Err(Error::State);
        }
        let header = match parse_frame(sealed, usize::MAX) {
            Ok(frame) => frame.header,
            Err(DatagramError::Decode(_) | DatagramError::Truncated | DatagramError::Trailing) => {
                return Err(Error::Malformed)
            }
        };
        let result = self.open_bytes(header, sealed);
        self.closed |= result.is_err();
        result
    }

    /// Opens, in place, a sealed frame the decoder delivered in a writable buffer: `header` is its
    /// checked header and `frame` its whole bytes, CRCs already verified
    /// ([`Decoder::decode_owned`](crate::codec::Decoder::decode_owned)). Returns the inner frame,
    /// which borrows `frame`. Every failure closes the channel.
    pub fn open_decoded<'a>(&mut self, header: Header, frame: &'a mut [u8]) -> Result<Frame<'a>, Error> {
        let result = self.open_bytes(header, frame);
        self.closed |= result.is_err();
        result
    }

    fn open_bytes<'a>(&mut self, header: Header, sealed: &'a mut [u8]) -> Result<Frame<'a>, Error> {
        let meta_end = HEADER_LEN + usize::from(header.meta_len);
        let (counter, inner_len) = self.check(&header, &sealed[HEADER_LEN..meta_end], &sealed[meta_end..])?;
        let body = &mut sealed[meta_end..];
        let (inner, tag) = body[COUNTER_LEN..].split_at_mut(inner_len);
        self.decrypt(&header, counter, inner, tag)?;
        inner_frame(inner)
    }

    /// Everything that can be checked before decrypting; returns the counter and inner length.
    fn check(&self, header: &Header, meta: &[u8], body: &[u8]) -> Result<(u64, usize), Error> {
        if self.closed {
            return Err(Error::State);
        }
        if header.kind != Kind::Sealed {
            return Err(Error::Unsealed);
        }
        if !meta.is_empty() || body.len() < COUNTER_LEN + HEADER_LEN + TAG_LEN {
            return Err(Error::Malformed);
        }
        let mut counter = [0u8; COUNTER_LEN];
        counter.copy_from_slice(&body[..COUNTER_LEN]);
        let counter = u64::from_le_bytes(counter);
        if counter == u64::MAX {
            return Err(Error::Malformed);
        }
        if counter < self.recv_next {
            return Err(Error::Replay);
        }
        Ok((counter, body.len() - COUNTER_LEN - TAG_LEN))
    }

    /// Authenticates and decrypts the inner frame in place; on success the counter is taken.
    fn decrypt(&mut self, header: &Header, counter: u64, inner: &mut [u8], tag: &[u8]) -> Result<(), Error> {
        if header.version != VERSION || header.flags != Flags::NONE || header.request_id != 0 {
            // Covered by the associated data anyway; refused early as the format fixes them.
            return Err(Error::Authentication);
        }
        open(&self.recv, counter, &associated_data(header.body_len), inner, tag)?;
        self.recv_next = counter + 1;
        Ok(())
    }
}

/// The header of a sealed frame.
fn outer_header(body_len: u32, payload_crc: u32) -> Header {
    Header {
        version: VERSION,
        kind: Kind::Sealed,
        flags: Flags::NONE,
        request_id: 0,
        meta_len: 0,
        body_len,
        payload_crc,
    }
}

/// The associated data: bytes 0..16 of the outer header (magic, version, kind, flags, reserved,
/// meta_len, request_id, body_len). They do not depend on the CRCs, which are computed after.
fn associated_data(body_len: u32) -> [u8; AD_LEN] {
    let mut header = [0u8; HEADER_LEN];
    outer_header(body_len, 0).emit(&mut header);
    let mut ad = [0u8; AD_LEN];
    ad.copy_from_slice(&header[..AD_LEN]);
    ad
}

/// The decrypted inner frame: exactly one valid frame, not itself a handshake or sealed frame.
fn inner_frame(inner: &[u8]) -> Result<Frame<'_>, Error> {
    let frame = parse_frame(inner, usize::MAX).map_err(|_| Error::Malformed)?;
    match frame.header.kind {
        Kind::Sealed | Kind::Handshake => Err(Error::Malformed),
        _ => Ok(frame),
    }
}

impl core::fmt::Debug for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Channel")
            .field("send_counter", &self.send_next)
            .field("recv_counter", &self.recv_next)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}
