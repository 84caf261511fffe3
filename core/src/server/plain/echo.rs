//! The plain TCP upper-echo: every byte comes back with ASCII letters upper-cased, per client,
//! in order, and nothing is dropped when a client reads slowly.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::Activity;
use crate::server::Server;
use crate::service::files::Storage;
use crate::service::stats::Service;
use crate::service::Context;

/// One socket of the echo pool.
pub(super) struct EchoSlot {
    pub(super) handle: SocketHandle,
    activity: Activity,
}

impl EchoSlot {
    pub(super) fn new(handle: SocketHandle) -> Self {
        EchoSlot {
            handle,
            activity: Activity::NONE,
        }
    }
}

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    pub(super) fn upper_echo(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let slot = &mut self.plain.echo[i];
        let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
        if !socket.is_open() {
            if super::owes_reset(socket) {
                return false;
            }
            // Listen again in the same pass the previous connection ended in.
            slot.activity = Activity::NONE;
            let _ = socket.listen(self.config.plain_tcp_port);
            return true;
        }
        if matches!(socket.state(), tcp::State::Listen | tcp::State::SynReceived) {
            return false;
        }
        if slot.activity.idle(now, socket, &self.config.limits) {
            socket.abort();
            return true;
        }
        let mut any = false;
        // Take only what can be answered right away: the reply is the backpressure. What the
        // client has not read stays in the transmit buffer, and what does not fit there stays in
        // the receive buffer, whose shrinking window slows the client down.
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
        // The client is done sending and everything it sent has been answered: close our side
        // (the FIN follows the queued reply).
        if socket.state() == tcp::State::CloseWait && socket.recv_queue() == 0 {
            socket.close();
            any = true;
        }
        any
    }
}
