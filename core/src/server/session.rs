//! One TCP session: its socket, its decoder, its staged response and its service state.

use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::codec::Decoder;
use crate::service::files::Storage;
use crate::service::{Conn, Context, Device, Transport};
use crate::wire::{DecodeError, Kind};

/// How many frames one session may handle in one `serve` pass, so a busy peer cannot starve
/// the others.
const FRAMES_PER_PASS: usize = 32;

/// What the session machine is doing with its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Waiting for a peer (socket listening).
    Listening,
    /// A peer is connected and served.
    Connected,
}

pub(crate) struct Session<const N: usize> {
    pub(crate) handle: smoltcp::iface::SocketHandle,
    decoder: Decoder<N>,
    state: State<N>,
}

struct State<const N: usize> {
    conn: Conn,
    link: Link,
    /// One encoded response frame; `pos..len` is still to be sent.
    out: [u8; N],
    pos: usize,
    len: usize,
    /// Garbage bytes since the last valid frame.
    garbage: usize,
    last_activity: Instant,
}

/// Limits a session enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) port: u16,
    pub(crate) idle_ms: u64,
    pub(crate) garbage: usize,
}

impl<const N: usize> Session<N> {
    pub(crate) fn new(handle: smoltcp::iface::SocketHandle) -> Self {
        Session {
            handle,
            decoder: Decoder::new(),
            state: State {
                conn: Conn::new(),
                link: Link::Listening,
                out: [0; N],
                pos: 0,
                len: 0,
                garbage: 0,
                last_activity: Instant::ZERO,
            },
        }
    }

    pub(crate) fn link(&self) -> Link {
        self.state.link
    }

    /// Ends the session's service state (upload suspended, stream dropped, decoder emptied).
    pub(crate) fn end<C: Context, S: Storage>(&mut self, device: &mut Device<'_, C, S>) {
        if self.state.link == Link::Connected {
            device.stats.sessions_active = device.stats.sessions_active.saturating_sub(1);
            event!(info, "session closed");
        }
        device.close(&mut self.state.conn);
        self.decoder.reset();
        self.state.link = Link::Listening;
        self.state.pos = 0;
        self.state.len = 0;
        self.state.garbage = 0;
    }

    /// Serves the session once. Returns whether anything happened.
    pub(crate) fn serve<C: Context, S: Storage>(
        &mut self,
        now: Instant,
        socket: &mut tcp::Socket<'_>,
        device: &mut Device<'_, C, S>,
        limits: &Limits,
    ) -> bool {
        if !socket.is_open() {
            // Closed: by the peer's reset, our abort, or a finished close. Listen again.
            self.end(device);
            let _ = socket.listen(limits.port);
            return true;
        }
        if self.state.link == Link::Listening {
            if !socket.is_active() || socket.state() == tcp::State::SynReceived {
                return false;
            }
            self.state.link = Link::Connected;
            self.state.last_activity = now;
            match socket.remote_endpoint() {
                Some(peer) => event!(info, "session open: {}", peer),
                None => event!(info, "session open"),
            }
            device.stats.sessions_opened = device.stats.sessions_opened.wrapping_add(1);
            device.stats.sessions_active += 1;
        }
        let mut progress = false;
        for _ in 0..FRAMES_PER_PASS {
            let (sent, empty) = self.flush(socket, device);
            progress |= sent;
            if !empty {
                break;
            }
            if self.state.conn.streaming() {
                // Where the transmit buffer has a frame's worth of contiguous room, the next frame
                // of the stream is built right there: one copy less for every downloaded byte.
                let conn = &mut self.state.conn;
                let direct = socket.send(|room| match room.get_mut(..N) {
                    Some(frame) => {
                        let n = device.resume(conn, frame);
                        (n, Some(n))
                    }
                    None => (0, None),
                });
                let n = match direct {
                    Ok(Some(n)) => {
                        device.stats.bytes_out += n as u64;
                        n
                    }
                    _ => {
                        self.state.len = device.resume(&mut self.state.conn, &mut self.state.out);
                        self.state.pos = 0;
                        self.state.len
                    }
                };
                if n == 0 {
                    // A command that waits: ask again on a later poll.
                    break;
                }
                progress = true;
                continue;
            }
            if !socket.can_recv() || self.read_one(socket, device) == 0 {
                break;
            }
            progress = true;
            if self.state.garbage > limits.garbage {
                // A peer that sends nothing but garbage is cut off with a reset.
                event!(info, "session reset: more than {} bytes of garbage", limits.garbage);
                socket.abort();
                device.stats.sessions_closed_by_device += 1;
                return true;
            }
        }
        let (sent, _) = self.flush(socket, device);
        progress |= sent;
        let st = &mut self.state;
        let settled = st.len == st.pos && !st.conn.streaming();
        if progress {
            st.last_activity = now;
        } else if (now - st.last_activity).total_millis() >= limits.idle_ms {
            event!(info, "session reset: idle for {} ms", limits.idle_ms);
            socket.abort();
            device.stats.sessions_closed_by_device += 1;
            return true;
        }
        if settled && !socket.may_recv() && socket.recv_queue() == 0 && socket.state() == tcp::State::CloseWait {
            // The peer finished sending (FIN) and everything it asked for has been answered.
            socket.close();
        }
        progress
    }

    /// Sends what is staged. Returns whether any byte went out and whether the stage is empty.
    fn flush<C: Context, S: Storage>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        device: &mut Device<'_, C, S>,
    ) -> (bool, bool) {
        let st = &mut self.state;
        let mut sent = 0;
        if st.pos < st.len {
            if let Ok(n) = socket.send_slice(&st.out[st.pos..st.len]) {
                st.pos += n;
                sent = n;
                device.stats.bytes_out += n as u64;
            }
        }
        (sent > 0, st.pos == st.len)
    }

    /// Decodes from the socket until one frame (or fault) is handled or the data runs out.
    /// Returns the bytes taken from the socket.
    fn read_one<C: Context, S: Storage>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        device: &mut Device<'_, C, S>,
    ) -> usize {
        let decoder = &mut self.decoder;
        let st = &mut self.state;
        socket
            .recv(|data| {
                let (used, item) = decoder.decode(data);
                device.stats.bytes_in += used as u64;
                let n = match item {
                    None => 0,
                    Some(Ok(frame)) => {
                        // Upload chunks would drown everything else at the info level.
                        let (kind, id, len) = (frame.kind(), frame.request_id(), frame.body.len());
                        if kind == Kind::PutData {
                            event!(debug, "request {:?} id {} ({} bytes)", kind, id, len);
                        } else {
                            event!(info, "request {:?} id {} ({} bytes)", kind, id, len);
                        }
                        st.garbage = 0;
                        device.handle(&mut st.conn, &frame, Transport::Tcp, &mut st.out)
                    }
                    Some(Err(e)) => {
                        event!(info, "bad input: {}", e);
                        device.stats.decode_errors += 1;
                        if let DecodeError::Garbage { skipped } | DecodeError::HeaderCrc { skipped } = e {
                            st.garbage += skipped;
                        }
                        let (kind, id) = e.request().unwrap_or((Kind::Unknown(0), 0));
                        device.error(&mut st.out, kind, id, e.code(), format_args!("{e}"))
                    }
                };
                st.pos = 0;
                st.len = n;
                (used, used)
            })
            .unwrap_or(0)
    }
}
