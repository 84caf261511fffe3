//! The plain-socket services for tutorial-style clients: no framing at all.
//!
//! - TCP upper-echo: every received chunk comes back with ASCII letters upper-cased. One client
//!   at a time; the next one is accepted when the previous one closes.
//! - UDP time: a datagram is a strftime format (empty: `%Y-%m-%d %H:%M:%S`), the reply is the
//!   formatted time, or a line starting `error:`.

use smoltcp::iface::SocketSet;
use smoltcp::socket::{tcp, udp};

use super::Server;
use crate::service::files::Storage;
use crate::service::stats::Service;
use crate::service::Context;

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    pub(super) fn serve_plain(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        let mut any = false;
        if let Some(handle) = self.plain_tcp {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            any |= self.upper_echo(socket);
        }
        if let Some(handle) = self.plain_udp {
            let socket = sockets.get_mut::<udp::Socket>(handle);
            any |= self.plain_time(socket);
        }
        any
    }

    fn upper_echo(&mut self, socket: &mut tcp::Socket<'_>) -> bool {
        if !socket.is_open() {
            let _ = socket.listen(self.config.plain_tcp_port);
            return true;
        }
        let mut any = false;
        // Take only what can be answered right away: the reply is the backpressure.
        while socket.can_recv() {
            let room = socket.send_capacity() - socket.send_queue();
            let take = room.min(self.scratch.len());
            if take == 0 {
                break;
            }
            let Ok(n) = socket.recv_slice(&mut self.scratch[..take]) else {
                break;
            };
            if n == 0 {
                break;
            }
            self.scratch[..n].make_ascii_uppercase();
            let _ = socket.send_slice(&self.scratch[..n]);
            self.device.stats.count(Service::Plain);
            any = true;
        }
        if !socket.may_recv() && socket.state() == tcp::State::CloseWait {
            socket.close();
            any = true;
        }
        any
    }

    fn plain_time(&mut self, socket: &mut udp::Socket<'_>) -> bool {
        let mut any = false;
        while socket.can_send() {
            let Ok((data, meta)) = socket.recv() else { break };
            any = true;
            self.device.stats.count(Service::Time);
            let n = match core::str::from_utf8(data).map(|f| f.trim_end_matches(['\r', '\n'])) {
                Ok(format) => match self.device.format_time(format, &mut self.scratch) {
                    Ok(n) => n,
                    Err((_, detail)) => copy_line(&mut self.scratch, &["error: ", detail]),
                },
                Err(_) => copy_line(&mut self.scratch, &["error: the format is not UTF-8"]),
            };
            let _ = socket.send_slice(&self.scratch[..n], meta.endpoint);
        }
        any
    }
}

fn copy_line(out: &mut [u8], parts: &[&str]) -> usize {
    let mut n = 0;
    for p in parts {
        let take = p.len().min(out.len() - n);
        out[n..n + take].copy_from_slice(&p.as_bytes()[..take]);
        n += take;
    }
    n
}
