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

mod datagram;
#[cfg(feature = "plain")]
mod plain;
mod session;

#[cfg(feature = "plain")]
pub use plain::{
    PlainSockets, CHAT_REPLY_FLOOR, COMMAND_LINE_MAX, COMMAND_SOCKETS, COMMAND_TX_MIN, ECHO_SOCKETS, REPLY_HEADER_ROOM,
};

use heapless::Vec;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use crate::service::files::Storage;
use crate::service::{Context, Device};
use session::{Limits, Link, Session};

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
    /// Plain TCP remote-command port, 4-byte length before the output (feature `plain`).
    pub plain_command_port: u16,
    /// Plain TCP remote-command port, JSON header before the output (feature `plain`).
    pub plain_command_json_port: u16,
    /// Plain UDP chat port (feature `plain`).
    pub plain_chat_port: u16,
    /// A session with no traffic for this long is reset.
    pub idle_timeout_ms: u64,
    /// A session is reset once it has sent this many garbage bytes since its last valid frame.
    pub garbage_limit: usize,
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
            idle_timeout_ms: 120_000,
            garbage_limit: 4096,
        }
    }
}

/// Most UDP subscribers to events.
pub const MAX_SUBSCRIBERS: usize = 4;
/// Largest framed UDP response (a datagram holds one frame).
pub const DATAGRAM_MAX: usize = 1024;

/// The sockets a server needs, with buffers from the caller.
pub struct Sockets<'b, const SESSIONS: usize> {
    /// One TCP socket per session.
    pub sessions: [tcp::Socket<'b>; SESSIONS],
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
    sessions: [Session<N>; SESSIONS],
    udp: SocketHandle,
    #[cfg(feature = "plain")]
    plain: plain::Plain,
    subscribers: Vec<IpEndpoint, MAX_SUBSCRIBERS>,
    event_seq: u32,
    scratch: [u8; DATAGRAM_MAX],
    started: Option<Instant>,
}

impl<'a, C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'a, C, S, N, SESSIONS> {
    const SANE: () = assert!(N >= 512 && SESSIONS >= 1 && SESSIONS <= 64, "N >= 512, 1..=64 sessions");

    /// Adds the sockets to `set`, binds them, and returns the server.
    ///
    /// `device` is built with [`Server::device`] or by hand; its `max_frame` must be `N`.
    pub fn new<'b>(
        config: ServerConfig,
        mut device: Device<'a, C, S>,
        sockets: Sockets<'b, SESSIONS>,
        set: &mut SocketSet<'b>,
    ) -> Self {
        device.udp_port = config.udp_port;
        #[allow(clippy::let_unit_value)]
        let () = Self::SANE;
        let Sockets {
            sessions,
            mut udp,
            #[cfg(feature = "plain")]
            plain,
        } = sockets;
        let sessions = sessions.map(|mut s| {
            // Peers write small request frames back to back; waiting to coalesce them only
            // adds latency, so the device answers each one at once.
            s.set_nagle_enabled(false);
            let _ = s.listen(config.tcp_port);
            Session::new(set.add(s))
        });
        let _ = udp.bind(config.udp_port);
        let udp = set.add(udp);
        #[cfg(feature = "plain")]
        let plain = plain::Plain::new(&config, plain, set);
        Server {
            config,
            device,
            sessions,
            udp,
            #[cfg(feature = "plain")]
            plain,
            subscribers: Vec::new(),
            event_seq: 0,
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
        self.sessions.iter().filter(|s| s.link() == Link::Connected).count()
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

    /// Serves every socket once without touching the interface, for applications that poll
    /// the interface themselves. Returns whether anything happened.
    pub fn serve(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let start = *self.started.get_or_insert(now);
        self.device.set_uptime((now - start).total_millis());
        let limits = Limits {
            port: self.config.tcp_port,
            idle_ms: self.config.idle_timeout_ms,
            garbage: self.config.garbage_limit,
        };
        let mut any = false;
        for session in self.sessions.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(session.handle);
            any |= session.serve(now, socket, &mut self.device, &limits);
        }
        any |= self.serve_udp(sockets);
        #[cfg(feature = "plain")]
        {
            any |= self.serve_plain(now, sockets);
        }
        any
    }

    /// Drops every session (with a reset) and forgets subscriptions; storage and clock stay.
    pub fn reset_sessions(&mut self, sockets: &mut SocketSet<'_>) {
        for session in self.sessions.iter_mut() {
            sockets.get_mut::<tcp::Socket>(session.handle).abort();
            session.end(&mut self.device);
        }
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
        self.event_seq = 0;
    }
}
