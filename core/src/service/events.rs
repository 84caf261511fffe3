//! Subscribe (0x31) on a session, and the Event (0x32) frames pushed to subscribers.
//!
//! Over UDP a subscription is a lease kept by the datagram server (`server::datagram`); on a
//! session (TCP or a serial line) the session itself is the subscription: it lasts until the peer
//! unsubscribes or the session ends, and events travel inside it — sealed on a secure session,
//! which is the only way to receive them from a device with a key.

use super::{Conn, Failure, Shared};
use crate::codec::encode;
use crate::msg;
use crate::wire::{Flags, Frame, FrameSpec, Kind};

/// The events service's own state: the sequence number of the last event pushed.
pub(crate) struct Events {
    seq: u32,
}

impl Events {
    /// No event pushed yet.
    pub(crate) const fn new() -> Self {
        Events { seq: 0 }
    }

    /// The sequence number of the next event: one counter for every transport, so a subscriber
    /// sees gaps where it missed events.
    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The sequence number the last event was given (0: none since boot).
    pub(crate) fn last_seq(&self) -> u32 {
        self.seq
    }

    /// A (soft) reboot: sequence numbers count from 1 again.
    pub(crate) fn restart(&mut self) {
        self.seq = 0;
    }
}

/// Answers `Subscribe` on a session: the session is the subscription.
pub(super) fn subscribe<C, S>(
    sh: &mut Shared<'_, C, S>,
    conn: &mut Conn,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let req = frame.meta::<msg::Subscribe>().map_err(|c| (c, "subscribe metadata"))?;
    conn.subscribed = req.on;
    Ok(sh.reply(out, FrameSpec::response(Kind::Subscribe, frame.request_id()), &(), &[]))
}

/// Encodes an Event frame (flags 0, request id 0) into `out`; returns its length, 0 if it does
/// not fit or its topic is longer than [`msg::MAX_TOPIC_LEN`] (such an event is sent to nobody).
pub fn event_frame(out: &mut [u8], topic: &str, seq: u32, data: &[u8]) -> usize {
    if topic.len() > msg::MAX_TOPIC_LEN {
        return 0;
    }
    let spec = FrameSpec {
        kind: Kind::Event,
        flags: Flags::NONE,
        request_id: 0,
    };
    encode(out, spec, &msg::Event { topic, seq }, data).unwrap_or(0)
}
