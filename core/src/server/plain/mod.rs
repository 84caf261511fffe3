//! The plain-socket services for the classic socket tutorials' client programs: no framing of
//! Tether's own, only what those clients already speak (PROTOCOL.md §11.11).
//!
//! - TCP upper-echo ([`echo`]): every received byte comes back, ASCII letters upper-cased, to
//!   several clients at once.
//! - TCP remote command ([`command`]), two ports: a command line runs a command from the
//!   device's registry and the reply is a 4-byte little-endian length and the output, or a
//!   4-byte length, a JSON header (`file_name`, `md5`, `total_size`) and the output.
//! - UDP time ([`datagram`]): a datagram is a strftime format, the reply the formatted time.
//! - UDP chat ([`datagram`]): a datagram is a line for the application's inbox, the reply its
//!   answer, never much larger than the request.
//!
//! The remote-command ports and chat act on the device with no authentication of their own, so
//! they come with feature `plain-actors`, which a keyed board leaves out.
//!
//! Each TCP service is a pool of sockets listening on the same port. smoltcp gives a new
//! connection to the first socket still listening, and a socket whose connection ended listens
//! again in the same pass, so a pool of `k` sockets serves `k - 1` clients and still accepts a
//! client that reconnects before its old connection has finished closing.

#[cfg(feature = "plain-actors")]
mod command;
mod datagram;
mod echo;

use heapless::Vec;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;

use super::tcp::owes_reset;
use super::{Server, ServerConfig};
use crate::service::files::Storage;
use crate::service::Context;
use crate::session::Limits;
#[cfg(feature = "plain-actors")]
use command::{CommandSlot, Framing};
use echo::EchoSlot;

#[cfg(feature = "plain-actors")]
pub use command::{COMMAND_LINE_MAX, COMMAND_TX_MIN, REPLY_HEADER_ROOM};
pub use datagram::PLAIN_REPLY_FLOOR;

/// Most sockets in the upper-echo pool.
pub const ECHO_SOCKETS: usize = 6;
/// Most sockets in each remote-command pool.
pub const COMMAND_SOCKETS: usize = 3;

/// The sockets of the plain services, with buffers from the application. Every list may be
/// empty and every socket optional: a service without sockets is simply not offered.
#[derive(Default)]
pub struct PlainSockets<'b> {
    /// The upper-echo pool (port [`ServerConfig::plain_tcp_port`]): `k` sockets serve `k - 1`
    /// clients at once with room for an immediate reconnect.
    pub echo: Vec<tcp::Socket<'b>, ECHO_SOCKETS>,
    /// The remote-command pool with a 4-byte length before the output
    /// ([`ServerConfig::plain_command_port`]). The transmit buffer bounds a command's output
    /// (see [`REPLY_HEADER_ROOM`]); a socket with less than [`COMMAND_TX_MIN`] is not used.
    #[cfg(feature = "plain-actors")]
    pub command: Vec<tcp::Socket<'b>, COMMAND_SOCKETS>,
    /// The remote-command pool with a JSON header ([`ServerConfig::plain_command_json_port`]).
    #[cfg(feature = "plain-actors")]
    pub command_json: Vec<tcp::Socket<'b>, COMMAND_SOCKETS>,
    /// The UDP time socket ([`ServerConfig::plain_udp_port`]).
    pub time: Option<udp::Socket<'b>>,
    /// The UDP chat socket ([`ServerConfig::plain_chat_port`]).
    #[cfg(feature = "plain-actors")]
    pub chat: Option<udp::Socket<'b>>,
}

/// The plain services' state inside a [`Server`].
pub(super) struct Plain {
    echo: Vec<EchoSlot, ECHO_SOCKETS>,
    #[cfg(feature = "plain-actors")]
    commands: Vec<CommandSlot, { 2 * COMMAND_SOCKETS }>,
    time: Option<SocketHandle>,
    #[cfg(feature = "plain-actors")]
    chat: Option<SocketHandle>,
}

impl Plain {
    /// Adds the sockets to `set`, listening or bound on their ports.
    pub(super) fn new<'b>(config: &ServerConfig, sockets: PlainSockets<'b>, set: &mut SocketSet<'b>) -> Self {
        #[cfg(feature = "plain-actors")]
        let PlainSockets {
            echo,
            command,
            command_json,
            time,
            chat,
        } = sockets;
        #[cfg(not(feature = "plain-actors"))]
        let PlainSockets { echo, time } = sockets;
        let mut plain = Plain {
            echo: Vec::new(),
            #[cfg(feature = "plain-actors")]
            commands: Vec::new(),
            time: None,
            #[cfg(feature = "plain-actors")]
            chat: None,
        };
        for mut s in echo {
            // An echo answers each chunk at once; coalescing small replies only adds latency.
            s.set_nagle_enabled(false);
            let _ = s.listen(config.plain_tcp_port);
            let _ = plain.echo.push(EchoSlot::new(set.add(s)));
        }
        #[cfg(feature = "plain-actors")]
        let pools = [
            (command, Framing::Length, config.plain_command_port),
            (command_json, Framing::JsonHeader, config.plain_command_json_port),
        ];
        #[cfg(feature = "plain-actors")]
        for (pool, framing, port) in pools {
            for mut s in pool {
                if s.send_capacity() < COMMAND_TX_MIN {
                    // Too small to hold even an error reply; left out rather than half-serving.
                    continue;
                }
                s.set_nagle_enabled(false);
                let _ = s.listen(port);
                let _ = plain.commands.push(CommandSlot::new(set.add(s), framing, port));
            }
        }
        plain.time = time.map(|mut s| {
            let _ = s.bind(config.plain_udp_port);
            set.add(s)
        });
        #[cfg(feature = "plain-actors")]
        {
            plain.chat = chat.map(|mut s| {
                let _ = s.bind(config.plain_chat_port);
                set.add(s)
            });
        }
        plain
    }

    /// Drops every plain connection with a reset (a reboot); the pools listen again next pass.
    pub(super) fn reset(&mut self, sockets: &mut SocketSet<'_>) {
        for slot in self.echo.iter_mut() {
            sockets.get_mut::<tcp::Socket>(slot.handle).abort();
        }
        #[cfg(feature = "plain-actors")]
        for slot in self.commands.iter_mut() {
            sockets.get_mut::<tcp::Socket>(slot.handle).abort();
            slot.forget();
        }
    }
}

/// Traffic seen on a TCP connection, for the idle timeout: a connection on which nothing has
/// moved for the sessions' idle time ([`Limits::idle_past`]) is reset, so idle clients cannot
/// hold a pool.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// When the queues last changed (meaningful once `rx` is not [`Activity::UNSEEN`]).
    at: Instant,
    rx: u32,
    tx: u32,
}

impl Activity {
    const UNSEEN: u32 = u32::MAX;
    const NONE: Activity = Activity {
        at: Instant::ZERO,
        rx: Self::UNSEEN,
        tx: 0,
    };

    /// Notes what moved since the last look; returns whether the connection has been idle past
    /// the idle time of `limits` (the same rule as the framed sessions').
    fn idle(&mut self, now: Instant, socket: &tcp::Socket<'_>, limits: &Limits) -> bool {
        let (rx, tx) = (socket.recv_queue() as u32, socket.send_queue() as u32);
        if self.rx == Self::UNSEEN || rx != self.rx || tx != self.tx {
            *self = Activity { at: now, rx, tx };
        }
        limits.idle_past((now - self.at).total_millis())
    }

    /// How long nothing has moved, as of the last look.
    #[cfg(feature = "plain-actors")]
    fn quiet(&self, now: Instant) -> smoltcp::time::Duration {
        if self.rx == Self::UNSEEN {
            smoltcp::time::Duration::ZERO
        } else {
            now - self.at
        }
    }
}

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    pub(super) fn serve_plain(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let mut any = false;
        for i in 0..self.plain.echo.len() {
            any |= self.upper_echo(i, now, sockets);
        }
        #[cfg(feature = "plain-actors")]
        for i in 0..self.plain.commands.len() {
            any |= self.remote_command(i, now, sockets);
        }
        if let Some(handle) = self.plain.time {
            any |= self.plain_time(sockets.get_mut::<udp::Socket>(handle));
        }
        #[cfg(feature = "plain-actors")]
        if let Some(handle) = self.plain.chat {
            any |= self.plain_chat(sockets.get_mut::<udp::Socket>(handle));
        }
        any
    }
}

/// Copies `parts` one after the other into `out`, as much as fits; returns the length.
fn copy_line(out: &mut [u8], parts: &[&str]) -> usize {
    let mut n = 0;
    for p in parts {
        let take = p.len().min(out.len() - n);
        out[n..n + take].copy_from_slice(&p.as_bytes()[..take]);
        n += take;
    }
    n
}
