//! TimeGet (0x20) and TimeSet (0x21): the device's wall clock.

use super::clock;
use super::policy::{Rule, ServedBy};
use super::stats::Service;
use super::{Context, Device, Failure, SliceWriter, Storage};
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

impl<C: Context + 'static, S: Storage> Device<'_, C, S> {
    /// Answers a request of the clock ([`RULES`]).
    pub(super) fn time(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        match frame.kind() {
            Kind::TimeGet => self.time_get(frame, out),
            Kind::TimeSet => self.time_set(frame, out),
            _ => Err((ErrorCode::UnknownKind, "no such service")),
        }
    }

    /// The wall clock now, as the time services report it.
    pub fn now(&self) -> msg::Time {
        msg::Time {
            unix_ms: self.clock.unix_ms(self.uptime_ms),
            synced: self.clock.synced(),
        }
    }

    /// Formats the current time with `format` into `room`; returns the text length. Text beyond
    /// [`msg::MAX_TIME_TEXT`] bytes is refused whatever the room.
    pub fn format_time(&self, format: &str, room: &mut [u8]) -> Result<usize, Failure> {
        let cap = room.len().min(msg::MAX_TIME_TEXT);
        let mut w = SliceWriter {
            buf: &mut room[..cap],
            len: 0,
        };
        match clock::strftime(&mut w, format, self.clock.unix_ms(self.uptime_ms)) {
            Ok(()) => Ok(w.len),
            Err(clock::FormatError::Unsupported(_)) => Err((ErrorCode::InvalidArgument, UNSUPPORTED)),
            Err(clock::FormatError::Full) => Err((ErrorCode::InvalidArgument, "formatted time longer than 256 bytes")),
        }
    }

    pub(super) fn time_get(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Time);
        let req = frame.meta::<msg::TimeGet<'_>>().map_err(|c| (c, "time-get metadata"))?;
        super::within(
            req.format,
            msg::MAX_FORMAT_LEN,
            "TimeGet.format is longer than 64 bytes",
        )?;
        let now = self.now();
        let mut failure = None;
        let spec = FrameSpec::response(Kind::TimeGet, frame.request_id());
        let n = encode_with(out, spec, &now, |room| {
            self.format_time(req.format, room).map_err(|f| {
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

    pub(super) fn time_set(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Time);
        let req = frame.meta::<msg::Clock>().map_err(|c| (c, "time-set metadata"))?;
        if !(msg::TIME_MIN_MS..msg::TIME_END_MS).contains(&req.unix_ms) {
            // A clock outside the years 2000-9999 is a client bug, not a time to keep.
            return Err((
                ErrorCode::InvalidArgument,
                "TimeSet.unix_ms outside the years 2000-9999",
            ));
        }
        self.clock.set(req.unix_ms, self.uptime_ms);
        let now = self.now();
        Ok(self.reply(out, FrameSpec::response(Kind::TimeSet, frame.request_id()), &now, &[]))
    }
}
