//! Subscribe (0x31) on a session, and the Event (0x32) frames pushed to subscribers.
//!
//! Over UDP a subscription is a lease kept by the datagram server (`server::datagram`); on a
//! session (TCP or a serial line) the session itself is the subscription: it lasts until the peer
//! unsubscribes or the session ends, and events travel inside it — sealed on a secure session,
//! which is the only way to receive them from a device with a key.

use super::stats::Service;
use super::{Conn, Context, Device, Failure, Storage};
use crate::codec::encode;
use crate::msg;
use crate::wire::{Flags, Frame, FrameSpec, Kind};

impl<C: Context + 'static, S: Storage> Device<'_, C, S> {
    pub(super) fn subscribe(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Message);
        let req = frame.meta::<msg::Subscribe>().map_err(|c| (c, "subscribe metadata"))?;
        conn.subscribed = req.on;
        Ok(self.reply(out, FrameSpec::response(Kind::Subscribe, frame.request_id()), &(), &[]))
    }

    /// The sequence number of the next event: one counter for every transport, so a subscriber
    /// sees gaps where it missed events.
    pub fn next_event_seq(&mut self) -> u32 {
        self.event_seq = self.event_seq.wrapping_add(1);
        self.event_seq
    }

    /// The sequence number the last event was given (0: none since boot).
    pub fn last_event_seq(&self) -> u32 {
        self.event_seq
    }

    /// A (soft) reboot: sequence numbers count from 1 again, as PROTOCOL.md §11.10 says.
    pub fn restart_events(&mut self) {
        self.event_seq = 0;
    }
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
