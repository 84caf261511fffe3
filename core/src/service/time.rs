//! TimeGet (0x20) and TimeSet (0x21): the device's wall clock.

use super::clock;
use super::stats::Service;
use super::{Context, Device, Failure, SliceWriter, Storage};
use crate::codec::encode_with;
use crate::msg;
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind, HEADER_LEN};

impl<C: Context + 'static, S: Storage> Device<'_, C, S> {
    /// The wall clock now, as the time services report it.
    pub fn now(&self) -> msg::Time {
        msg::Time {
            unix_ms: self.clock.unix_ms(self.uptime_ms),
            synced: self.clock.synced(),
        }
    }

    /// Formats the current time with `format` into `room`; returns the text length.
    pub fn format_time(&self, format: &str, room: &mut [u8]) -> Result<usize, Failure> {
        let mut w = SliceWriter { buf: room, len: 0 };
        match clock::strftime(&mut w, format, self.clock.unix_ms(self.uptime_ms)) {
            Ok(()) => Ok(w.len),
            Err(clock::FormatError::Unsupported(_)) => Err((
                ErrorCode::InvalidArgument,
                "unsupported specifier; use %Y %y %m %d %H %M %S %X %x %j %a %A %b %B %p %%",
            )),
            Err(clock::FormatError::Full) => Err((ErrorCode::InvalidArgument, "formatted time too long")),
        }
    }

    pub(super) fn time_get(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Time);
        let req = frame.meta::<msg::TimeGet<'_>>().map_err(|c| (c, "time-get metadata"))?;
        let now = self.now();
        let mut failure = None;
        let spec = FrameSpec::response(Kind::TimeGet, frame.request_id());
        let room_cap = out.len().min(HEADER_LEN + 16 + 256);
        let n = encode_with(&mut out[..room_cap], spec, &now, |room| {
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
        self.clock.set(req.unix_ms, self.uptime_ms);
        let now = self.now();
        Ok(self.reply(out, FrameSpec::response(Kind::TimeSet, frame.request_id()), &now, &[]))
    }
}
