//! The TCP driver: binds a smoltcp socket to a [`Session`] engine. Every session rule lives in
//! the engine; this file only moves bytes and maps socket states onto engine calls.

use smoltcp::socket::tcp;

use crate::service::files::Storage;
use crate::service::{Context, Device};
use crate::session::{Close, Limits, Session};

/// Rounds of transmit-then-receive one session gets per serve pass, so that a busy peer cannot
/// starve the others.
const ROUNDS_PER_PASS: usize = 32;

/// One session slot: the socket it currently owns and its engine.
pub(crate) struct TcpSession<const N: usize> {
    pub(crate) handle: smoltcp::iface::SocketHandle,
    pub(crate) engine: Session<N>,
    /// Since when an explained verdict ([`Close::is_explained`]) waits for its answer to be
    /// acknowledged before the reset.
    explained_since: Option<u64>,
}

/// How long a refusal that explains a close may take to be acknowledged before the reset.
const EXPLAIN_LINGER_MS: u64 = 1_000;

/// Whether a socket holds a peer the server should serve (past the handshake).
pub(crate) fn has_peer(socket: &tcp::Socket<'_>) -> bool {
    socket.is_active() && !matches!(socket.state(), tcp::State::Listen | tcp::State::SynReceived)
}

/// Whether an aborted socket has yet to send its reset: listening again now would drop it, and
/// the peer would never learn that its connection is gone.
pub(crate) fn owes_reset(socket: &tcp::Socket<'_>) -> bool {
    socket.state() == tcp::State::Closed && socket.remote_endpoint().is_some()
}

impl<const N: usize> TcpSession<N> {
    pub(crate) fn new(handle: smoltcp::iface::SocketHandle, limits: Limits) -> Self {
        TcpSession {
            handle,
            engine: Session::with_limits(limits),
            explained_since: None,
        }
    }

    /// Resets the connection and the engine (a reboot), without counting a drop.
    pub(crate) fn reset<C: Context, S: Storage>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        device: &mut Device<'_, C, S>,
    ) {
        socket.abort();
        self.explained_since = None;
        self.engine.close(device);
    }

    /// Drops the peer with a reset and ends the engine's state.
    pub(crate) fn drop_peer<C: Context, S: Storage>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        device: &mut Device<'_, C, S>,
        why: Close,
    ) {
        socket.abort();
        self.explained_since = None;
        self.engine.drop_peer(device, why);
    }

    /// Serves the session once. Returns whether anything happened.
    pub(crate) fn serve<C: Context + 'static, S: Storage>(
        &mut self,
        now_ms: u64,
        socket: &mut tcp::Socket<'_>,
        device: &mut Device<'_, C, S>,
        port: u16,
    ) -> bool {
        let engine = &mut self.engine;
        if !socket.is_open() {
            // Closed: by the peer's reset, our abort, or a finished close. Listen again.
            if engine.is_open() {
                event!(info, "session closed");
                engine.close(device);
            }
            self.explained_since = None;
            if owes_reset(socket) {
                // The next interface poll sends it; listen after that.
                return true;
            }
            let _ = socket.listen(port);
            return true;
        }
        if !engine.is_open() {
            if !has_peer(socket) {
                return false;
            }
            match socket.remote_endpoint() {
                Some(peer) => event!(info, "session open: {}", peer),
                None => event!(info, "session open"),
            }
            engine.open(now_ms, device);
        }
        let mut progress = false;
        for _ in 0..ROUNDS_PER_PASS {
            let sent = socket
                .send(|room| {
                    let n = engine.transmit(now_ms, room, device);
                    (n, n)
                })
                .unwrap_or(0);
            let taken = if engine.wants_input() {
                socket
                    .recv(|data| {
                        let n = engine.receive_mut(now_ms, data, device);
                        (n, n)
                    })
                    .unwrap_or(0)
            } else {
                0
            };
            progress |= sent > 0 || taken > 0;
            if sent == 0 && taken == 0 {
                break;
            }
        }
        if !socket.may_recv() && socket.recv_queue() == 0 && !engine.is_finished() {
            // The peer's FIN, with every byte before it read.
            engine.finish();
            progress = true;
            // A command waiting for its deadline is ended now rather than on a later poll.
            let _ = socket.send(|room| {
                let n = engine.transmit(now_ms, room, device);
                (n, n)
            });
        }
        if let Some(why) = engine.check(now_ms) {
            // A refused handshake's answer is worth delivering before the reset (the reset
            // would discard it unsent): wait, briefly, until the peer has acknowledged it.
            if why.is_explained() && socket.send_queue() > 0 {
                let since = *self.explained_since.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) < EXPLAIN_LINGER_MS {
                    return progress;
                }
            }
            self.drop_peer(socket, device, why);
            return true;
        }
        if engine.is_finished() && engine.is_settled() && socket.state() == tcp::State::CloseWait {
            // Everything the peer asked for has been answered: close our side too.
            socket.close();
        }
        progress
    }
}
