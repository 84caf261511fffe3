//! The device services, independent of the transport.
//!
//! [`Device`] holds what every connection shares (storage, clock, counters, the key, the
//! application's context) and dispatches each request to the service its kind belongs to
//! ([`policy::rule`]); every service is a module with its handlers, its rows of the policy table
//! and its own state. [`Conn`] holds what one connection has in progress (an upload, a response
//! stream). The server feeds decoded request frames to [`Device::handle`] and pulls further
//! frames of a stream with [`Device::resume`], one frame at a time into a buffer of its choosing,
//! so a connection whose peer reads slowly simply stops being asked for more.

pub mod builtin;
pub mod clock;
mod discover;
mod echo;
pub mod events;
pub mod exec;
pub mod files;
mod hello;
mod message;
pub mod policy;
pub mod ramstore;
pub mod stats;
mod time;
pub mod update;

use core::fmt::{self, Write as _};

use heapless::{String, Vec};
use serde::Serialize;

use crate::codec::encode;
use crate::msg;
use crate::wire::{ErrorCode, Flags, Frame, FrameSpec, Kind, HEADER_LEN};
use clock::Clock;
use exec::{Command, Output};
use files::Storage;
use policy::ServedBy;
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

    /// The board's slots, reset and watchdog, for the firmware update service (feature
    /// `update`); `None`, the default: the device takes no updates.
    #[cfg(feature = "update")]
    fn board(&mut self) -> Option<&mut dyn crate::update::Board> {
        None
    }
}

impl Context for () {}

/// Where a request came from, and how far its peer has proven the device's key: what
/// [`policy::rule`] serves depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A session (a TCP connection to the framed port, or a serial line) whose peer may use
    /// every service: the device has no key, or the session is sealed.
    Session,
    /// A session on a device with a key, before its handshake: only what the policy serves
    /// before the handshake.
    Locked,
    /// A datagram on the framed UDP port.
    Udp,
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
    /// This session's [`Owner`] number for uploads, given on its first `PutBegin` (0: none
    /// yet). [`Device::close`] clears it, so a `Conn` reused for the next session is a new owner.
    owner: u32,
    upload: Option<files::Upload>,
    stream: Stream,
    /// The peer asked for events (`Subscribe` on a session): the driver pushes them in.
    subscribed: bool,
    /// This session's owner number for an image upload (0: none yet). 16 bits keep `Conn` in its
    /// memory budget; a number comes round again only after 65 535 other sessions began image
    /// uploads, and an upload's bytes are checked by their hash at the commit whoever sent them.
    #[cfg(feature = "update")]
    fw_owner: u16,
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
            owner: 0,
            upload: None,
            stream: Stream::Idle,
            subscribed: false,
            #[cfg(feature = "update")]
            fw_owner: 0,
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

    /// Name of the upload in progress, if any.
    pub fn uploading(&self) -> Option<&str> {
        self.upload.as_ref().map(|u| u.name.as_str())
    }
}

/// Device-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig<'a> {
    /// Name reported by `hello` (and as the sender of `Message` replies), at most
    /// [`msg::MAX_DEVICE_LEN`] bytes: [`Device::new`] cuts a longer one.
    pub name: &'a str,
    /// Upload chunks a host may keep in flight (advertised in `PutReady`).
    pub window: u16,
}

/// The device: the state every service shares, and a dispatcher over the services.
///
/// The shared state is the store, the clock, the counters, the application's context, the key
/// and what `hello` reports; drivers and the application reach it through the public fields and
/// methods here. Each service is a module that owns its handlers, its rows of the policy table
/// ([`policy::TABLE`]) and whatever it keeps between requests (exec its command table, files
/// their upload-owner counter, events their sequence number). A handler is lent the shared state
/// as a `Shared` beside its own state, never another service's.
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
    uptime_ms: u64,
    max_frame: usize,
    sessions: u8,
    /// The framed UDP port `hello` advertises (set by the server).
    pub(crate) udp_port: u16,
    /// The key sessions must prove, and the generator of handshake ephemerals.
    #[cfg(feature = "secure")]
    lock: Option<crate::secure::Lock>,
    services: Services<C>,
}

/// What the services keep between requests, each its own: the dispatcher lends a handler only
/// its service's part.
struct Services<C: 'static> {
    exec: exec::Exec<C>,
    files: files::Files,
    events: events::Events,
    #[cfg(feature = "discover")]
    discover: discover::Discovery,
    #[cfg(feature = "update")]
    update: update::Update,
}

/// The device-wide state a service handler works with, borrowed from the [`Device`] for one
/// request (or one frame of a stream).
pub(crate) struct Shared<'d, C, S> {
    /// The file store.
    pub(crate) storage: &'d mut S,
    /// The wall clock.
    pub(crate) clock: &'d mut Clock,
    /// Counters.
    pub(crate) stats: &'d mut Stats,
    /// The application's own state.
    pub(crate) ctx: &'d mut C,
    /// What the device is and how it is set up.
    pub(crate) facts: Facts<'d>,
}

/// What the device is and how its server was built: what `hello` reports, and what sizes the
/// services' answers. A copy, taken when a handler is lent the [`Shared`] state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// The device settings.
    pub(crate) config: DeviceConfig<'a>,
    /// Milliseconds since boot, as last set.
    pub(crate) uptime_ms: u64,
    /// The largest frame the server takes and sends.
    pub(crate) max_frame: usize,
    /// How many sessions the server holds.
    pub(crate) sessions: u8,
    /// The framed UDP port `hello` advertises.
    pub(crate) udp_port: u16,
    /// Whether peers must prove the device's key.
    pub(crate) key_required: bool,
}

impl Facts<'_> {
    /// Largest data-chunk body a peer may send or receive (on a device with a key, inside a
    /// sealed frame that fits `max_frame`).
    pub(crate) fn max_chunk(&self) -> usize {
        self.frame_room() - HEADER_LEN - CHUNK_META_ROOM
    }

    /// Largest frame a service may answer with: `max_frame`, less sealing on a device with a key.
    pub(crate) fn frame_room(&self) -> usize {
        #[cfg(feature = "secure")]
        if self.key_required {
            return self.max_frame - crate::secure::SEAL_OVERHEAD;
        }
        self.max_frame
    }
}

impl<C, S> Shared<'_, C, S> {
    /// Writes an error response into `out` and counts it; returns its length.
    pub(crate) fn error(
        &mut self,
        out: &mut [u8],
        kind: Kind,
        id: u32,
        code: ErrorCode,
        detail: fmt::Arguments<'_>,
    ) -> usize {
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

    /// Writes a response into `out`; returns its length. One that does not encode is answered
    /// `Internal` instead.
    pub(crate) fn reply<M: Serialize + ?Sized>(
        &mut self,
        out: &mut [u8],
        spec: FrameSpec,
        meta: &M,
        body: &[u8],
    ) -> usize {
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
        let config = DeviceConfig {
            name: cut_to(config.name, msg::MAX_DEVICE_LEN),
            ..config
        };
        Device {
            config,
            storage,
            clock: Clock::default(),
            stats: Stats::default(),
            ctx,
            uptime_ms: 0,
            max_frame,
            sessions,
            udp_port: 0,
            #[cfg(feature = "secure")]
            lock: None,
            services: Services {
                exec: exec::Exec::new(commands),
                files: files::Files::new(),
                events: events::Events::new(),
                #[cfg(feature = "discover")]
                discover: discover::Discovery::default(),
                #[cfg(feature = "update")]
                update: update::Update::new(),
            },
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

    /// The device's lock, to check a waiting peer's message 1 ([`crate::secure::Lock::admits`]).
    #[cfg(feature = "secure")]
    pub fn lock(&self) -> Option<&crate::secure::Lock> {
        self.lock.as_ref()
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

    /// Counts a completed handshake (the session engine runs it).
    #[cfg(feature = "secure")]
    pub(crate) fn count_handshake(&mut self) {
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

    /// Sets who the device is to `Discover` (`docs/PROTOCOL.md` §19): its unique `id` (0 lets the
    /// server use the interface's MAC address) and the firmware's `version` (cut to
    /// [`msg::MAX_FIRMWARE_LEN`] bytes).
    #[cfg(feature = "discover")]
    pub fn identify(&mut self, id: u64, version: &str) {
        self.services.discover.id = id;
        self.services.discover.set_firmware(version);
    }

    /// The id `Discover` reports (0: none yet).
    #[cfg(feature = "discover")]
    pub fn id(&self) -> u64 {
        self.services.discover.id
    }

    /// Gives a device without an id the one of its MAC address `mac` (6 bytes; see
    /// [`Device::identify`]).
    #[cfg(all(feature = "smoltcp", feature = "discover"))]
    pub(crate) fn default_id(&mut self, mac: &[u8]) {
        if self.services.discover.id == 0 {
            self.services.discover.id = discover::id_of_mac(mac);
        }
    }

    /// Sets the framed TCP port `Discover` advertises: the server sets its own, a device reached
    /// through a port forward advertises the port peers must use (as [`Device::advertise_udp_port`]).
    #[cfg(feature = "discover")]
    pub fn advertise_tcp_port(&mut self, port: u16) {
        self.services.discover.tcp_port = port;
    }

    /// Who the device is and where to reach it, as `Discover` answers (and mDNS announces) it now.
    #[cfg(feature = "discover")]
    pub fn presence(&self) -> msg::Presence<'_> {
        discover::presence(&self.services.discover, &self.facts())
    }

    /// Sets the IPv4 addresses `Discover` lists (the server sets its interface's at every poll;
    /// at most [`msg::MAX_ADDRESSES`] are kept).
    #[cfg(feature = "discover")]
    pub fn set_addresses(&mut self, addresses: &[[u8; 4]]) {
        self.services.discover.set_addresses(addresses);
    }

    /// Milliseconds since boot, as last set.
    pub fn uptime_ms(&self) -> u64 {
        self.uptime_ms
    }

    /// The device settings.
    pub fn config(&self) -> &DeviceConfig<'a> {
        &self.config
    }

    /// What the services are told about the device, as it stands now.
    fn facts(&self) -> Facts<'a> {
        Facts {
            config: self.config,
            uptime_ms: self.uptime_ms,
            max_frame: self.max_frame,
            sessions: self.sessions,
            udp_port: self.udp_port,
            key_required: self.key_required(),
        }
    }

    /// The shared state and the services' own, borrowed apart so that a handler can hold both.
    fn parts(&mut self) -> (Shared<'_, C, S>, &mut Services<C>) {
        let facts = self.facts();
        let shared = Shared {
            storage: &mut self.storage,
            clock: &mut self.clock,
            stats: &mut self.stats,
            ctx: &mut self.ctx,
            facts,
        };
        (shared, &mut self.services)
    }

    /// Whether `kind` is served over `transport` now ([`policy::rule`], `docs/PROTOCOL.md` §1,
    /// §16.3): on a device with a key, a session before its handshake is served only `Hello`,
    /// and a datagram — whose sender cannot prove anything — only what changes nothing.
    pub fn authorize(&self, kind: Kind, transport: Transport) -> Result<(), ErrorCode> {
        let rule = policy::rule(kind);
        let served = match transport {
            Transport::Udp if self.key_required() => rule.udp_with_key,
            Transport::Udp | Transport::Session => true,
            Transport::Locked => rule.before_handshake,
        };
        if served {
            Ok(())
        } else {
            Err(ErrorCode::Unauthorized)
        }
    }

    /// Ends a connection: an upload in progress is suspended (resumable by the same name, size
    /// and digest, and replaceable by another upload of the name), a stream is dropped.
    pub fn close(&mut self, conn: &mut Conn) {
        files::close(&mut self.storage, conn);
        #[cfg(feature = "update")]
        update::close(&mut self.services.update, &mut self.ctx, conn);
        conn.stream = Stream::Idle;
        conn.subscribed = false;
    }

    /// Drops `conn`'s response stream (a command is not called again); its upload stays.
    pub fn end_stream(&mut self, conn: &mut Conn) {
        conn.stream = Stream::Idle;
    }

    /// Writes an error response into `out`; returns its length.
    pub fn error(&mut self, out: &mut [u8], kind: Kind, id: u32, code: ErrorCode, detail: fmt::Arguments<'_>) -> usize {
        self.parts().0.error(out, kind, id, code, detail)
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
        if let Err(code) = self.authorize(kind, transport) {
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
        if transport == Transport::Udp && policy::rule(kind).over_udp == policy::OverUdp::TcpOnly {
            return self.error(
                out,
                kind,
                id,
                ErrorCode::InvalidArgument,
                format_args!("use TCP for this service"),
            );
        }
        let rule = policy::rule(kind);
        let (mut shared, services) = self.parts();
        let sh = &mut shared;
        if let (Some(counter), true) = (rule.counted_as, serves(rule.service)) {
            sh.stats.count(counter);
        }
        let result = match rule.service {
            ServedBy::Hello => hello::serve(sh, &services.exec, frame, out),
            #[cfg(feature = "discover")]
            ServedBy::Discover => discover::serve(sh, &services.discover, frame, out),
            // A device built without discovery: as a kind it does not serve.
            #[cfg(not(feature = "discover"))]
            ServedBy::Discover => Err((ErrorCode::UnknownKind, "no such service")),
            ServedBy::Echo => echo::serve(frame, out),
            ServedBy::Exec => services.exec.serve(sh, conn, frame, out),
            ServedBy::Files => services.files.serve(sh, conn, frame, out),
            ServedBy::Time => time::serve(sh, frame, out),
            ServedBy::Messages => message::serve(sh, conn, frame, out),
            #[cfg(feature = "update")]
            ServedBy::Update => services.update.serve(sh, conn, frame, out),
            #[cfg(not(feature = "update"))]
            ServedBy::Update => Err((ErrorCode::UnknownKind, "this device has no firmware update service")),
            // The session engine runs the handshake and opens sealed frames; one that reaches the
            // services came to a device without a key (or over UDP, which has no sessions).
            ServedBy::Secure => Err((ErrorCode::UnknownKind, "this device has no key: no secure sessions")),
            ServedBy::None => Err((ErrorCode::UnknownKind, "no such service")),
        };
        match result {
            Ok(n) => n,
            Err((code, detail)) => sh.error(out, kind, id, code, format_args!("{detail}")),
        }
    }

    /// Largest data-chunk body a peer may send or receive (on a device with a key, inside a
    /// sealed frame that fits `max_frame`).
    pub fn max_chunk(&self) -> usize {
        self.facts().max_chunk()
    }

    /// Limits the largest frame, in both directions, to what a transport's sessions hold: the
    /// server and the serial driver each pass their own `N`, so `hello` never advertises a frame
    /// one of them cannot take (a board with both serves the smaller on both).
    pub(crate) fn limit_max_frame(&mut self, n: usize) {
        self.max_frame = self.max_frame.min(n);
    }

    /// Writes the next frame of `conn`'s response stream into `out`; returns its length, 0 when
    /// there is no stream or its next frame is not ready yet (a waiting command).
    pub fn resume(&mut self, conn: &mut Conn, out: &mut [u8]) -> usize {
        let (mut shared, services) = self.parts();
        let sh = &mut shared;
        let (n, next) = match core::mem::replace(&mut conn.stream, Stream::Idle) {
            Stream::Idle => (0, Stream::Idle),
            Stream::Exec {
                id,
                command,
                cursor,
                meta,
            } => services.exec.step(sh, id, command, cursor, meta, out),
            Stream::ExecEnd { id, status } => exec::end(sh, id, status, out),
            Stream::Get(download) => files::get_step(sh, download, out),
            Stream::List { id, next } => files::list_step(sh, id, next, out),
        };
        conn.stream = next;
        n
    }

    /// The registry index of the command called `name` (`help` is built in), for
    /// [`Device::run_command`]: the plain command port runs the same commands as `exec`.
    #[cfg(feature = "plain-actors")]
    pub(crate) fn find_command(&self, name: &str) -> Result<usize, Failure> {
        self.services.exec.find(name)
    }

    /// The name of the command at `index` (from [`Device::find_command`]).
    #[cfg(feature = "plain-actors")]
    pub(crate) fn command_name(&self, index: usize) -> &'static str {
        self.services.exec.name(index)
    }

    /// One call of the command at `index` with `args`, resuming at `cursor`, its output into
    /// `out`. Returns the status, the bytes written and the cursor to resume at.
    #[cfg(feature = "plain-actors")]
    pub(crate) fn run_command(
        &mut self,
        index: usize,
        args: &[&str],
        cursor: u32,
        out: &mut [u8],
    ) -> (exec::Status, usize, u32) {
        let (mut shared, services) = self.parts();
        services.exec.run(&mut shared, index, args, cursor, out)
    }

    /// The wall clock now, as the time services report it.
    pub fn now(&self) -> msg::Time {
        time::now(&self.clock, self.uptime_ms)
    }

    /// Formats the current time with `format` into `room`; returns the text length. Text beyond
    /// [`msg::MAX_TIME_TEXT`] bytes is refused whatever the room.
    pub fn format_time(&self, format: &str, room: &mut [u8]) -> Result<usize, Failure> {
        time::format_time(&self.clock, self.uptime_ms, format, room)
    }

    /// The sequence number of the next event: one counter for every transport, so a subscriber
    /// sees gaps where it missed events.
    pub fn next_event_seq(&mut self) -> u32 {
        self.services.events.next_seq()
    }

    /// The sequence number the last event was given (0: none since boot).
    pub fn last_event_seq(&self) -> u32 {
        self.services.events.last_seq()
    }

    /// Serves firmware updates (`docs/PROTOCOL.md` §11.12) with `config`, the image running
    /// being the one `running` says ([`crate::update::boot`] chose it at this boot). The slots,
    /// reset and watchdog are the application's [`Context::board`]. Call it again after every
    /// boot (a simulated reset).
    #[cfg(feature = "update")]
    pub fn enable_update(&mut self, config: update::UpdateConfig, running: crate::update::Boot) {
        self.services.update.enable(config, running);
    }

    /// The image running, on a device that serves updates.
    #[cfg(feature = "update")]
    pub fn running_image(&self) -> Option<crate::update::Boot> {
        self.services.update.running()
    }

    /// The application confirms the image on trial, after its own self-test (what `FwConfirm`
    /// does for a host): it becomes the image the device boots. `Ok(false)` when there was
    /// nothing to confirm (not on trial, or no update service).
    #[cfg(feature = "update")]
    pub fn confirm_image(&mut self) -> Result<bool, crate::update::UpdateError> {
        match self.ctx.board() {
            Some(board) => self.services.update.confirm_running(board),
            None => Ok(false),
        }
    }

    /// A (soft) reboot: sequence numbers count from 1 again, as PROTOCOL.md §11.10 says.
    pub fn restart_events(&mut self) {
        self.services.events.restart();
    }
}

/// Whether this build has `service` (discovery and firmware update are features): a request for
/// one it lacks is `UnknownKind` and counts nowhere.
const fn serves(service: ServedBy) -> bool {
    match service {
        ServedBy::Discover => cfg!(feature = "discover"),
        ServedBy::Update => cfg!(feature = "update"),
        ServedBy::Secure | ServedBy::None => false,
        _ => true,
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut_to(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
