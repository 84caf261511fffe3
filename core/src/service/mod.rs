//! The device services, independent of the transport.
//!
//! [`Device`] holds what every connection shares (storage, clock, commands, counters); [`Conn`]
//! holds what one connection has in progress (an upload, a response stream). The server feeds
//! decoded request frames to [`Device::handle`] and pulls further frames of a stream with
//! [`Device::resume`], one frame at a time into a buffer of its choosing, so a connection whose
//! peer reads slowly simply stops being asked for more.

pub mod builtin;
pub mod clock;
pub mod exec;
pub mod files;
pub mod ramstore;
pub mod stats;

use core::fmt::{self, Write as _};

use heapless::{String, Vec};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::codec::{encode, encode_with};
use crate::msg::{self, Digest};
use crate::wire::{ErrorCode, Flags, Frame, FrameSpec, Kind, HEADER_LEN, MAX_META_LEN, VERSION};
use clock::Clock;
use exec::{Call, Command, Output, Status};
use files::{check_name, FileInfo, FileName, Storage};
use stats::{Service, Stats};

/// Largest `exec` metadata (command and arguments, postcard-encoded) a connection keeps for a
/// command whose output spans several frames.
pub const EXEC_META_MAX: usize = 256;
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
    /// A TCP session on the framed port.
    Tcp,
    /// A datagram on the framed UDP port.
    Udp,
}

/// How far a connection is in the session state machine.
///
/// Only `Open` exists today; a pre-shared-key challenge will add a phase before it in which
/// mutating services answer [`ErrorCode::Unauthorized`] (see [`Device::authorize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Every service is available.
    #[default]
    Open,
}

struct Upload {
    name: FileName,
    size: u64,
    received: u64,
    sha256: Digest,
    hasher: Sha256,
}

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
    Get {
        id: u32,
        name: FileName,
        offset: u64,
        info: FileInfo,
    },
    List {
        id: u32,
        next: u32,
    },
}

/// One connection's service state.
pub struct Conn {
    phase: Phase,
    upload: Option<Upload>,
    stream: Stream,
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
            upload: None,
            stream: Stream::Idle,
        }
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
        }
    }

    /// Advances the device's notion of time (milliseconds since boot).
    pub fn set_uptime(&mut self, ms: u64) {
        self.uptime_ms = ms;
    }

    /// Milliseconds since boot, as last set.
    pub fn uptime_ms(&self) -> u64 {
        self.uptime_ms
    }

    /// The device settings.
    pub fn config(&self) -> &DeviceConfig<'a> {
        &self.config
    }

    /// Whether `conn` may use `kind` now. The hook where authentication will plug in.
    pub fn authorize(&self, conn: &Conn, kind: Kind) -> Result<(), ErrorCode> {
        let _ = kind;
        match conn.phase {
            Phase::Open => Ok(()),
        }
    }

    /// Ends a connection: an upload in progress is suspended (resumable by the same name, size
    /// and digest), a stream is dropped.
    pub fn close(&mut self, conn: &mut Conn) {
        if let Some(up) = conn.upload.take() {
            self.storage.suspend(&up.name);
        }
        conn.stream = Stream::Idle;
        conn.phase = Phase::Open;
    }

    /// Writes an error response into `out`; returns its length.
    pub fn error(&mut self, out: &mut [u8], kind: Kind, id: u32, code: ErrorCode, detail: fmt::Arguments<'_>) -> usize {
        self.stats.errors = self.stats.errors.wrapping_add(1);
        let mut message: String<96> = String::new();
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
        if let Err(code) = self.authorize(conn, kind) {
            return self.error(out, kind, id, code, format_args!("authenticate first"));
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
            Kind::Subscribe => Err((ErrorCode::InvalidArgument, "subscribe on the UDP port")),
            // Secure sessions are not served yet: a client that needs one learns so (issue 12).
            Kind::Event | Kind::Handshake | Kind::Sealed | Kind::Unknown(_) => {
                Err((ErrorCode::UnknownKind, "no such service"))
            }
        };
        match result {
            Ok(n) => n,
            Err((code, detail)) => self.error(out, kind, id, code, format_args!("{detail}")),
        }
    }

    fn hello(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Hello);
        frame.meta::<msg::Hello<'_>>().map_err(|c| (c, "hello metadata"))?;
        let mut commands: Vec<&str, { msg::MAX_COMMANDS }> = Vec::new();
        let _ = commands.push("help");
        for c in self.commands {
            if commands.push(c.name).is_err() {
                break;
            }
        }
        let info = msg::Info {
            version: VERSION,
            device: self.config.name,
            max_frame: self.max_frame as u32,
            max_chunk: self.max_chunk() as u32,
            sessions: self.sessions,
            storage_capacity: self.storage.capacity(),
            storage_used: self.storage.used(),
            uptime_ms: self.uptime_ms,
            commands,
        };
        Ok(self.reply(out, FrameSpec::response(Kind::Hello, frame.request_id()), &info, &[]))
    }

    /// Largest data-chunk body a peer may send or receive.
    pub fn max_chunk(&self) -> usize {
        self.max_frame - HEADER_LEN - CHUNK_META_ROOM
    }

    fn echo(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Echo);
        let spec = FrameSpec::response(frame.kind(), frame.request_id());
        let upper = frame.kind() == Kind::Upper;
        let body = frame.body;
        encode_with(out, spec, &(), |room| {
            let room = room.get_mut(..body.len()).ok_or(body.len())?;
            room.copy_from_slice(body);
            if upper {
                room.make_ascii_uppercase();
            }
            Ok(body.len())
        })
        .map_err(|_| (ErrorCode::TooLarge, "echo body exceeds the response buffer"))
    }

    fn exec(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Exec);
        let req = frame.meta::<msg::ExecRequest<'_>>().map_err(|c| (c, "exec metadata"))?;
        let command = if req.command == "help" {
            usize::MAX
        } else {
            self.commands
                .iter()
                .position(|c| c.name == req.command)
                .ok_or((ErrorCode::UnknownCommand, "unknown command; try `help`"))?
        };
        let meta = Vec::from_slice(frame.meta).map_err(|_| (ErrorCode::InvalidArgument, "arguments too long"))?;
        conn.stream = Stream::Exec {
            id: frame.request_id(),
            command,
            cursor: 0,
            meta,
        };
        Ok(self.resume(conn, out))
    }

    fn put_begin(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Put);
        let req = frame
            .meta::<msg::PutBegin<'_>>()
            .map_err(|c| (c, "put-begin metadata"))?;
        check_name(req.name).map_err(|e| (e.into(), "names are 1-64 of A-Z a-z 0-9 . _ - and do not start with ."))?;
        if let Some(old) = conn.upload.take() {
            self.storage.suspend(&old.name);
        }
        let held = match self.storage.begin(req.name, req.size, &req.sha256, req.overwrite) {
            Ok(held) => held,
            Err(e) => {
                let (id, code) = (frame.request_id(), ErrorCode::from(e));
                let free = self.storage.capacity().saturating_sub(self.storage.used());
                let detail = match code {
                    ErrorCode::NoSpace => format_args!("{} bytes do not fit ({free} bytes free)", req.size),
                    ErrorCode::AlreadyExists => format_args!("{} exists; use overwrite", req.name),
                    ErrorCode::Busy => format_args!("{} is being uploaded by another session", req.name),
                    _ => format_args!("{}", code.text()),
                };
                return Ok(self.error(out, Kind::PutBegin, id, code, detail));
            }
        };
        let mut hasher = Sha256::new();
        // Resuming: the digest state is rebuilt from the bytes already held (out is scratch).
        let mut at = 0;
        while at < held {
            let n = self
                .storage
                .read_pending(req.name, at, out)
                .map_err(|e| (e.into(), "reading back the upload"))?;
            if n == 0 {
                self.storage.abort(req.name);
                return Err((ErrorCode::Internal, "upload shorter than recorded"));
            }
            hasher.update(&out[..n]);
            at += n as u64;
        }
        let name = FileName::try_from(req.name).map_err(|_| (ErrorCode::InvalidName, "name too long"))?;
        conn.upload = Some(Upload {
            name,
            size: req.size,
            received: held,
            sha256: req.sha256,
            hasher,
        });
        let ready = msg::PutReady {
            offset: held,
            chunk: self.max_chunk() as u32,
            window: self.config.window.max(1),
        };
        Ok(self.reply(
            out,
            FrameSpec::response(Kind::PutBegin, frame.request_id()),
            &ready,
            &[],
        ))
    }

    fn put_data(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        let req = frame.meta::<msg::PutData>().map_err(|c| (c, "put-data metadata"))?;
        let up = conn
            .upload
            .as_mut()
            .ok_or((ErrorCode::NoTransfer, "send put-begin first"))?;
        let id = frame.request_id();
        if req.offset != up.received {
            let detail = format_args!("chunk at {} but the device holds {} bytes", req.offset, up.received);
            return Ok(self.error(out, Kind::PutData, id, ErrorCode::BadOffset, detail));
        }
        if up.received + frame.body.len() as u64 > up.size {
            let detail = format_args!("chunk ends past the announced size of {} bytes", up.size);
            return Ok(self.error(out, Kind::PutData, id, ErrorCode::BadOffset, detail));
        }
        self.storage
            .write(&up.name, req.offset, frame.body)
            .map_err(|e| (e.into(), "writing the upload"))?;
        up.hasher.update(frame.body);
        up.received += frame.body.len() as u64;
        let ack = msg::PutAck { received: up.received };
        Ok(self.reply(out, FrameSpec::response(Kind::PutData, id), &ack, &[]))
    }

    fn put_commit(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        let req = frame
            .meta::<msg::NameRef<'_>>()
            .map_err(|c| (c, "put-commit metadata"))?;
        let id = frame.request_id();
        if conn.uploading() != Some(req.name) {
            return Err((ErrorCode::NoTransfer, "no upload of that name on this connection"));
        }
        let up = conn.upload.take().ok_or((ErrorCode::NoTransfer, "no upload"))?;
        if up.received != up.size {
            let detail = format_args!("have {} of {} bytes", up.received, up.size);
            let n = self.error(out, Kind::PutCommit, id, ErrorCode::BadOffset, detail);
            conn.upload = Some(up);
            return Ok(n);
        }
        let digest: Digest = up.hasher.finalize().into();
        if digest != up.sha256 {
            self.storage.abort(&up.name);
            return Err((
                ErrorCode::DigestMismatch,
                "SHA-256 of the received bytes differs; upload discarded",
            ));
        }
        if let Err(e) = self.storage.commit(&up.name) {
            // Keep the received bytes: a new put-begin of the same file resumes and commits again.
            self.storage.suspend(&up.name);
            return Err((
                e.into(),
                "commit failed; the old file is intact and the upload can resume",
            ));
        }
        self.stats.uploads = self.stats.uploads.wrapping_add(1);
        let done = msg::FileDone {
            size: up.size,
            sha256: digest,
        };
        Ok(self.reply(out, FrameSpec::response(Kind::PutCommit, id), &done, &[]))
    }

    fn put_abort(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        let req = frame
            .meta::<msg::NameRef<'_>>()
            .map_err(|c| (c, "put-abort metadata"))?;
        if conn.uploading() != Some(req.name) {
            return Err((ErrorCode::NoTransfer, "no upload of that name on this connection"));
        }
        if let Some(up) = conn.upload.take() {
            self.storage.abort(&up.name);
        }
        Ok(self.reply(out, FrameSpec::response(Kind::PutAbort, frame.request_id()), &(), &[]))
    }

    fn get(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Get);
        let req = frame.meta::<msg::Get<'_>>().map_err(|c| (c, "get metadata"))?;
        let info = self.storage.stat(req.name).map_err(|e| (e.into(), "no such file"))?;
        if req.offset > info.size {
            return Err((ErrorCode::BadOffset, "offset past the end of the file"));
        }
        let name = FileName::try_from(req.name).map_err(|_| (ErrorCode::InvalidName, "name too long"))?;
        conn.stream = Stream::Get {
            id: frame.request_id(),
            name,
            offset: req.offset,
            info,
        };
        Ok(self.resume(conn, out))
    }

    fn list(&mut self, conn: &mut Conn, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Files);
        let req = frame.meta::<msg::ListRequest>().map_err(|c| (c, "list metadata"))?;
        conn.stream = Stream::List {
            id: frame.request_id(),
            next: req.start,
        };
        Ok(self.resume(conn, out))
    }

    fn stat(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Files);
        let req = frame.meta::<msg::NameRef<'_>>().map_err(|c| (c, "stat metadata"))?;
        let info = self.storage.stat(req.name).map_err(|e| (e.into(), "stat failed"))?;
        let reply = msg::StatInfo {
            name: req.name,
            size: info.size,
            sha256: info.sha256,
        };
        Ok(self.reply(out, FrameSpec::response(Kind::Stat, frame.request_id()), &reply, &[]))
    }

    fn remove(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Files);
        let req = frame.meta::<msg::NameRef<'_>>().map_err(|c| (c, "remove metadata"))?;
        self.storage.remove(req.name).map_err(|e| (e.into(), "remove failed"))?;
        Ok(self.reply(out, FrameSpec::response(Kind::Remove, frame.request_id()), &(), &[]))
    }

    /// Formats the current time with `format` into `room`; returns the text length.
    pub fn format_time(&self, format: &str, room: &mut [u8]) -> Result<usize, Failure> {
        let mut w = SliceWriter { buf: room, len: 0 };
        match clock::strftime(&mut w, format, self.clock.unix_ms(self.uptime_ms)) {
            Ok(()) => Ok(w.len),
            Err(clock::FormatError::Unsupported(_)) => Err((
                ErrorCode::InvalidArgument,
                "unsupported specifier; use %Y %y %m %d %H %M %S %X %x %j %a %A %b %B %p %%",
            )),
            Err(clock::FormatError::Full) => Err((ErrorCode::InvalidArgument, "formatted time too long")),
        }
    }

    fn time_get(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Time);
        let req = frame.meta::<msg::TimeGet<'_>>().map_err(|c| (c, "time-get metadata"))?;
        let now = msg::Clock {
            unix_ms: self.clock.unix_ms(self.uptime_ms),
        };
        let mut failure = None;
        let spec = FrameSpec::response(Kind::TimeGet, frame.request_id());
        let room_cap = out.len().min(HEADER_LEN + 16 + 256);
        let n = encode_with(&mut out[..room_cap], spec, &now, |room| {
            self.format_time(req.format, room).map_err(|f| {
                failure = Some(f);
                0
            })
        });
        match (n, failure) {
            (_, Some(f)) => Err(f),
            (Ok(n), None) => Ok(n),
            (Err(_), None) => Err((ErrorCode::Internal, "time response")),
        }
    }

    fn time_set(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Time);
        let req = frame.meta::<msg::Clock>().map_err(|c| (c, "time-set metadata"))?;
        self.clock.set(req.unix_ms, self.uptime_ms);
        let now = msg::Clock {
            unix_ms: self.clock.unix_ms(self.uptime_ms),
        };
        Ok(self.reply(out, FrameSpec::response(Kind::TimeSet, frame.request_id()), &now, &[]))
    }

    fn message(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Message);
        let req = frame.meta::<msg::Message<'_>>().map_err(|c| (c, "message metadata"))?;
        let text = core::str::from_utf8(frame.body).map_err(|_| (ErrorCode::Malformed, "message text is not UTF-8"))?;
        let me = msg::Message { from: self.config.name };
        let spec = FrameSpec::response(Kind::Message, frame.request_id());
        let ctx = &mut self.ctx;
        encode_with(out, spec, &me, |room| {
            let mut reply = Output::new(room);
            ctx.on_message(req.from, text, &mut reply);
            Ok(reply.len())
        })
        .map_err(|_| (ErrorCode::Internal, "message reply"))
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
            Stream::Get { id, name, offset, info } => self.get_step(id, name, offset, info, out),
            Stream::List { id, next } => self.list_step(id, next, out),
        };
        conn.stream = next;
        n
    }

    fn exec_step(
        &mut self,
        id: u32,
        command: usize,
        cursor: u32,
        meta: Vec<u8, EXEC_META_MAX>,
        out: &mut [u8],
    ) -> (usize, Stream) {
        let room = out.len().min(self.max_frame) - HEADER_LEN;
        let ran = {
            let Ok(req) = postcard::from_bytes::<msg::ExecRequest<'_>>(&meta) else {
                let detail = format_args!("exec metadata");
                return (
                    self.error(out, Kind::Exec, id, ErrorCode::Malformed, detail),
                    Stream::Idle,
                );
            };
            let body = &mut out[HEADER_LEN..HEADER_LEN + room];
            let stats = &self.stats;
            let mut call = Call {
                args: &req.args,
                out: Output::new(body),
                cursor,
                uptime_ms: self.uptime_ms,
                stats,
            };
            let status = match self.commands.get(command) {
                Some(c) => (c.run)(&mut self.ctx, &mut call),
                None => exec::help(self.commands, &mut call),
            };
            (status, call.out.len(), call.cursor)
        };
        let (status, written, cursor) = ran;
        let (spec, next) = match status {
            Status::More if written == 0 => {
                let detail = format_args!("command output line longer than a frame");
                return (
                    self.error(out, Kind::Exec, id, ErrorCode::Internal, detail),
                    Stream::Idle,
                );
            }
            Status::More => (
                FrameSpec::more(Kind::Exec, id),
                Stream::Exec {
                    id,
                    command,
                    cursor,
                    meta,
                },
            ),
            Status::Wait => {
                return (
                    0,
                    Stream::Exec {
                        id,
                        command,
                        cursor,
                        meta,
                    },
                )
            }
            Status::Done(status) if written == 0 => {
                let spec = FrameSpec::response(Kind::Exec, id);
                return (self.reply(out, spec, &msg::ExecDone { status }, &[]), Stream::Idle);
            }
            Status::Done(status) => (FrameSpec::more(Kind::Exec, id), Stream::ExecEnd { id, status }),
        };
        // The output already sits where an empty-metadata frame's body goes.
        let n = encode_with(out, spec, &(), |_| Ok(written)).unwrap_or(0);
        (n, next)
    }

    fn get_step(&mut self, id: u32, name: FileName, offset: u64, info: FileInfo, out: &mut [u8]) -> (usize, Stream) {
        if offset >= info.size {
            self.stats.downloads = self.stats.downloads.wrapping_add(1);
            let done = msg::FileDone {
                size: info.size,
                sha256: info.sha256,
            };
            return (
                self.reply(out, FrameSpec::response(Kind::Get, id), &done, &[]),
                Stream::Idle,
            );
        }
        let chunk = (info.size - offset).min(self.max_chunk() as u64) as usize;
        let storage = &mut self.storage;
        let mut failed = None;
        let n = encode_with(out, FrameSpec::more(Kind::Get, id), &msg::GetData { offset }, |room| {
            let want = chunk.min(room.len());
            match storage.read(&name, offset, &mut room[..want]) {
                Ok(0) => {
                    failed = Some(ErrorCode::Internal);
                    Err(0)
                }
                Ok(got) => Ok(got),
                Err(e) => {
                    failed = Some(e.into());
                    Err(0)
                }
            }
        });
        match (n, failed) {
            (Ok(n), None) => {
                // The frame says how much was read: the body length, recovered from the header.
                let got = u32::from_le_bytes([out[12], out[13], out[14], out[15]]) as u64;
                (
                    n,
                    Stream::Get {
                        id,
                        name,
                        offset: offset + got,
                        info,
                    },
                )
            }
            (_, code) => {
                let code = code.unwrap_or(ErrorCode::Internal);
                let detail = format_args!("reading {name} at {offset} failed (file removed or replaced?)");
                (self.error(out, Kind::Get, id, code, detail), Stream::Idle)
            }
        }
    }

    fn list_step(&mut self, id: u32, start: u32, out: &mut [u8]) -> (usize, Stream) {
        // A page holds up to LIST_PAGE entries, and fewer when long names would push its
        // metadata past MAX_META_LEN (8 names of 64 bytes would).
        let mut names: Vec<(FileName, u64), { msg::LIST_PAGE }> = Vec::new();
        let mut name = FileName::new();
        let mut meta_len = 1; // the entry count
        let mut next = start;
        while !names.is_full() {
            let Some(size) = self.storage.entry(next as usize, &mut name) else {
                break;
            };
            let cost = varint_len(name.len() as u64) + name.len() + varint_len(size);
            if meta_len + cost > MAX_META_LEN {
                break;
            }
            meta_len += cost;
            let _ = names.push((name.clone(), size));
            next += 1;
        }
        let more = self.storage.entry(next as usize, &mut name).is_some();
        let entries = names
            .iter()
            .map(|(n, size)| msg::Entry { name: n, size: *size })
            .collect();
        let page = msg::ListPage { entries };
        if more {
            (
                self.reply(out, FrameSpec::more(Kind::List, id), &page, &[]),
                Stream::List { id, next },
            )
        } else {
            (
                self.reply(out, FrameSpec::response(Kind::List, id), &page, &[]),
                Stream::Idle,
            )
        }
    }
}

/// Bytes of a postcard (LEB128) varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A failed request: the code and a fixed detail text.
pub type Failure = (ErrorCode, &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for (v, n) in [(0u64, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (u64::MAX, 10)] {
            let mut buf = [0u8; 16];
            assert_eq!(postcard::to_slice(&v, &mut buf).unwrap().len(), n, "{v}");
            assert_eq!(varint_len(v), n, "{v}");
        }
    }
}
