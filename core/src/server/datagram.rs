//! The framed UDP port: one frame per datagram, and events pushed to subscribers.
//!
//! A datagram's source address is easy to forge, so this port must not let anyone bounce
//! traffic at a third party (docs/PROTOCOL.md §1):
//!
//! - a datagram larger than [`crate::msg::MAX_DATAGRAM`] or that does not decode as one frame
//!   (plus optional zero padding) is dropped without an answer, and counted in [`crate::service::stats::Stats::udp_dropped`];
//! - no answer is larger than the request datagram it answers: a client pads its request with
//!   zeros (to [`crate::msg::MAX_DATAGRAM`] bytes, the largest answer). A request too small for
//!   its answer is still served, like one whose answer was lost, but answered only with a short
//!   `PadRequest` error naming the size needed, or, if even that does not fit, not at all;
//! - a subscription, which makes the device send events unasked, is granted only to a full-size
//!   datagram and lasts [`crate::msg::SUBSCRIBE_LEASE_MS`]; the subscriber renews it.

use smoltcp::iface::SocketSet;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use super::{Server, DATAGRAM_MAX};
use crate::codec::{encode, parse_datagram, DatagramError};
use crate::msg;
use crate::service::events::event_frame;
use crate::service::files::Storage;
use crate::service::stats::{Service, Tally};
use crate::service::{Conn, Context, Transport};
use crate::wire::{DecodeError, ErrorCode, Frame, FrameSpec, Kind};

/// Datagrams handled per pass on each UDP socket (framed and plain).
const DATAGRAMS_PER_PASS: usize = 16;

/// What one pass of [`Server::each_datagram`] did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Pass {
    /// A datagram was received.
    pub any: bool,
    /// Bytes of answers queued for sending.
    pub sent: u64,
}

/// An endpoint that receives events, until its lease runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// Where events go: the address and port the `Subscribe` came from.
    pub peer: IpEndpoint,
    /// Device uptime (ms) at which the subscription lapses unless renewed.
    pub until_ms: u64,
}

/// Why a subscription request was refused.
enum SubscribeError {
    /// Every slot holds a live lease.
    Full,
    /// The datagram was smaller than an event may be.
    Small,
}

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    /// Serves the datagrams waiting on `socket`, at most [`DATAGRAMS_PER_PASS`] a pass (the
    /// other sockets get their turn), and only while the socket can queue an answer (a datagram
    /// left unread waits for the next pass instead of losing its answer). `serve` answers one
    /// datagram into `self.scratch` and returns the answer's length, 0 for no answer. Shared by
    /// the framed UDP port and the plain UDP services.
    pub(super) fn each_datagram(
        &mut self,
        socket: &mut udp::Socket<'_>,
        mut serve: impl FnMut(&mut Self, &[u8], IpEndpoint) -> usize,
    ) -> Pass {
        let mut pass = Pass::default();
        for _ in 0..DATAGRAMS_PER_PASS {
            if !socket.can_send() {
                break;
            }
            let Ok((data, meta)) = socket.recv() else { break };
            pass.any = true;
            let n = serve(self, data, meta.endpoint);
            if n > 0 && socket.send_slice(&self.scratch[..n], meta.endpoint).is_ok() {
                pass.sent += n as u64;
            }
        }
        pass
    }

    pub(super) fn serve_udp(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        // The server sets the uptime before serving: it is the lease clock.
        let now_ms = self.device.uptime_ms();
        self.subscribers.retain(|s| s.until_ms > now_ms);
        let socket = sockets.get_mut::<udp::Socket>(self.udp);
        let pass = self.each_datagram(socket, |this, data, peer| this.framed_datagram(data, peer, now_ms));
        self.device.stats.tally(Tally::BytesOut(pass.sent as usize));
        pass.any
    }

    /// Serves one datagram of the framed port from `peer` into `self.scratch`; returns the
    /// answer's length, 0 for none.
    fn framed_datagram(&mut self, data: &[u8], peer: IpEndpoint, now_ms: u64) -> usize {
        let allowance = data.len();
        self.device.stats.tally(Tally::BytesIn(data.len()));
        let out = &mut self.scratch;
        if data.len() > DATAGRAM_MAX {
            // Beyond the protocol's datagram size, padding included: not for this port.
            self.device.stats.tally(Tally::DecodeFault);
            self.device.stats.tally(Tally::DatagramDropped);
            return 0;
        }
        let (n, kind, id) = match parse_datagram(data, out.len()) {
            // On a device with a key, `handle` refuses it (datagrams only read).
            Ok(frame) if frame.kind() == Kind::Subscribe && !self.device.key_required() => {
                let n = subscribe_request(
                    &mut self.device,
                    &mut self.subscribers,
                    &frame,
                    peer,
                    allowance,
                    now_ms,
                    out,
                );
                (n, frame.kind(), frame.request_id())
            }
            Ok(frame) => {
                let mut conn = Conn::new();
                let n = self.device.handle(&mut conn, &frame, Transport::Udp, out);
                (n, frame.kind(), frame.request_id())
            }
            // A header whose CRC holds, from a peer speaking another version: the one
            // fault worth answering, so that versions can be negotiated (§14).
            Err(DatagramError::Decode(e @ DecodeError::UnsupportedVersion { kind, request_id, .. })) => {
                self.device.stats.tally(Tally::DecodeFault);
                let n = self.device.error(out, kind, request_id, e.code(), format_args!("{e}"));
                (n, kind, request_id)
            }
            Err(_) => {
                // Garbage, damage, truncation, trailing bytes, an oversized frame: nothing
                // trustworthy to answer, and an answer would make the port a reflector.
                self.device.stats.tally(Tally::DecodeFault);
                self.device.stats.tally(Tally::DatagramDropped);
                return 0;
            }
        };
        if n <= allowance {
            return n;
        }
        // Served, but the answer would amplify: say how much padding it needs, if even that
        // fits; otherwise stay silent.
        let pad = self.device.error(
            out,
            kind,
            id,
            ErrorCode::PadRequest,
            format_args!("pad the request datagram to {n} bytes"),
        );
        if pad > allowance {
            self.device.stats.tally(Tally::DatagramDropped);
            return 0;
        }
        pad
    }

    /// Pushes an event to every UDP subscriber with a live lease and every session that
    /// subscribed; returns how many it was sent to.
    ///
    /// Best effort, like UDP itself: a subscriber whose datagram does not fit the socket's
    /// transmit buffer, or a session busy with an answer, misses this event (the sequence number
    /// lets it notice). A serial driver's session gets the same event with
    /// [`Serial::push_event`](crate::serial::Serial::push_event) and the sequence number returned
    /// by [`Server::last_event_seq`].
    pub fn publish(&mut self, sockets: &mut SocketSet<'_>, topic: &str, data: &[u8]) -> usize {
        let seq = self.device.next_event_seq();
        let now_ms = self.device.uptime_ms();
        let mut sent = 0;
        let n = event_frame(&mut self.scratch, topic, seq, data);
        if n > 0 {
            let socket = sockets.get_mut::<udp::Socket>(self.udp);
            for s in self.subscribers.iter().filter(|s| s.until_ms > now_ms) {
                if socket.send_slice(&self.scratch[..n], s.peer).is_ok() {
                    sent += 1;
                }
            }
        }
        for session in self.sessions.iter_mut() {
            sent += usize::from(session.engine.push_event(now_ms, topic, seq, data, &mut self.device));
        }
        sent
    }

    /// The sequence number [`Server::publish`] gave the last event.
    pub fn last_event_seq(&self) -> u32 {
        self.device.last_event_seq()
    }

    /// The current subscriptions (leases that ran out are dropped on the next serve).
    pub fn subscribers(&self) -> &[Subscriber] {
        &self.subscribers
    }
}

/// Serves a `Subscribe` datagram of `size` bytes from `peer` into `out`; returns the answer's
/// length.
fn subscribe_request<C: Context + 'static, S: Storage, const M: usize>(
    device: &mut crate::service::Device<'_, C, S>,
    list: &mut heapless::Vec<Subscriber, M>,
    frame: &Frame<'_>,
    peer: IpEndpoint,
    size: usize,
    now_ms: u64,
    out: &mut [u8],
) -> usize {
    device.stats.count(Service::Message);
    let id = frame.request_id();
    let req = match frame.meta::<msg::Subscribe>() {
        Ok(req) => req,
        Err(code) => return device.error(out, Kind::Subscribe, id, code, format_args!("subscribe metadata")),
    };
    match subscribe(list, peer, req.on, size, now_ms) {
        Ok(()) => encode(out, FrameSpec::response(Kind::Subscribe, id), &(), &[]).unwrap_or(0),
        Err(SubscribeError::Full) => device.error(
            out,
            Kind::Subscribe,
            id,
            ErrorCode::NoSpace,
            format_args!("too many subscribers"),
        ),
        Err(SubscribeError::Small) => device.error(
            out,
            Kind::Subscribe,
            id,
            ErrorCode::PadRequest,
            format_args!("pad the request datagram to {DATAGRAM_MAX} bytes"),
        ),
    }
}

/// Adds, renews or removes `peer`'s subscription. Leases that ran out free their slots first.
fn subscribe<const M: usize>(
    list: &mut heapless::Vec<Subscriber, M>,
    peer: IpEndpoint,
    on: bool,
    size: usize,
    now_ms: u64,
) -> Result<(), SubscribeError> {
    list.retain(|s| s.until_ms > now_ms);
    let pos = list.iter().position(|s| s.peer == peer);
    if !on {
        if let Some(i) = pos {
            list.swap_remove(i);
        }
        return Ok(());
    }
    // An event can be as large as a datagram: only a peer that sent that much may be sent
    // events unasked for a whole lease.
    if size < DATAGRAM_MAX {
        return Err(SubscribeError::Small);
    }
    let until_ms = now_ms.saturating_add(msg::SUBSCRIBE_LEASE_MS);
    match pos {
        Some(i) => list[i].until_ms = until_ms,
        None => list
            .push(Subscriber { peer, until_ms })
            .map_err(|_| SubscribeError::Full)?,
    }
    Ok(())
}
