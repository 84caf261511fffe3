//! TimeGet (0x20) and TimeSet (0x21): the device's wall clock.

use core::fmt;

use super::clock::{self, Clock};
use super::policy::{Rule, ServedBy};
use super::{Failure, Shared};
use crate::codec::encode_with;
use crate::msg;
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind};

/// The clock: read anywhere; set anywhere but over UDP on a device with a key.
pub(crate) const RULES: [Rule; 2] = [
    Rule::anywhere(Kind::TimeGet, ServedBy::Time, false, true),
    Rule::anywhere(Kind::TimeSet, ServedBy::Time, true, false),
];

/// The answer to a format with a conversion [`clock::strftime`] does not have: the whole set.
pub const UNSUPPORTED: &str = concat!("unsupported specifier; use ", clock::specifiers!());
const _: () = assert!(
    UNSUPPORTED.len() <= msg::MAX_ERROR_LEN,
    "an error text the device can send"
);

/// Answers a request of the clock ([`RULES`]).
pub(super) fn serve<C, S>(sh: &mut Shared<'_, C, S>, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
    match frame.kind() {
        Kind::TimeGet => time_get(sh, frame, out),
        Kind::TimeSet => time_set(sh, frame, out),
        _ => Err((ErrorCode::UnknownKind, "no such service")),
    }
}

/// The wall clock at `uptime_ms`, as the time services report it.
pub(super) fn now(wall: &Clock, uptime_ms: u64) -> msg::Time {
    msg::Time {
        unix_ms: wall.unix_ms(uptime_ms),
        synced: wall.synced(),
    }
}

/// Formats the time at `uptime_ms` with `format` into `room`; returns the text length. Text
/// beyond [`msg::MAX_TIME_TEXT`] bytes is refused whatever the room.
pub(super) fn format_time(wall: &Clock, uptime_ms: u64, format: &str, room: &mut [u8]) -> Result<usize, Failure> {
    let cap = room.len().min(msg::MAX_TIME_TEXT);
    let mut w = SliceWriter {
        buf: &mut room[..cap],
        len: 0,
    };
    match clock::strftime(&mut w, format, wall.unix_ms(uptime_ms)) {
        Ok(()) => Ok(w.len),
        Err(clock::FormatError::Unsupported(_)) => Err((ErrorCode::InvalidArgument, UNSUPPORTED)),
        Err(clock::FormatError::Full) => Err((ErrorCode::InvalidArgument, "formatted time longer than 256 bytes")),
    }
}

fn time_get<C, S>(sh: &mut Shared<'_, C, S>, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
    let req = frame.meta::<msg::TimeGet<'_>>().map_err(|c| (c, "time-get metadata"))?;
    super::within(
        req.format,
        msg::MAX_FORMAT_LEN,
        "TimeGet.format is longer than 64 bytes",
    )?;
    let uptime_ms = sh.facts.uptime_ms;
    let now = now(sh.clock, uptime_ms);
    let mut failure = None;
    let spec = FrameSpec::response(Kind::TimeGet, frame.request_id());
    let n = encode_with(out, spec, &now, |room| {
        format_time(sh.clock, uptime_ms, req.format, room).map_err(|f| {
            failure = Some(f);
            0
        })
    });
    match (n, failure) {
        (_, Some(f)) => Err(f),
        (Ok(n), None) => Ok(n),
        (Err(_), None) => Err((ErrorCode::Internal, "time response")),
    }
}

fn time_set<C, S>(sh: &mut Shared<'_, C, S>, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
    let req = frame.meta::<msg::Clock>().map_err(|c| (c, "time-set metadata"))?;
    if !(msg::TIME_MIN_MS..msg::TIME_END_MS).contains(&req.unix_ms) {
        // A clock outside the years 2000-9999 is a client bug, not a time to keep.
        return Err((
            ErrorCode::InvalidArgument,
            "TimeSet.unix_ms outside the years 2000-9999",
        ));
    }
    let uptime_ms = sh.facts.uptime_ms;
    sh.clock.set(req.unix_ms, uptime_ms);
    let now = now(sh.clock, uptime_ms);
    Ok(sh.reply(out, FrameSpec::response(Kind::TimeSet, frame.request_id()), &now, &[]))
}

/// A `fmt::Write` over a byte slice that reports how much it wrote and refuses overflow.
struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
