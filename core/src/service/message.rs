//! Message (0x30): a datagram chat line for the application, answered with its reply.

use super::exec::Output;
use super::policy::{OverUdp, Rule, ServedBy};
use super::{events, Conn, Context, Failure, Shared};
use crate::codec::encode_with;
use crate::msg;
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind};

/// Messages and events. Over UDP a subscription is a lease the UDP server keeps; on a session the
/// session is the subscription. `Event` is pushed by the device, never served.
pub(crate) const RULES: [Rule; 3] = [
    Rule::anywhere(Kind::Message, ServedBy::Messages, true, false),
    Rule::anywhere(Kind::Subscribe, ServedBy::Messages, true, false),
    Rule {
        on_session: false,
        over_udp: OverUdp::Unknown,
        udp_with_key: false,
        ..Rule::anywhere(Kind::Event, ServedBy::Messages, false, false)
    },
];

/// Answers a request of messages and events ([`RULES`]). (The UDP server answers
/// subscriptions itself, as leases; on a session the session is the subscription.)
pub(super) fn serve<C: Context, S>(
    sh: &mut Shared<'_, C, S>,
    conn: &mut Conn,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    match frame.kind() {
        Kind::Message => message(sh, frame, out),
        Kind::Subscribe => events::subscribe(sh, conn, frame, out),
        // Pushed by the device, never served.
        _ => Err((ErrorCode::UnknownKind, "no such service")),
    }
}

/// Answers `Message` with the application's reply ([`Context::on_message`]).
fn message<C: Context, S>(sh: &mut Shared<'_, C, S>, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
    let req = frame.meta::<msg::Message<'_>>().map_err(|c| (c, "message metadata"))?;
    super::within(req.from, msg::MAX_FROM_LEN, "Message.from is longer than 32 bytes")?;
    let text = core::str::from_utf8(frame.body).map_err(|_| (ErrorCode::Malformed, "message text is not UTF-8"))?;
    let me = msg::Message {
        from: sh.facts.config.name,
    };
    let spec = FrameSpec::response(Kind::Message, frame.request_id());
    let ctx = &mut *sh.ctx;
    encode_with(out, spec, &me, |room| {
        let mut reply = Output::new(room);
        ctx.on_message(req.from, text, &mut reply);
        Ok(reply.len())
    })
    .map_err(|_| (ErrorCode::Internal, "message reply"))
}
