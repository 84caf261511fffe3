//! The framed UDP port: one frame per datagram, and events pushed to subscribers.

use smoltcp::iface::SocketSet;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use super::Server;
use crate::codec::{encode, parse_datagram, DatagramError};
use crate::msg;
use crate::service::files::Storage;
use crate::service::stats::Service;
use crate::service::{Conn, Context, Transport};
use crate::wire::{ErrorCode, FrameSpec, Kind};

/// Datagrams handled per pass.
const DATAGRAMS_PER_PASS: usize = 16;

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    pub(super) fn serve_udp(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        let socket = sockets.get_mut::<udp::Socket>(self.udp);
        let mut any = false;
        for _ in 0..DATAGRAMS_PER_PASS {
            if !socket.can_send() {
                break;
            }
            let Ok((data, meta)) = socket.recv() else { break };
            any = true;
            let peer = meta.endpoint;
            self.device.stats.bytes_in += data.len() as u64;
            let out = &mut self.scratch;
            let n = match parse_datagram(data, out.len()) {
                Ok(frame) if frame.kind() == Kind::Subscribe => {
                    self.device.stats.count(Service::Message);
                    let id = frame.request_id();
                    match frame.meta::<msg::Subscribe>() {
                        Ok(req) => match subscribe(&mut self.subscribers, peer, req.on) {
                            Ok(()) => encode(out, FrameSpec::response(Kind::Subscribe, id), &(), &[]).unwrap_or(0),
                            Err(()) => self.device.error(
                                out,
                                Kind::Subscribe,
                                id,
                                ErrorCode::NoSpace,
                                format_args!("too many subscribers"),
                            ),
                        },
                        Err(code) => {
                            self.device
                                .error(out, Kind::Subscribe, id, code, format_args!("subscribe metadata"))
                        }
                    }
                }
                Ok(frame) => {
                    let mut conn = Conn::new();
                    self.device.handle(&mut conn, &frame, Transport::Udp, out)
                }
                Err(e) => {
                    self.device.stats.decode_errors += 1;
                    let (kind, id, code) = match e {
                        DatagramError::Decode(d) => {
                            let (k, i) = d.request().unwrap_or((Kind::Unknown(0), 0));
                            (k, i, d.code())
                        }
                        _ => (Kind::Unknown(0), 0, ErrorCode::Malformed),
                    };
                    self.device.error(out, kind, id, code, format_args!("{e}"))
                }
            };
            if n > 0 && socket.send_slice(&out[..n], peer).is_ok() {
                self.device.stats.bytes_out += n as u64;
            }
        }
        any
    }

    /// Pushes an event to every UDP subscriber; returns how many it was sent to.
    ///
    /// Best effort, like UDP itself: a subscriber whose datagram does not fit the socket's
    /// transmit buffer misses this event (the sequence number lets it notice).
    pub fn publish(&mut self, sockets: &mut SocketSet<'_>, topic: &str, data: &[u8]) -> usize {
        self.event_seq = self.event_seq.wrapping_add(1);
        let event = msg::Event {
            topic,
            seq: self.event_seq,
        };
        let spec = FrameSpec {
            kind: Kind::Event,
            flags: crate::wire::Flags::NONE,
            request_id: 0,
        };
        let Ok(n) = encode(&mut self.scratch, spec, &event, data) else {
            return 0;
        };
        let socket = sockets.get_mut::<udp::Socket>(self.udp);
        let mut sent = 0;
        for peer in &self.subscribers {
            if socket.send_slice(&self.scratch[..n], *peer).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Endpoints subscribed to events.
    pub fn subscribers(&self) -> &[IpEndpoint] {
        &self.subscribers
    }
}

fn subscribe<const M: usize>(list: &mut heapless::Vec<IpEndpoint, M>, peer: IpEndpoint, on: bool) -> Result<(), ()> {
    let pos = list.iter().position(|p| *p == peer);
    match (on, pos) {
        (true, Some(_)) => Ok(()),
        (true, None) => list.push(peer).map_err(|_| ()),
        (false, Some(i)) => {
            list.swap_remove(i);
            Ok(())
        }
        (false, None) => Ok(()),
    }
}
