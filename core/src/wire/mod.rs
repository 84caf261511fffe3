//! The wire format: frame header, frame view, metadata messages and error codes.
//!
//! Like smoltcp's `wire` module this layer only describes bytes; it never does I/O. See
//! `docs/PROTOCOL.md` for the byte-exact specification.

pub mod header;
pub mod msg;
mod status;

pub use header::{field, Flags, Header, HeaderView, Kind, HEADER_LEN, MAGIC, MAX_META_LEN, VERSION};
pub use status::ErrorCode;

use serde::Deserialize;

/// A complete, checked frame whose metadata and body borrow the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The checked header.
    pub header: Header,
    /// The postcard-encoded metadata (decode it with [`Frame::meta`]).
    pub meta: &'a [u8],
    /// The opaque body.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits a checked frame's bytes into its parts.
    pub(crate) fn split(header: Header, bytes: &'a [u8]) -> Frame<'a> {
        let meta_end = HEADER_LEN + header.meta_len as usize;
        Frame {
            header,
            meta: &bytes[HEADER_LEN..meta_end],
            body: &bytes[meta_end..],
        }
    }

    /// The service addressed.
    pub fn kind(&self) -> Kind {
        self.header.kind
    }

    /// The request this frame is, or answers.
    pub fn request_id(&self) -> u32 {
        self.header.request_id
    }

    /// The frame's flags.
    pub fn flags(&self) -> Flags {
        self.header.flags
    }

    /// Decodes the metadata as `T`. Trailing bytes are refused, so a peer that sends a different
    /// message than expected is noticed.
    pub fn meta<T: Deserialize<'a>>(&self) -> Result<T, ErrorCode> {
        match postcard::take_from_bytes::<T>(self.meta) {
            Ok((value, [])) => Ok(value),
            _ => Err(ErrorCode::Malformed),
        }
    }

    /// For an error response, its code and message.
    pub fn error(&self) -> Option<msg::ErrorInfo<'a>> {
        if !self.header.flags.contains(Flags::ERROR) {
            return None;
        }
        Some(self.meta::<msg::ErrorInfo<'a>>().unwrap_or(msg::ErrorInfo {
            code: ErrorCode::Malformed as u16,
            message: "unreadable error metadata",
        }))
    }
}

/// The addressing part of a frame to be sent: kind, flags and request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    /// The service addressed.
    pub kind: Kind,
    /// Response, stream and error bits.
    pub flags: Flags,
    /// The correlation id.
    pub request_id: u32,
}

impl FrameSpec {
    /// A request.
    pub const fn request(kind: Kind, request_id: u32) -> Self {
        FrameSpec {
            kind,
            flags: Flags::NONE,
            request_id,
        }
    }

    /// The final (or only) response to a request.
    pub const fn response(kind: Kind, request_id: u32) -> Self {
        FrameSpec {
            kind,
            flags: Flags::RESPONSE,
            request_id,
        }
    }

    /// A response frame that more frames of the same stream follow.
    pub const fn more(kind: Kind, request_id: u32) -> Self {
        FrameSpec {
            kind,
            flags: Flags(Flags::RESPONSE.0 | Flags::MORE.0),
            request_id,
        }
    }

    /// An error response.
    pub const fn error(kind: Kind, request_id: u32) -> Self {
        FrameSpec {
            kind,
            flags: Flags(Flags::RESPONSE.0 | Flags::ERROR.0),
            request_id,
        }
    }
}

/// Why the decoder refused some bytes. None is fatal: the decoder has stepped past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Bytes that cannot start a frame were skipped up to the next possible magic.
    Garbage {
        /// How many bytes were dropped.
        skipped: usize,
    },
    /// A magic was found but the header CRC did not match; the candidate was dropped.
    HeaderCrc {
        /// How many bytes were dropped.
        skipped: usize,
    },
    /// The header declares a frame larger than this end accepts; the frame is skipped unbuffered.
    TooLarge {
        /// Frame length the header declares, header included.
        declared: u64,
        /// The largest frame this decoder accepts.
        limit: usize,
        /// Kind of the refused frame, to address the error reply.
        kind: Kind,
        /// Request id of the refused frame.
        request_id: u32,
    },
    /// The header is intact but of a protocol version this end does not speak; frame skipped.
    UnsupportedVersion {
        /// The version the peer sent.
        version: u8,
        /// Kind of the refused frame.
        kind: Kind,
        /// Request id of the refused frame.
        request_id: u32,
    },
    /// The header is intact but metadata or body were damaged; the frame was dropped.
    PayloadCrc {
        /// Kind of the dropped frame.
        kind: Kind,
        /// Request id of the dropped frame.
        request_id: u32,
    },
}

impl DecodeError {
    /// The error code a reply to this fault carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Garbage { .. } | DecodeError::HeaderCrc { .. } => ErrorCode::Malformed,
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::PayloadCrc { .. } => ErrorCode::BadCrc,
        }
    }

    /// Kind and request id of the frame concerned, when its header could be trusted.
    pub fn request(&self) -> Option<(Kind, u32)> {
        match *self {
            DecodeError::TooLarge { kind, request_id, .. }
            | DecodeError::UnsupportedVersion { kind, request_id, .. }
            | DecodeError::PayloadCrc { kind, request_id } => Some((kind, request_id)),
            DecodeError::Garbage { .. } | DecodeError::HeaderCrc { .. } => None,
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Garbage { skipped } => write!(f, "skipped {skipped} bytes that do not start a frame"),
            DecodeError::HeaderCrc { skipped } => write!(f, "header CRC mismatch; skipped {skipped} bytes"),
            DecodeError::TooLarge { declared, limit, .. } => {
                write!(f, "frame of {declared} bytes exceeds the limit of {limit} bytes")
            }
            DecodeError::UnsupportedVersion { version, .. } => {
                write!(
                    f,
                    "protocol version {version} is not supported (this end speaks {VERSION})"
                )
            }
            DecodeError::PayloadCrc { request_id, .. } => {
                write!(f, "payload CRC mismatch in request {request_id}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}
