//! Message (0x30): a datagram chat line for the application, answered with its reply.

use super::exec::Output;
use super::stats::Service;
use super::{Context, Device, Failure, Storage};
use crate::codec::encode_with;
use crate::msg;
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind};

impl<C: Context + 'static, S: Storage> Device<'_, C, S> {
    pub(super) fn message(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Message);
        let req = frame.meta::<msg::Message<'_>>().map_err(|c| (c, "message metadata"))?;
        super::within(req.from, msg::MAX_FROM_LEN, "Message.from is longer than 32 bytes")?;
        let text = core::str::from_utf8(frame.body).map_err(|_| (ErrorCode::Malformed, "message text is not UTF-8"))?;
        let me = msg::Message { from: self.config.name };
        let spec = FrameSpec::response(Kind::Message, frame.request_id());
        let ctx = &mut self.ctx;
        encode_with(out, spec, &me, |room| {
            let mut reply = Output::new(room);
            ctx.on_message(req.from, text, &mut reply);
            Ok(reply.len())
        })
        .map_err(|_| (ErrorCode::Internal, "message reply"))
    }
}
