//! The device's network side: [`Server`] runs the services on smoltcp sockets.
//!
//! The application owns the interface, the PHY and the socket set, and drives everything from
//! its main loop:
//!
//! ```text
//! loop {
//!     let now = clock();
//!     server.poll(now, &mut iface, &mut phy, &mut sockets);
//!     sleep_until(iface.poll_delay(now, &sockets));     // WFI on an MCU
//! }
//! ```
//!
//! Nothing here blocks, allocates or spins: a session whose peer reads slowly keeps its staged
//! frame and its place in a stream until a later poll finds room in its transmit buffer.
//!
//! The session rules (frame deadline, idle timeout, garbage budget, staging, streams) live in the
//! transport-independent [`crate::session`] engine; [`tcp`] binds it to smoltcp sockets. This
//! module adds what only a multi-peer TCP server needs: one more listening socket than sessions,
//! and the eviction of an idle session when a new peer arrives while every session is taken.

mod datagram;
#[cfg(feature = "plain")]
mod plain;
mod tcp;

pub use datagram::Subscriber;

#[cfg(feature = "plain")]
pub use plain::{PlainSockets, COMMAND_SOCKETS, ECHO_SOCKETS, PLAIN_REPLY_FLOOR};
#[cfg(feature = "plain-actors")]
pub use plain::{COMMAND_LINE_MAX, COMMAND_TX_MIN, REPLY_HEADER_ROOM};

use heapless::Vec;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy;
use smoltcp::socket::udp;
use smoltcp::time::Instant;

use crate::codec::encode;
use crate::msg;
use crate::service::files::Storage;
use crate::service::stats::Tally;
use crate::service::{Context, Device};
use crate::session::{pick_eviction, Close, Limits, Newcomer};
use crate::wire::{ErrorCode, FrameSpec, Kind};
use tcp::{has_peer, owes_reset, TcpSession};

/// Ports and limits of a [`Server`].
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Framed TCP port.
    pub tcp_port: u16,
    /// Framed UDP port (time, messages, events).
    pub udp_port: u16,
    /// Plain TCP upper-echo port (feature `plain`).
    pub plain_tcp_port: u16,
    /// Plain UDP time port (feature `plain`).
    pub plain_udp_port: u16,
    /// Plain TCP remote-command port, 4-byte length before the output (feature `plain-actors`).
    pub plain_command_port: u16,
    /// Plain TCP remote-command port, JSON header before the output (feature `plain-actors`).
    pub plain_command_json_port: u16,
    /// Plain UDP chat port (feature `plain-actors`).
    pub plain_chat_port: u16,
    /// The rules every session enforces on its peer (frame deadline, idle time, garbage budget,
    /// handshake deadline, and when a session gives way to a new peer).
    pub limits: Limits,
    /// How long a new peer waits for a session to be freed or become evictable before it is
    /// answered `Busy` and closed.
    pub busy_wait_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp_port: 7070,
            udp_port: 7071,
            plain_tcp_port: 8080,
            plain_udp_port: 9000,
            plain_command_port: 8081,
            plain_command_json_port: 8082,
            plain_chat_port: 9001,
            limits: Limits::DEFAULT,
            busy_wait_ms: 10_000,
        }
    }
}

/// Most UDP subscribers to events.
pub const MAX_SUBSCRIBERS: usize = 4;
/// Largest framed UDP datagram, request (padding included) or response; see
/// [`crate::msg::MAX_DATAGRAM`].
pub const DATAGRAM_MAX: usize = crate::msg::MAX_DATAGRAM;

/// How long a `Busy`-answered peer may take to finish closing before it is reset, so that the
/// spare socket listens again soon even for a peer that never acknowledges.
const REFUSED_LINGER_MS: u64 = 2_000;

/// On a device with a key, how long a new peer may take to send its first whole frame while no
/// session can give way to it, before it is reset: a key holder's message 1 follows its
/// connection at once, and a peer that holds the one listening socket saying nothing keeps every
/// later peer out (docs/PROTOCOL.md §13 rule 5).
const FIRST_FRAME_MS: u64 = 20;

/// How a peer waiting on the spare socket is turned away.
#[derive(Debug, Clone, Copy)]
enum TurnAway {
    /// One `Busy` error frame, then the connection is closed.
    Busy,
    /// A reset: it sent nothing whole to answer.
    Reset,
}

/// The sockets a server needs, with buffers from the caller.
pub struct Sockets<'b, const SESSIONS: usize> {
    /// One TCP socket per session.
    pub sessions: [smoltcp::socket::tcp::Socket<'b>; SESSIONS],
    /// One more TCP socket than sessions, with the same buffers: it keeps the framed port
    /// listening while every session is taken, so that a new peer is accepted (and an idle session
    /// evicted for it) instead of refused, and so that a peer reconnecting at once always finds a
    /// listener. The sockets trade roles as peers come and go.
    pub spare: smoltcp::socket::tcp::Socket<'b>,
    /// The framed UDP socket.
    pub udp: udp::Socket<'b>,
    /// The plain-socket services' sockets (feature `plain`).
    #[cfg(feature = "plain")]
    pub plain: PlainSockets<'b>,
}

/// The Tether device server: `SESSIONS` TCP sessions with frames of up to `N` bytes.
pub struct Server<'a, C: 'static, S, const N: usize, const SESSIONS: usize = 4> {
    config: ServerConfig,
    /// The services and their shared state.
    pub device: Device<'a, C, S>,
    sessions: [TcpSession<N>; SESSIONS],
    /// The listening socket beyond the sessions (see [`Sockets::spare`]).
    spare: SocketHandle,
    /// Since when a peer on the spare socket waits for a session.
    waiting_since: Option<u64>,
    /// Since when the spare socket has been closing after a `Busy` answer.
    refused_since: Option<u64>,
    /// What the peer on the spare socket has shown of itself, once its first frame is there
    /// (checked once per peer: reading a message 1 costs hashes and an AEAD open).
    newcomer: Option<Newcomer>,
    udp: SocketHandle,
    #[cfg(feature = "plain")]
    plain: plain::Plain,
    subscribers: Vec<Subscriber, MAX_SUBSCRIBERS>,
    scratch: [u8; DATAGRAM_MAX],
    started: Option<Instant>,
}

impl<'a, C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'a, C, S, N, SESSIONS> {
    const SANE: () = assert!(N >= 512 && SESSIONS >= 1 && SESSIONS <= 64, "N >= 512, 1..=64 sessions");

    /// Adds the sockets to `set`, binds them, and returns the server.
    ///
    /// The device's largest frame becomes `N`, whatever it was built with: its sessions hold
    /// frames of `N` bytes, and `hello` advertises what they hold.
    pub fn new<'b>(
        config: ServerConfig,
        mut device: Device<'a, C, S>,
        sockets: Sockets<'b, SESSIONS>,
        set: &mut SocketSet<'b>,
    ) -> Self {
        device.udp_port = config.udp_port;
        #[cfg(feature = "discover")]
        device.advertise_tcp_port(config.tcp_port);
        device.limit_max_frame(N);
        #[allow(clippy::let_unit_value)]
        let () = Self::SANE;
        let Sockets {
            sessions,
            spare,
            mut udp,
            #[cfg(feature = "plain")]
            plain,
        } = sockets;
        let mut add_listener = |mut s: smoltcp::socket::tcp::Socket<'b>| {
            // Peers write small request frames back to back; waiting to coalesce them only
            // adds latency, so the device answers each one at once.
            s.set_nagle_enabled(false);
            let _ = s.listen(config.tcp_port);
            set.add(s)
        };
        let sessions = sessions.map(|s| TcpSession::new(add_listener(s), config.limits));
        let spare = add_listener(spare);
        let _ = udp.bind(config.udp_port);
        let udp = set.add(udp);
        #[cfg(feature = "plain")]
        let plain = plain::Plain::new(&config, plain, set);
        Server {
            config,
            device,
            sessions,
            spare,
            waiting_since: None,
            refused_since: None,
            newcomer: None,
            udp,
            #[cfg(feature = "plain")]
            plain,
            subscribers: Vec::new(),
            scratch: [0; DATAGRAM_MAX],
            started: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Sessions with a connected peer.
    pub fn connected(&self) -> usize {
        self.sessions.iter().filter(|s| s.engine.is_open()).count()
    }

    /// Polls the interface and serves every socket until nothing more happens (bounded).
    /// Returns whether anything happened.
    pub fn poll<D: phy::Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        phy: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        #[cfg(feature = "discover")]
        self.note_interface(iface);
        let mut any = false;
        for _ in 0..8 {
            let ingress = iface.poll(now, phy, sockets);
            let served = self.serve(now, sockets);
            any |= served;
            if !served && ingress == smoltcp::iface::PollResult::None {
                break;
            }
        }
        any
    }

    /// Tells the device what `Discover` reports of the interface: its IPv4 addresses (which DHCP
    /// may change), and, unless the application gave one, its MAC address as the device's id.
    #[cfg(feature = "discover")]
    fn note_interface(&mut self, iface: &Interface) {
        let mut addresses: Vec<[u8; 4], { msg::MAX_ADDRESSES }> = Vec::new();
        for cidr in iface.ip_addrs() {
            // IPv4 only: the one IP version this crate builds smoltcp with.
            #[allow(irrefutable_let_patterns)]
            if let smoltcp::wire::IpAddress::Ipv4(a) = cidr.address() {
                if addresses.push(a.octets()).is_err() {
                    break;
                }
            }
        }
        self.device.set_addresses(&addresses);
        self.device.default_id(iface.hardware_addr().as_bytes());
    }

    /// Serves every socket once without touching the interface, for applications that poll
    /// the interface themselves. Returns whether anything happened.
    pub fn serve(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let start = *self.started.get_or_insert(now);
        let now_ms = (now - start).total_millis();
        self.device.set_uptime(now_ms);
        let port = self.config.tcp_port;
        // The sessions first, then a waiting peer: what a session's peer has sent by now is read
        // before any session may give way (a key holder's first sealed frame proves the key).
        let mut any = false;
        for session in self.sessions.iter_mut() {
            let socket = sockets.get_mut::<smoltcp::socket::tcp::Socket>(session.handle);
            any |= session.serve(now_ms, socket, &mut self.device, port);
        }
        any |= self.serve_spare(now_ms, sockets);
        any |= self.serve_udp(sockets);
        #[cfg(feature = "plain")]
        {
            any |= self.serve_plain(now, sockets);
        }
        any
    }

    /// Gives a peer that connected to the spare socket a session: a free one, or the one idle
    /// longest (evicted), or — when none frees up within `busy_wait_ms` — a `Busy` answer.
    fn serve_spare(&mut self, now_ms: u64, sockets: &mut SocketSet<'_>) -> bool {
        use smoltcp::socket::tcp::{Socket, State};
        let spare = sockets.get_mut::<Socket>(self.spare);
        if !spare.is_open() {
            self.refused_since = None;
            self.newcomer = None;
            if !owes_reset(spare) {
                let _ = spare.listen(self.config.tcp_port);
            }
            return false;
        }
        if let Some(since) = self.refused_since {
            if now_ms.saturating_sub(since) >= REFUSED_LINGER_MS {
                spare.abort();
            }
            return false;
        }
        if !has_peer(spare) {
            return false;
        }
        // A session whose socket still listens takes the peer's socket and gives its own.
        let free = self
            .sessions
            .iter()
            .position(|s| !s.engine.is_open() && sockets.get::<Socket>(s.handle).state() == State::Listen);
        let newcomer = match free {
            Some(_) => None,
            None => self.newcomer(sockets),
        };
        let slot = match free {
            Some(i) => Some(i),
            None => {
                let as_seen = newcomer.unwrap_or(Newcomer::Unproven);
                let ranks = self.sessions.iter().enumerate().filter(|(_, s)| s.engine.is_open());
                let ranks = ranks.filter_map(|(i, s)| s.engine.eviction_rank_for(now_ms, as_seen).map(|r| (i, r)));
                let victim = pick_eviction(ranks);
                if let Some(i) = victim {
                    event!(info, "session evicted for a new peer");
                    self.evict(i, sockets);
                }
                victim
            }
        };
        if let Some(i) = slot {
            core::mem::swap(&mut self.sessions[i].handle, &mut self.spare);
            self.waiting_since = None;
            self.newcomer = None;
            return true;
        }
        let since = *self.waiting_since.get_or_insert(now_ms);
        let waited = now_ms.saturating_sub(since);
        // On a device with a key only a fresh message 1 waits for a session: any other peer held
        // the one listening socket while it waited, and kept every later peer out.
        let turned_away = match (self.keyed(), newcomer) {
            (true, Some(Newcomer::Unproven)) => Some(TurnAway::Busy),
            (true, None) => (waited >= FIRST_FRAME_MS).then_some(TurnAway::Reset),
            _ => (waited >= self.config.busy_wait_ms).then_some(TurnAway::Busy),
        };
        match turned_away {
            Some(how) => {
                self.turn_away(now_ms, sockets, how);
                true
            }
            None => false,
        }
    }

    /// What the peer waiting on the spare socket has shown: on a device with a key, whether its
    /// first bytes are a whole `Handshake` request whose message 1 proves the key and has not been
    /// answered lately ([`crate::secure::Lock::admits`]); `None` while they may still become one
    /// (asked again when more comes). Its bytes are looked at, not taken.
    fn newcomer(&mut self, sockets: &mut SocketSet<'_>) -> Option<Newcomer> {
        if self.newcomer.is_some() {
            return self.newcomer;
        }
        #[cfg(feature = "secure")]
        if let Some(lock) = self.device.lock() {
            use crate::secure::MSG1_LEN;
            const LEN: usize = crate::wire::HEADER_LEN + MSG1_LEN;
            let spare = sockets.get_mut::<smoltcp::socket::tcp::Socket>(self.spare);
            let mut first = [0u8; LEN];
            let seen = spare.peek_slice(&mut first).unwrap_or(0);
            // A header still coming, or one of a handshake still coming.
            let handshake = crate::wire::HeaderView::new_checked(&first[..seen])
                .map(|h| first[..2] == crate::wire::MAGIC && h.kind() == crate::wire::Kind::Handshake);
            if seen < LEN && handshake != Some(false) {
                return None;
            }
            let fresh = seen == LEN
                && crate::codec::parse_frame(&first, LEN)
                    .is_ok_and(|f| crate::secure::message1(&f).is_some_and(|m| lock.admits(m)));
            self.newcomer = Some(if fresh {
                Newcomer::FreshMessage1
            } else {
                Newcomer::Unproven
            });
            return self.newcomer;
        }
        let _ = sockets;
        Some(Newcomer::Unproven)
    }

    /// Whether the device requires its key (and so tells a key holder's fresh handshake from
    /// other new peers).
    fn keyed(&self) -> bool {
        #[cfg(feature = "secure")]
        if self.device.lock().is_some() {
            return true;
        }
        false
    }

    /// Ends session `i` for another peer.
    fn evict(&mut self, i: usize, sockets: &mut SocketSet<'_>) {
        let session = &mut self.sessions[i];
        let socket = sockets.get_mut::<smoltcp::socket::tcp::Socket>(session.handle);
        session.drop_peer(socket, &mut self.device, Close::Idle);
        self.device.stats.tally(Tally::Evicted);
    }

    /// Turns the peer on the spare socket away, so that it listens again for the next.
    fn turn_away(&mut self, now_ms: u64, sockets: &mut SocketSet<'_>, how: TurnAway) {
        let spare = sockets.get_mut::<smoltcp::socket::tcp::Socket>(self.spare);
        match how {
            TurnAway::Busy => {
                let info = msg::ErrorInfo {
                    code: ErrorCode::Busy as u16,
                    message: "every session is in use; try again",
                };
                if let Ok(n) = encode(&mut self.scratch, FrameSpec::error(Kind::Hello, 0), &info, &[]) {
                    let _ = spare.send_slice(&self.scratch[..n]);
                }
                spare.close();
                self.refused_since = Some(now_ms);
                event!(info, "peer refused: every session busy");
            }
            TurnAway::Reset => {
                spare.abort();
                event!(info, "peer reset: no first frame while every session is busy");
            }
        }
        self.waiting_since = None;
        self.newcomer = None;
        self.device.stats.tally(Tally::Refused);
    }

    /// Applies what `dhcp` has after the interface's last poll (call it right after
    /// [`Server::poll`]): when the address moves, every session is closed first (its peer spoke to
    /// the old address and can never reach the new one), and one more poll of the interface sends
    /// their resets from the old address, so peers learn at once instead of timing out; then the
    /// interface gets the new address and route. Returns the change for the application to
    /// report or announce.
    #[cfg(feature = "dhcp")]
    pub fn poll_dhcp<D: phy::Device + ?Sized>(
        &mut self,
        dhcp: &mut crate::dhcp::Dhcp,
        now: Instant,
        iface: &mut Interface,
        phy: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> Option<crate::dhcp::Change> {
        let mut change = dhcp.decide(now, sockets)?;
        if change.moved() {
            change.sessions_closed = self.connected();
            event!(info, "address moves: every session closed");
            self.reset_sessions(sockets);
            let _ = iface.poll(now, phy, sockets);
        }
        dhcp.apply(&change, iface);
        #[cfg(feature = "discover")]
        self.note_interface(iface);
        Some(change)
    }

    /// Drops every session (with a reset) and forgets subscriptions; storage and clock stay.
    pub fn reset_sessions(&mut self, sockets: &mut SocketSet<'_>) {
        for session in self.sessions.iter_mut() {
            let socket = sockets.get_mut::<smoltcp::socket::tcp::Socket>(session.handle);
            session.reset(socket, &mut self.device);
        }
        sockets.get_mut::<smoltcp::socket::tcp::Socket>(self.spare).abort();
        self.waiting_since = None;
        #[cfg(feature = "plain")]
        self.plain.reset(sockets);
        self.subscribers.clear();
    }

    /// A soft reboot: every session dropped, subscriptions, counters, clock and uptime reset.
    /// Storage is the application's to keep or clear (a RAM store would not survive a reboot).
    pub fn restart(&mut self, sockets: &mut SocketSet<'_>) {
        self.reset_sessions(sockets);
        self.device.stats = crate::service::stats::Stats::default();
        self.device.clock = crate::service::clock::Clock::default();
        self.started = None;
        self.device.restart_events();
    }
}
