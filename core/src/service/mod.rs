//! The device services, independent of the transport.
//!
//! [`Device`] holds what every connection shares (storage, clock, commands, counters); [`Conn`]
//! holds what one connection has in progress (an upload, a response stream). The server feeds
//! decoded request frames to [`Device::handle`] and pulls further frames of a stream with
//! [`Device::resume`], one frame at a time into a buffer of its choosing, so a connection whose
//! peer reads slowly simply stops being asked for more.

pub mod builtin;
pub mod clock;
mod echo;
pub mod events;
pub mod exec;
pub mod files;
mod hello;
mod message;
pub mod ramstore;
pub mod stats;
mod time;

use core::fmt::{self, Write as _};

use heapless::{String, Vec};
use serde::Serialize;

use crate::codec::encode;
use crate::msg;
use crate::wire::{ErrorCode, Flags, Frame, FrameSpec, Kind, HEADER_LEN};
use clock::Clock;
use exec::{Command, Output};
use files::{Owner, Storage};
use stats::Stats;

/// Largest `exec` metadata (command and arguments, postcard-encoded) a connection keeps for a
/// command whose output spans several frames: every request within the protocol's limits fits.
pub const EXEC_META_MAX: usize = msg::MAX_EXEC_META;
/// Room reserved in a data frame for its metadata (`GetData`, `PutData`: a varint offset).
pub const CHUNK_META_ROOM: usize = 16;

/// Application hooks beyond the command table.
pub trait Context {
    /// A datagram message arrived. Whatever is written to `reply` goes back to the sender as
    /// the response's text (nothing written: an empty acknowledgement).
    fn on_message(&mut self, from: &str, text: &str, reply: &mut Output<'_>) {
        let _ = (from, text, reply);
    }
}

impl Context for () {}

/// Where a request came from; some services are offered on one transport only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A session: a TCP connection to the framed port, or a serial line.
    Session,
    /// A datagram on the framed UDP port.
    Udp,
}

/// How far a session is in proving that its peer holds the device's key (`docs/PROTOCOL.md`
/// §16.3). The session engine moves it; [`Device::authorize`] applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// The device has no key: every service is available to anyone.
    #[default]
    Open,
    /// The device has a key and the peer has not proven it yet: only `Hello` is served (and the
    /// handshake, which the engine runs); everything else is `Unauthorized`.
    Locked,
    /// The peer proved the key in a handshake; every frame is sealed and every service available.
    Sealed,
}

// No allocator to box the large variant: a connection keeps the largest `exec` request inline
// (one `Stream` per connection, sized once at compile time).
#[allow(clippy::large_enum_variant)]
enum Stream {
    Idle,
    Exec {
        id: u32,
        command: usize,
        cursor: u32,
        meta: Vec<u8, EXEC_META_MAX>,
    },
    ExecEnd {
        id: u32,
        status: i32,
    },
    Get(files::Download),
    List {
        id: u32,
        next: u32,
    },
}

/// One connection's service state.
pub struct Conn {
    phase: Phase,
    /// This session's [`Owner`] number for uploads, given on its first `PutBegin` (0: none
    /// yet). [`Device::close`] clears it, so a `Conn` reused for the next session is a new owner.
    owner: u32,
    upload: Option<files::Upload>,
    stream: Stream,
    /// The peer asked for events (`Subscribe` on a session): the driver pushes them in.
    subscribed: bool,
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

impl Conn {
    /// A fresh connection.
    pub const fn new() -> Self {
        Conn {
            phase: Phase::Open,
            owner: 0,
            upload: None,
            stream: Stream::Idle,
            subscribed: false,
        }
    }

    /// Whether the peer subscribed to events on this session.
    pub fn subscribed(&self) -> bool {
        self.subscribed
    }

    /// Whether a response stream is in progress (the server then calls [`Device::resume`]).
    pub fn streaming(&self) -> bool {
        !matches!(self.stream, Stream::Idle)
    }

    /// The session phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Name of the upload in progress, if any.
    pub fn uploading(&self) -> Option<&str> {
        self.upload.as_ref().map(|u| u.name.as_str())
    }
}

/// Device-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig<'a> {
    /// Name reported by `hello`.
    pub name: &'a str,
    /// Upload chunks a host may keep in flight (advertised in `PutReady`).
    pub window: u16,
}

/// The services and the state they share.
pub struct Device<'a, C: 'static, S> {
    config: DeviceConfig<'a>,
    /// The file store.
    pub storage: S,
    /// The wall clock.
    pub clock: Clock,
    /// Counters.
    pub stats: Stats,
    /// The application's own state, handed to commands.
    pub ctx: C,
    commands: &'static [Command<C>],
    uptime_ms: u64,
    max_frame: usize,
    sessions: u8,
    /// The last upload [`Owner`] number given to a connection.
    last_owner: u32,
    /// The framed UDP port `hello` advertises (set by the server).
    pub(crate) udp_port: u16,
    /// The sequence number of the last event pushed.
    event_seq: u32,
    /// The key sessions must prove, and the generator of handshake ephemerals.
    #[cfg(feature = "secure")]
    lock: Option<crate::secure::Lock>,
}

/// A `fmt::Write` over a byte slice that reports how much it wrote and refuses overflow.
struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<'a, C: Context + 'static, S: Storage> Device<'a, C, S> {
    /// A device; `max_frame` and `sessions` are what the server was built with, for `hello`.
    pub fn new(
        config: DeviceConfig<'a>,
        storage: S,
        commands: &'static [Command<C>],
        ctx: C,
        max_frame: usize,
        sessions: u8,
    ) -> Self {
        Device {
            config,
            storage,
            clock: Clock::default(),
            stats: Stats::default(),
            ctx,
            commands,
            uptime_ms: 0,
            max_frame,
            sessions,
            last_owner: 0,
            udp_port: 0,
            event_seq: 0,
            #[cfg(feature = "secure")]
            lock: None,
        }
    }

    /// Requires the key of `lock` on every session from now on — sessions already open included,
    /// from their next request: a peer must complete the handshake before any request but
    /// `Hello`, every frame after it is sealed, and framed UDP serves only what changes nothing
    /// (`docs/PROTOCOL.md` §16.3). Give the key before serving, so that no session starts open.
    #[cfg(feature = "secure")]
    pub fn require_key(&mut self, lock: crate::secure::Lock) {
        self.lock = Some(lock);
    }

    /// The device's lock, for the session engine's handshakes and for mixing in entropy.
    #[cfg(feature = "secure")]
    pub fn lock_mut(&mut self) -> Option<&mut crate::secure::Lock> {
        self.lock.as_mut()
    }

    /// Whether the device holds a key that peers must prove. A device without one is open to
    /// anyone who can reach it, which `hello` reports.
    pub fn key_required(&self) -> bool {
        #[cfg(feature = "secure")]
        return self.lock.is_some();
        #[cfg(not(feature = "secure"))]
        false
    }

    /// Puts a new session's `conn` in its first phase: [`Phase::Locked`] on a device with a key.
    pub fn start(&mut self, conn: &mut Conn) {
        conn.phase = if self.key_required() {
            Phase::Locked
        } else {
            Phase::Open
        };
    }

    /// Marks `conn`'s peer as having proven the key (the engine's handshake succeeded).
    #[cfg(feature = "secure")]
    pub(crate) fn unlock(&mut self, conn: &mut Conn) {
        conn.phase = Phase::Sealed;
        self.stats.handshakes = self.stats.handshakes.wrapping_add(1);
    }

    /// Advances the device's notion of time (milliseconds since boot).
    pub fn set_uptime(&mut self, ms: u64) {
        self.uptime_ms = ms;
    }

    /// Sets the framed UDP port `hello` advertises. The server sets its own port; a device
    /// reached through a port forward (the simulator's rootless mode) advertises the port peers
    /// must use instead.
    pub fn advertise_udp_port(&mut self, port: u16) {
        self.udp_port = port;
    }

    /// Milliseconds since boot, as last set.
    pub fn uptime_ms(&self) -> u64 {
        self.uptime_ms
    }

    /// The device settings.
    pub fn config(&self) -> &DeviceConfig<'a> {
        &self.config
    }

    /// Whether `conn` may use `kind` over `transport` now (`docs/PROTOCOL.md` §16.3).
    ///
    /// On a device with a key, a session serves only `Hello` until its peer proved the key, and a
    /// datagram — whose sender cannot prove anything — only what reads without changing: `Hello`,
    /// `Echo`, `Upper`, `TimeGet`. Clock, messages and subscriptions move behind the key.
    pub fn authorize(&self, conn: &Conn, kind: Kind, transport: Transport) -> Result<(), ErrorCode> {
        let open = match (transport, conn.phase) {
            (Transport::Udp, _) if self.key_required() => {
                matches!(kind, Kind::Hello | Kind::Echo | Kind::Upper | Kind::TimeGet)
            }
            (_, Phase::Open | Phase::Sealed) => true,
            (_, Phase::Locked) => kind == Kind::Hello,
        };
        if open {
            Ok(())
        } else {
            Err(ErrorCode::Unauthorized)
        }
    }

    /// Ends a connection: an upload in progress is suspended (resumable by the same name, size
    /// and digest, and replaceable by another upload of the name), a stream is dropped.
    pub fn close(&mut self, conn: &mut Conn) {
        if let Some(up) = conn.upload.take() {
            self.storage.suspend(&up.name, up.owner);
        }
        conn.stream = Stream::Idle;
        conn.subscribed = false;
        self.start(conn);
        conn.owner = 0;
    }

    /// `conn`'s upload owner, given on first use: a number no other session of this boot had
    /// (the counter would take 2^32 sessions that upload to wrap).
    fn owner_of(&mut self, conn: &mut Conn) -> Owner {
        if conn.owner == 0 {
            self.last_owner = self.last_owner.wrapping_add(1).max(1);
            conn.owner = self.last_owner;
        }
        Owner(conn.owner)
    }

    /// Drops `conn`'s response stream (a command is not called again); its upload stays.
    pub fn end_stream(&mut self, conn: &mut Conn) {
        conn.stream = Stream::Idle;
    }

    /// Writes an error response into `out`; returns its length.
    pub fn error(&mut self, out: &mut [u8], kind: Kind, id: u32, code: ErrorCode, detail: fmt::Arguments<'_>) -> usize {
        self.stats.errors = self.stats.errors.wrapping_add(1);
        let mut message: String<{ msg::MAX_ERROR_LEN }> = String::new();
        if message.write_fmt(detail).is_err() || message.is_empty() {
            message.clear();
            let _ = message.push_str(code.text());
        }
        let info = msg::ErrorInfo {
            code: code as u16,
            message: &message,
        };
        encode(out, FrameSpec::error(kind, id), &info, &[]).unwrap_or(0)
    }

    fn reply<M: Serialize + ?Sized>(&mut self, out: &mut [u8], spec: FrameSpec, meta: &M, body: &[u8]) -> usize {
        match encode(out, spec, meta, body) {
            Ok(n) => n,
            Err(e) => self.error(
                out,
                spec.kind,
                spec.request_id,
                ErrorCode::Internal,
                format_args!("{e}"),
            ),
        }
    }

    /// Answers one request frame into `out` (at least 256 bytes); returns the response length.
    ///
    /// When the answer is a stream, this writes its first frame and leaves the rest to
    /// [`Device::resume`].
    pub fn handle(&mut self, conn: &mut Conn, frame: &Frame<'_>, transport: Transport, out: &mut [u8]) -> usize {
        let (kind, id) = (frame.kind(), frame.request_id());
        if frame.flags().contains(Flags::RESPONSE) {
            let detail = format_args!("the device takes requests, not responses");
            return self.error(out, kind, id, ErrorCode::InvalidArgument, detail);
        }
        if let Err(code) = self.authorize(conn, kind, transport) {
            let detail = match transport {
                Transport::Udp => format_args!("this device requires its key: use a secure session"),
                _ => format_args!("this device requires its key: complete the handshake first"),
            };
            return self.error(out, kind, id, code, detail);
        }
        if conn.streaming() {
            // The server only reads a new request once the previous stream is finished.
            return self.error(
                out,
                kind,
                id,
                ErrorCode::Busy,
                format_args!("a response stream is in progress"),
            );
        }
        // A datagram's source address is easy to forge, so UDP offers only the services that
        // change nothing a peer could regret: no files, no commands.
        let udp_ok = matches!(
            kind,
            Kind::Hello | Kind::Echo | Kind::Upper | Kind::TimeGet | Kind::TimeSet | Kind::Message | Kind::Subscribe
        );
        let known = !matches!(kind, Kind::Unknown(_) | Kind::Event | Kind::Handshake | Kind::Sealed);
        if transport == Transport::Udp && known && !udp_ok {
            return self.error(
                out,
                kind,
                id,
                ErrorCode::InvalidArgument,
                format_args!("use TCP for this service"),
            );
        }
        let result = match kind {
            Kind::Hello => self.hello(frame, out),
            Kind::Echo | Kind::Upper => self.echo(frame, out),
            Kind::Exec => self.exec(conn, frame, out),
            Kind::PutBegin => self.put_begin(conn, frame, out),
            Kind::PutData => self.put_data(conn, frame, out),
            Kind::PutCommit => self.put_commit(conn, frame, out),
            Kind::PutAbort => self.put_abort(conn, frame, out),
            Kind::Get => self.get(conn, frame, out),
            Kind::List => self.list(conn, frame, out),
            Kind::Stat => self.stat(frame, out),
            Kind::Remove => self.remove(frame, out),
            Kind::TimeGet => self.time_get(frame, out),
            Kind::TimeSet => self.time_set(frame, out),
            Kind::Message => self.message(frame, out),
            // The UDP server answers subscriptions itself (they are leases there); on a session
            // the session is the subscription.
            Kind::Subscribe => self.subscribe(conn, frame, out),
            // The session engine runs the handshake and opens sealed frames; one that reaches the
            // services came to a device without a key (or over UDP, which has no sessions).
            Kind::Handshake | Kind::Sealed => {
                Err((ErrorCode::UnknownKind, "this device has no key: no secure sessions"))
            }
            Kind::Event | Kind::Unknown(_) => Err((ErrorCode::UnknownKind, "no such service")),
        };
        match result {
            Ok(n) => n,
            Err((code, detail)) => self.error(out, kind, id, code, format_args!("{detail}")),
        }
    }

    /// Largest data-chunk body a peer may send or receive (on a device with a key, inside a
    /// sealed frame that fits `max_frame`).
    pub fn max_chunk(&self) -> usize {
        self.frame_room() - HEADER_LEN - CHUNK_META_ROOM
    }

    /// Largest frame a service may answer with: `max_frame`, less sealing on a device with a key.
    pub(crate) fn frame_room(&self) -> usize {
        #[cfg(feature = "secure")]
        if self.key_required() {
            return self.max_frame - crate::secure::SEAL_OVERHEAD;
        }
        self.max_frame
    }

    /// Writes the next frame of `conn`'s response stream into `out`; returns its length, 0 when
    /// there is no stream or its next frame is not ready yet (a waiting command).
    pub fn resume(&mut self, conn: &mut Conn, out: &mut [u8]) -> usize {
        let (n, next) = match core::mem::replace(&mut conn.stream, Stream::Idle) {
            Stream::Idle => (0, Stream::Idle),
            Stream::Exec {
                id,
                command,
                cursor,
                meta,
            } => self.exec_step(id, command, cursor, meta, out),
            Stream::ExecEnd { id, status } => {
                let spec = FrameSpec::response(Kind::Exec, id);
                (self.reply(out, spec, &msg::ExecDone { status }, &[]), Stream::Idle)
            }
            Stream::Get(download) => self.get_step(download, out),
            Stream::List { id, next } => self.list_step(id, next, out),
        };
        conn.stream = next;
        n
    }
}

/// A failed request: the code and a fixed detail text.
pub type Failure = (ErrorCode, &'static str);

/// Refuses a request string longer than its protocol limit (`InvalidArgument`, with `detail`).
pub(crate) fn within(value: &str, max: usize, detail: &'static str) -> Result<(), Failure> {
    if value.len() > max {
        return Err((ErrorCode::InvalidArgument, detail));
    }
    Ok(())
}
