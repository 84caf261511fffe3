//! The fixed 24-byte frame header: layout, field types, parsing and emission.
//!
//! ```text
//! offset  size  field
//!      0     2  magic          0xE7 0x54
//!      2     1  version        1
//!      3     1  kind           see [`Kind`]
//!      4     1  flags          see [`Flags`]
//!      5     1  reserved       0 on send, ignored on receive
//!      6     2  meta_len       u16 little-endian: postcard metadata length
//!      8     4  request_id     u32 little-endian
//!     12     4  body_len       u32 little-endian
//!     16     4  payload_crc    CRC-32 of metadata || body
//!     20     4  header_crc     CRC-32 of bytes 0..20
//! ```
//! All multi-byte integers are little-endian.

use nom::bytes::streaming::{tag, take};
use nom::IResult;

use crate::crc32;

/// Where each header field lies: the one statement of the layout that the parser, the emitter
/// and [`HeaderView`] share.
pub mod field {
    use core::ops::Range;

    /// `0xE7 0x54`.
    pub const MAGIC: Range<usize> = 0..2;
    /// The protocol version.
    pub const VERSION: usize = 2;
    /// The kind.
    pub const KIND: usize = 3;
    /// The flags.
    pub const FLAGS: usize = 4;
    /// Reserved: 0 on send, ignored on receive.
    pub const RESERVED: usize = 5;
    /// Metadata length, u16 little-endian.
    pub const META_LEN: Range<usize> = 6..8;
    /// Request id, u32 little-endian.
    pub const REQUEST_ID: Range<usize> = 8..12;
    /// Body length, u32 little-endian.
    pub const BODY_LEN: Range<usize> = 12..16;
    /// CRC-32 of metadata and body, u32 little-endian.
    pub const PAYLOAD_CRC: Range<usize> = 16..20;
    /// CRC-32 of the bytes before it, u32 little-endian.
    pub const HEADER_CRC: Range<usize> = 20..24;
}

/// A view of a frame header over the bytes it lies in, in the manner of smoltcp's `wire` types:
/// fields read and written where they are, no copy. Nothing here checks CRCs ([`check`] does);
/// this is for code that already holds a frame it trusts (one it encoded, or one the decoder
/// accepted) and needs a field of it.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderView<T> {
    /// A view of `buffer`, which must hold at least [`HEADER_LEN`] bytes (`None` otherwise).
    pub fn new_checked(buffer: T) -> Option<HeaderView<T>> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(HeaderView { buffer })
    }

    fn u16_at(&self, at: core::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[at];
        u16::from_le_bytes([b[0], b[1]])
    }

    fn u32_at(&self, at: core::ops::Range<usize>) -> u32 {
        let b = &self.buffer.as_ref()[at];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        Kind::from(self.buffer.as_ref()[field::KIND])
    }

    /// The flags.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The metadata length.
    pub fn meta_len(&self) -> u16 {
        self.u16_at(field::META_LEN)
    }

    /// The request id.
    pub fn request_id(&self) -> u32 {
        self.u32_at(field::REQUEST_ID)
    }

    /// The body length.
    pub fn body_len(&self) -> u32 {
        self.u32_at(field::BODY_LEN)
    }

    /// The whole frame's length, header included (in `u64`: a hostile header cannot overflow it).
    pub fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.meta_len()) + u64::from(self.body_len())
    }
}

/// The two bytes every frame starts with.
pub const MAGIC: [u8; 2] = [0xE7, 0x54];
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;
/// The largest metadata block any message of version 1 needs; a sender never exceeds it.
pub const MAX_META_LEN: usize = 512;

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $value:expr,)+) => {
        /// What a frame carries: the service it addresses. Requests and their responses share a kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($(#[$doc])* $name,)+
            /// A kind this implementation does not know; the value is kept so it can be answered.
            Unknown(u8),
        }

        impl From<u8> for Kind {
            fn from(v: u8) -> Kind {
                match v {
                    $($value => Kind::$name,)+
                    other => Kind::Unknown(other),
                }
            }
        }

        impl From<Kind> for u8 {
            fn from(k: Kind) -> u8 {
                match k {
                    $(Kind::$name => $value,)+
                    Kind::Unknown(other) => other,
                }
            }
        }
    };
}

kinds! {
    /// Version and capability exchange; the response carries [`crate::msg::Info`].
    Hello = 0x01,
    /// Body echoed back unchanged.
    Echo = 0x02,
    /// Body echoed back with ASCII letters upper-cased.
    Upper = 0x03,
    /// Run a registered command.
    Exec = 0x04,
    /// Who is there: the device's identity, versions, addresses and ports (a discovery probe).
    Discover = 0x05,
    /// Start (or resume) an upload.
    PutBegin = 0x10,
    /// One chunk of an upload.
    PutData = 0x11,
    /// Finish an upload: verify size and digest, then make it visible.
    PutCommit = 0x12,
    /// Abandon an upload.
    PutAbort = 0x13,
    /// Download a file from an offset.
    Get = 0x14,
    /// List files.
    List = 0x15,
    /// Size and digest of one file.
    Stat = 0x16,
    /// Delete a file.
    Remove = 0x17,
    /// Read the device clock, formatted.
    TimeGet = 0x20,
    /// Set the device clock.
    TimeSet = 0x21,
    /// A datagram text message to the device's inbox.
    Message = 0x30,
    /// Ask for pushed events.
    Subscribe = 0x31,
    /// An event pushed by the device.
    Event = 0x32,
    /// A secure-session handshake message (feature `secure`): request = Noise message 1, response
    /// = message 2.
    Handshake = 0x40,
    /// A frame sealed by a secure session (feature `secure`): counter, encrypted inner frame, tag.
    Sealed = 0x41,
    /// Firmware update: the two slots and the running image.
    FwStatus = 0x50,
    /// Firmware update: start (or resume) uploading an image into the slot that is not running.
    FwBegin = 0x51,
    /// One chunk of an image upload.
    FwData = 0x52,
    /// Finish an image upload: check its hash, signature, board and security counter.
    FwCommit = 0x53,
    /// Mark the image in the other slot to run once, on trial, at the next boot.
    FwTest = 0x54,
    /// Keep the image on trial: it becomes the one the device boots.
    FwConfirm = 0x55,
    /// Reset the device once the answer has gone out.
    Reset = 0x56,
}

/// Frame flags (byte 4). Unknown bits are reserved: senders clear them, receivers ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No flags: a request.
    pub const NONE: Flags = Flags(0);
    /// The frame answers the request with the same `request_id`.
    pub const RESPONSE: Flags = Flags(0x01);
    /// More frames of the same response stream follow.
    pub const MORE: Flags = Flags(0x02);
    /// The response is an error; its metadata is [`crate::msg::ErrorInfo`].
    pub const ERROR: Flags = Flags(0x04);

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two flag sets.
    #[inline]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.with(rhs)
    }
}

/// A parsed, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version of the sender.
    pub version: u8,
    /// The service addressed.
    pub kind: Kind,
    /// Response, stream and error bits.
    pub flags: Flags,
    /// Correlates responses with their request; chosen by the requester.
    pub request_id: u32,
    /// Length of the postcard metadata that follows the header.
    pub meta_len: u16,
    /// Length of the opaque body that follows the metadata.
    pub body_len: u32,
    /// CRC-32 over metadata and body.
    pub payload_crc: u32,
}

impl Header {
    /// Total frame length on the wire, header included.
    ///
    /// Computed in `u64` so that a 32-bit target cannot overflow on a hostile header.
    #[inline]
    pub fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + self.meta_len as u64 + self.body_len as u64
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`, computing its CRC.
    ///
    /// # Panics
    /// If `out` is shorter than [`HEADER_LEN`]; callers check lengths first.
    pub fn emit(&self, out: &mut [u8]) {
        let out = &mut out[..HEADER_LEN];
        out[field::MAGIC].copy_from_slice(&MAGIC);
        out[field::VERSION] = self.version;
        out[field::KIND] = self.kind.into();
        out[field::FLAGS] = self.flags.0;
        out[field::RESERVED] = 0;
        out[field::META_LEN].copy_from_slice(&self.meta_len.to_le_bytes());
        out[field::REQUEST_ID].copy_from_slice(&self.request_id.to_le_bytes());
        out[field::BODY_LEN].copy_from_slice(&self.body_len.to_le_bytes());
        out[field::PAYLOAD_CRC].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32::checksum(&out[..field::HEADER_CRC.start]);
        out[field::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Why a candidate header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    /// The first two bytes are not [`MAGIC`].
    Magic,
    /// The header CRC does not match: the length fields cannot be trusted.
    Crc,
}

/// Parses a header with nom's streaming parsers: the magic, then the fixed-size rest, whose
/// fields sit at fixed offsets and are read in place (one bounds check, no per-field calls).
///
/// `Err(Incomplete)` means fewer than [`HEADER_LEN`] bytes are available; `Err(Error)` carries no
/// detail, [`check`] says why.
fn fields(input: &[u8]) -> IResult<&[u8], (Header, u32)> {
    let (rest, _) = tag(&MAGIC[..])(input)?;
    let (rest, raw) = take(HEADER_LEN - MAGIC.len())(rest)?;
    let raw: &[u8; HEADER_LEN - 2] = raw
        .try_into()
        .map_err(|_| nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Eof)))?;
    // `raw` starts after the magic: every field offset less two.
    let at = |o: usize| o - MAGIC.len();
    let u16_at = |f: core::ops::Range<usize>| u16::from_le_bytes([raw[at(f.start)], raw[at(f.start) + 1]]);
    let u32_at = |f: core::ops::Range<usize>| {
        let o = at(f.start);
        u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]])
    };
    let header = Header {
        version: raw[at(field::VERSION)],
        kind: Kind::from(raw[at(field::KIND)]),
        flags: Flags(raw[at(field::FLAGS)]),
        request_id: u32_at(field::REQUEST_ID),
        meta_len: u16_at(field::META_LEN),
        body_len: u32_at(field::BODY_LEN),
        payload_crc: u32_at(field::PAYLOAD_CRC),
    };
    Ok((rest, (header, u32_at(field::HEADER_CRC))))
}

/// Checks and parses the header at the start of `input`.
///
/// `Ok(None)` means more bytes are needed (only ever when `input` is shorter than the header and
/// what is there is a plausible header prefix).
pub(crate) fn check(input: &[u8]) -> Result<Option<Header>, HeaderFault> {
    match fields(input) {
        Ok((_, (header, header_crc))) => {
            if crc32::checksum(&input[..field::HEADER_CRC.start]) == header_crc {
                Ok(Some(header))
            } else {
                Err(HeaderFault::Crc)
            }
        }
        Err(nom::Err::Incomplete(_)) => {
            // A partial prefix: only the magic can be judged yet.
            let n = input.len().min(MAGIC.len());
            if input[..n] == MAGIC[..n] {
                Ok(None)
            } else {
                Err(HeaderFault::Magic)
            }
        }
        Err(_) => Err(HeaderFault::Magic),
    }
}

/// Offset of the first position in `bytes` where a frame could start, or `bytes.len()`.
///
/// A lone first magic byte at the very end counts as a possible start.
pub(crate) fn find_magic(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(p) = bytes[i..].iter().position(|&b| b == MAGIC[0]) {
        let at = i + p;
        match bytes.get(at + 1) {
            None => return at,
            Some(&b) if b == MAGIC[1] => return at,
            Some(_) => i = at + 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: VERSION,
            kind: Kind::Echo,
            flags: Flags::RESPONSE | Flags::MORE,
            request_id: 0x0403_0201,
            meta_len: 3,
            body_len: 0x1_0000,
            payload_crc: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn emit_then_check_round_trips() {
        let mut buf = [0u8; HEADER_LEN];
        sample().emit(&mut buf);
        assert_eq!(check(&buf), Ok(Some(sample())));
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let mut buf = [0u8; HEADER_LEN];
        sample().emit(&mut buf);
        for n in 0..HEADER_LEN {
            assert_eq!(check(&buf[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn bad_magic_and_bad_crc_are_told_apart() {
        let mut buf = [0u8; HEADER_LEN];
        sample().emit(&mut buf);
        let mut m = buf;
        m[1] ^= 1;
        assert_eq!(check(&m), Err(HeaderFault::Magic));
        assert_eq!(check(&m[..1]), Ok(None));
        assert_eq!(check(&m[..2]), Err(HeaderFault::Magic));
        let mut c = buf;
        c[12] ^= 0x80;
        assert_eq!(check(&c), Err(HeaderFault::Crc));
    }

    #[test]
    fn the_view_reads_the_fields_the_emitter_wrote() {
        let mut buf = [0u8; HEADER_LEN + 4];
        sample().emit(&mut buf);
        let view = HeaderView::new_checked(&buf[..]).unwrap();
        assert_eq!(view.kind(), Kind::Echo);
        assert_eq!(view.flags(), Flags::RESPONSE | Flags::MORE);
        assert_eq!(
            (view.request_id(), view.meta_len(), view.body_len()),
            (0x0403_0201, 3, 0x1_0000)
        );
        assert_eq!(view.frame_len(), sample().frame_len());
        assert!(HeaderView::new_checked(&buf[..HEADER_LEN - 1]).is_none());
    }

    #[test]
    fn kinds_round_trip_through_u8() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Kind::from(v)), v);
        }
        assert_eq!(Kind::from(0xEE), Kind::Unknown(0xEE));
    }

    #[test]
    fn magic_search() {
        assert_eq!(find_magic(&[]), 0);
        assert_eq!(find_magic(&[1, 2, 3]), 3);
        assert_eq!(find_magic(&[1, 0xE7]), 1);
        assert_eq!(find_magic(&[0xE7, 0xE7, 0x54]), 1);
        assert_eq!(find_magic(&[0xE7, 1, 0xE7, 0x54]), 2);
    }
}
