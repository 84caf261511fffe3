//! A blocking client over any `embedded_io` byte stream.

use std::io::{Seek, SeekFrom};

use embedded_io::{Read, Write};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tether_core::codec::{write_frame, Decoder, ReadError, WriteError};
use tether_core::msg::{self, Digest};
use tether_core::wire::{ErrorCode, Flags, Frame, FrameSpec, Kind};

use crate::error::{Cause, ClientError, Over, Result};

/// The largest frame this client accepts (devices advertise theirs; the simulator's default is
/// 64 KiB, a microcontroller's a few KiB).
pub const MAX_FRAME: usize = 256 * 1024;

/// A device's `hello` answer, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Protocol version.
    pub version: u8,
    /// Device name.
    pub device: String,
    /// Largest frame the device accepts.
    pub max_frame: u32,
    /// Largest data chunk.
    pub max_chunk: u32,
    /// TCP sessions served at once.
    pub sessions: u8,
    /// Storage capacity in bytes.
    pub storage_capacity: u64,
    /// Storage used in bytes.
    pub storage_used: u64,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Registered commands.
    pub commands: Vec<String>,
    /// The device's framed UDP port.
    pub udp_port: u16,
    /// Whether the device clock was ever set.
    pub clock_synced: bool,
    /// Whether the device requires its pre-shared key (docs/PROTOCOL.md §16); `false`: anyone
    /// who can reach it can change it.
    pub key_required: bool,
}

impl From<&msg::Info<'_>> for DeviceInfo {
    fn from(i: &msg::Info<'_>) -> Self {
        DeviceInfo {
            version: i.version,
            device: i.device.to_string(),
            max_frame: i.max_frame,
            max_chunk: i.max_chunk,
            sessions: i.sessions,
            storage_capacity: i.storage_capacity,
            storage_used: i.storage_used,
            uptime_ms: i.uptime_ms,
            commands: i.commands.iter().map(|c| c.to_string()).collect(),
            udp_port: i.udp_port,
            clock_synced: i.clock_synced,
            key_required: i.key_required,
        }
    }
}

/// A listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// The outcome of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// File size.
    pub size: u64,
    /// SHA-256, checked on both sides.
    pub sha256: Digest,
    /// Where the transfer started (non-zero when it resumed).
    pub resumed_from: u64,
}

/// A SHA-256 state fed with a reader's whole content, and the content's length (to resume a
/// download whose first part is already on disk).
pub fn sha256_state_of<R: std::io::Read>(mut r: R) -> std::io::Result<(Sha256, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h, len));
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
}

/// The SHA-256 of a reader's whole content, and its length.
pub fn sha256_of<R: std::io::Read>(r: R) -> std::io::Result<(Digest, u64)> {
    let (h, len) = sha256_state_of(r)?;
    Ok((h.finalize().into(), len))
}

/// The device clock as a `time` request reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTime {
    /// The time formatted on the device (empty for `time-set`).
    pub text: String,
    /// Unix time in milliseconds.
    pub unix_ms: u64,
    /// Whether the clock was ever set; when not, it counts from the Unix epoch at boot.
    pub synced: bool,
}

/// A connection to a device.
pub struct Client<T> {
    io: T,
    decoder: Box<Decoder<MAX_FRAME>>,
    next_id: u32,
    /// Who the peer is, for messages ("the device", "127.0.0.1:7070").
    peer: String,
    /// Whether the peer has sent one valid frame: garbage before that means it does not speak
    /// Tether at all, garbage after it is a damaged frame.
    spoken: bool,
    /// The link may lose frames (a serial line): answers may be missing, stale answers to
    /// earlier attempts may arrive, and idempotent requests are repeated.
    lossy: bool,
    /// The link's count of frames it dropped as damaged, when it keeps one.
    damage: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Events that arrived while a request waited for its answer, for [`Client::next_event`]
    /// (`None`: such events are skipped; see [`Client::keeping_events`]).
    kept: Option<std::collections::VecDeque<(u32, String, Vec<u8>)>>,
}

/// The most events a client keeps while requests wait for their answers
/// ([`Client::keeping_events`]); later ones are dropped, as a device drops events for a busy
/// session (the sequence numbers show the gap).
pub const KEPT_EVENTS: usize = 1024;

/// How often an idempotent request is sent over a lossy link before its failure is reported.
pub const LOSSY_TRIES: u32 = 8;

/// The most `PutData` frames in flight over a lossy link.
pub const LOSSY_WINDOW: u16 = 4;

/// The largest `PutData` body over a lossy link: the frame stays within the 1 KiB a device keeps
/// its stream frames to on a line (docs/PROTOCOL.md §17.2), since a byte fault costs the frame.
pub const LOSSY_CHUNK: u32 = tether_core::session::LINE_STREAM_FRAME as u32 - 40;

/// Request ids of lossy clients come from one counter per process, so that a client opened to
/// retry a transfer never reuses the ids whose late answers may still be on the line; it starts
/// at a random point so that a new process does not take a previous one's stale answers as its own.
static LOSSY_IDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn lossy_id() -> u32 {
    use std::sync::atomic::Ordering;
    let _ = LOSSY_IDS.compare_exchange(0, random_start(), Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let id = LOSSY_IDS.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

fn random_start() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() as u32).max(1)
}

/// What a quiet moment on a lossy link means while a client waits for an answer (the link says
/// so by failing a read with `Interrupted`: see [`crate::serial::SerialLink::set_patience`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quiet {
    /// Ask: a short echo sent behind the request is answered after it (the device answers in
    /// order), so its answer arriving first shows the request or its answer lost; a device that
    /// only takes its time answers the request first. For answers that are not streams.
    Probe,
    /// A stream the device sends without a pause (a download, a listing): silence means the
    /// request or the stream was lost. (A probe would supersede the stream on a line.)
    Lost,
    /// A command's output may pause for as long as the command likes: keep waiting.
    Wait,
}

/// Probes sent in one wait for an answer, at most.
const PROBES: u32 = 3;

/// Requests that may be sent again when their answer was lost: repeating them changes nothing
/// (the protocol's table, `tether_core::service::policy`).
fn idempotent(kind: Kind) -> bool {
    tether_core::service::policy::rule(kind).idempotent
}

/// A link as messages name it: a lossy one is a serial line.
pub(crate) fn link_name(peer: &str, lossy: bool) -> String {
    if lossy {
        format!("the line {peer}")
    } else {
        format!("the connection to {peer}")
    }
}

/// The message of an error frame, for a message of ours.
fn frame_error_text(frame: Option<Frame<'_>>) -> String {
    frame
        .and_then(|f| f.error().map(|e| e.message.to_string()))
        .unwrap_or_else(|| "a damaged frame".into())
}

/// A stream error in words: what happened, with the OS's own explanation.
pub(crate) fn stream_err<E: embedded_io::Error>(peer: &str, e: &E) -> ClientError {
    use embedded_io::ErrorKind as K;
    match e.kind() {
        K::TimedOut => ClientError::timeout(Over::Stream, format!("{peer} did not answer in time")),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => ClientError::connection(
            Over::Stream,
            Cause::Broke,
            format!("the connection to {peer} broke ({e})"),
        ),
        _ => ClientError::connection(
            Over::Stream,
            Cause::Broke,
            format!("the connection to {peer} failed ({e})"),
        ),
    }
}

/// A frame that answers a request: the answer, or the device's refusal as an error. A refusal
/// that only says the request arrived damaged (`BadCrc`; on a lossy link also `Malformed`, a
/// packet cut short) is the link's doing, not the device's: [`ClientError::Link`], named after
/// `link` ("the line serial:…", "the connection to …").
pub(crate) fn check<'f>(frame: Frame<'f>, link: &str, lossy: bool) -> Result<Frame<'f>> {
    let Some(e) = frame.error() else {
        return Ok(frame);
    };
    let code = ErrorCode::from_u16(e.code);
    if code == Some(ErrorCode::BadCrc) || (lossy && code == Some(ErrorCode::Malformed)) {
        return Err(ClientError::Link(format!(
            "{link} damaged request {} on its way to the device (the device says: {})",
            frame.request_id(),
            e.message
        )));
    }
    Err(ClientError::Device {
        code: e.code,
        message: e.message.to_string(),
    })
}

/// The device's refusal of the whole connection, if `frame` is one: the unasked `Busy` error
/// (request id 0) a device sends when every session is in use, before it closes the connection
/// (docs/PROTOCOL.md §7, §13). No answer to any request will come after it.
pub(crate) fn refusal(frame: &Frame<'_>) -> Option<ClientError> {
    let error = frame.error().filter(|_| frame.request_id() == 0)?;
    (ErrorCode::from_u16(error.code) == Some(ErrorCode::Busy)).then(|| ClientError::Full(error.message.to_string()))
}

pub(crate) fn meta<'f, M: serde::Deserialize<'f>>(frame: &Frame<'f>) -> Result<M> {
    frame.meta::<M>().map_err(|_| {
        ClientError::Protocol(format!(
            "the device's answer (kind 0x{:02x}) has unreadable metadata",
            u8::from(frame.kind())
        ))
    })
}

impl<T: Read + Write> Client<T>
where
    T::Error: embedded_io::Error,
{
    /// A client over an open byte stream.
    pub fn new(io: T) -> Self {
        Client::with_peer(io, "the device")
    }

    /// A client over an open byte stream to `peer` (named in error messages, e.g. its address).
    pub fn with_peer(io: T, peer: impl Into<String>) -> Self {
        Client {
            io,
            decoder: Box::new(Decoder::new()),
            next_id: 1,
            peer: peer.into(),
            spoken: false,
            lossy: false,
            damage: None,
            kept: None,
        }
    }

    /// A client over a link that may lose frames (a serial line through
    /// [`crate::serial::SerialLink`], which drops damaged ones); see [`Client::on_lossy_link`].
    pub fn lossy(io: T) -> Self {
        Client::new(io).on_lossy_link()
    }

    /// This client, told that its link may lose frames (composes with [`Client::with_peer`]).
    /// Such a client skips stale answers to earlier attempts, reports an answer that a later one
    /// overtook as lost ([`ClientError::Connection`]: transfers resume), and repeats idempotent
    /// requests (`hello`, `echo`, `stat`, `time`, `put-begin`) up to [`LOSSY_TRIES`] times. It
    /// also repeats `put-commit` (a repeat that finds the upload committed succeeds only if the
    /// device holds exactly the file sent) and confirms every listing ([`Client::list`]).
    pub fn on_lossy_link(mut self) -> Self {
        self.lossy = true;
        self.next_id = lossy_id();
        self
    }

    /// Who the peer is, as error messages name it.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the link may lose frames ([`Client::on_lossy_link`]).
    pub fn is_lossy(&self) -> bool {
        self.lossy
    }

    /// This client, keeping the events pushed into its session while a request waits for its
    /// answer (up to [`KEPT_EVENTS`]), for [`Client::next_event`] to return first; without it
    /// they are skipped. For a session that both subscribes and sends requests (tether-bridge).
    pub fn keeping_events(mut self) -> Self {
        self.kept = Some(std::collections::VecDeque::new());
        self
    }

    /// This client, told where its link counts the frames it dropped as damaged
    /// ([`crate::serial::SerialLink::damage_counter`]): a wait that times out with only damaged
    /// frames arriving is then reported as [`ClientError::Garbled`], the line's fault, not the
    /// device's silence.
    pub fn watching_damage(mut self, counter: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.damage = Some(counter);
        self
    }

    fn damaged(&self) -> u64 {
        self.damage
            .as_ref()
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// This client, told that its peer is known to speak Tether (an earlier session of the same
    /// run heard it): a damaged first answer is then the link's doing, never a sign that the peer
    /// is something else.
    pub fn known_to_speak(mut self) -> Self {
        self.spoken = true;
        self
    }

    /// The link, as messages about its damage name it: "the line …" or "the connection to …".
    fn link(&self) -> String {
        link_name(&self.peer, self.lossy)
    }

    fn read_err(&self, e: ReadError<T::Error>) -> ClientError {
        let peer = &self.peer;
        match e {
            ReadError::Io(e) => stream_err(peer, &e),
            ReadError::Eof | ReadError::UnexpectedEof => {
                ClientError::connection(Over::Stream, Cause::Closed, format!("{peer} closed the connection"))
            }
            // (Even a frame whose header checks: an echo service reflects the request itself.)
            ReadError::Decode(d) if !self.spoken => ClientError::NotTether(format!(
                "{peer} is not a Tether device: its answer is not a Tether frame ({d})"
            )),
            // Its CRCs caught what the link did to a frame: a frame the device sent intact.
            ReadError::Decode(d) => ClientError::Link(format!(
                "{} damaged a frame on its way from the device ({d})",
                self.link()
            )),
        }
    }

    fn write_err(&self, e: WriteError<T::Error>) -> ClientError {
        match e {
            WriteError::Io(e) => stream_err(&self.peer, &e),
            WriteError::Encode(e) => ClientError::Usage(format!("the request does not fit in a frame: {e}")),
        }
    }

    /// The underlying stream, e.g. to change its timeouts.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// The underlying stream, to look at (e.g. whether it holds input already read from the OS:
    /// [`crate::net::AnyClient::has_buffered_input`]).
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Whether events kept while a request waited ([`Client::keeping_events`]) are waiting for
    /// [`Client::next_event`], which returns them without reading.
    pub fn has_kept_events(&self) -> bool {
        self.kept.as_ref().is_some_and(|k| !k.is_empty())
    }

    /// The underlying stream.
    pub fn into_inner(self) -> T {
        self.io
    }

    fn id(&mut self) -> u32 {
        if self.lossy {
            // Ids stay increasing across the clients of one process; `next_id` marks the newest.
            let id = lossy_id();
            self.next_id = id.wrapping_add(1);
            return id;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Sends a request without waiting; returns its id.
    pub fn send<M: Serialize + ?Sized>(&mut self, kind: Kind, meta: &M, body: &[u8]) -> Result<u32> {
        let id = self.id();
        if let Err(e) = write_frame(&mut self.io, FrameSpec::request(kind, id), meta, body) {
            return Err(self.write_err(e));
        }
        Ok(id)
    }

    /// Reads frames until one answers request `id`, skipping pushed events. Device errors come
    /// back as [`ClientError::Device`].
    pub fn receive(&mut self, id: u32) -> Result<Frame<'_>> {
        self.await_answer(id, Quiet::Probe)?;
        Ok(self.decoder.last_frame().expect("a frame was just read"))
    }

    /// Reads until the answer to `id` is the decoder's last frame; `quiet` says what a quiet
    /// moment on a lossy link means.
    fn await_answer(&mut self, id: u32, quiet: Quiet) -> Result<()> {
        let mut quiet_moments = 0;
        let damaged_before = self.damaged();
        loop {
            // A loop that returns a borrow needs the borrow checker's help: copy what it needs.
            let frame = match self.decoder.read_frame(&mut self.io) {
                Ok(f) => f,
                Err(ReadError::Io(e)) if embedded_io::Error::kind(&e) == embedded_io::ErrorKind::Interrupted => {
                    quiet_moments += 1;
                    match quiet {
                        Quiet::Probe if quiet_moments <= PROBES => {
                            self.send(Kind::Echo, &(), &[])?;
                        }
                        Quiet::Lost if quiet_moments >= 2 => {
                            return Err(ClientError::Link(format!(
                                "{} lost request {id} or its answer",
                                self.link()
                            )));
                        }
                        _ => {}
                    }
                    continue;
                }
                Err(e) => {
                    let e = self.read_err(e);
                    let damaged = self.damaged() - damaged_before;
                    if e.is_timeout() && damaged > 0 {
                        return Err(ClientError::Garbled(format!(
                            "{} delivered only damaged frames while this waited for an answer ({damaged} of them, none whole)",
                            self.link()
                        )));
                    }
                    return Err(e);
                }
            };
            let (rid, kind, response, error) = (
                frame.request_id(),
                frame.kind(),
                frame.flags().contains(Flags::RESPONSE),
                frame.flags().contains(Flags::ERROR),
            );
            self.spoken = true;
            if rid == id && response {
                return Ok(());
            }
            if let Some(refused) = refusal(&frame) {
                return Err(refused);
            }
            if kind == Kind::Event {
                if let Some(kept) = self.kept.as_mut().filter(|k| k.len() < KEPT_EVENTS) {
                    if let Ok(e) = frame.meta::<msg::Event<'_>>() {
                        kept.push_back((e.seq, e.topic.to_string(), frame.body.to_vec()));
                    }
                }
                continue;
            }
            // The device answers in order: an answer to a request sent after `id` means the answer
            // to `id` (or `id` itself) was lost.
            let ahead = rid.wrapping_sub(id);
            let lost = response && rid != 0 && ahead < self.next_id.wrapping_sub(id);
            if lost {
                return Err(ClientError::Link(format!(
                    "{} lost request {id} or its answer",
                    self.link()
                )));
            }
            if self.lossy {
                // Anything else is stale: an earlier attempt's answer, or the device's reply to
                // line noise, which has id 0.
                continue;
            }
            if rid == 0 && response && error {
                // On TCP the only bytes the device receives are this client's: what it could not
                // read as a frame (its answer to noise has id 0) was a request the link damaged.
                return Err(ClientError::Link(format!(
                    "{} damaged a request on its way to the device (the device says: {})",
                    self.link(),
                    frame_error_text(self.decoder.last_frame())
                )));
            }
            return Err(ClientError::Protocol(format!(
                "{} answered request {rid} while this client waited for {id}",
                self.peer
            )));
        }
    }

    /// One request, one response. Over a lossy link an idempotent request is repeated when its
    /// answer is lost or the device reports it damaged on the way.
    pub fn call<M: Serialize + ?Sized>(&mut self, kind: Kind, meta: &M, body: &[u8]) -> Result<Frame<'_>> {
        let tries = if self.lossy && idempotent(kind) { LOSSY_TRIES } else { 1 };
        let mut attempt = 1;
        loop {
            let id = self.send(kind, meta, body)?;
            let failure = match self.await_answer(id, Quiet::Probe) {
                Ok(()) => {
                    let frame = self.decoder.last_frame().expect("a frame was just read");
                    match check(frame, &link_name(&self.peer, self.lossy), self.lossy) {
                        Ok(_) => break,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            if attempt >= tries || !failure.is_link_damage() {
                return Err(failure);
            }
            attempt += 1;
        }
        Ok(self.decoder.last_frame().expect("a frame was just read"))
    }

    /// One request, a stream of responses: `each` sees every frame; returns when the last
    /// (without `MORE`) has been seen.
    pub fn stream<M, F>(&mut self, kind: Kind, meta: &M, body: &[u8], each: F) -> Result<()>
    where
        M: Serialize + ?Sized,
        F: FnMut(&Frame<'_>) -> Result<()>,
    {
        // A command's output pauses as the command likes; other streams flow without a pause.
        let quiet = if kind == Kind::Exec { Quiet::Wait } else { Quiet::Lost };
        self.stream_with(kind, meta, body, quiet, each)
    }

    fn stream_with<M, F>(&mut self, kind: Kind, meta: &M, body: &[u8], quiet: Quiet, mut each: F) -> Result<()>
    where
        M: Serialize + ?Sized,
        F: FnMut(&Frame<'_>) -> Result<()>,
    {
        let id = self.send(kind, meta, body)?;
        loop {
            self.await_answer(id, quiet)?;
            let frame = self.decoder.last_frame().expect("a frame was just read");
            let frame = check(frame, &link_name(&self.peer, self.lossy), self.lossy)?;
            each(&frame)?;
            if !frame.flags().contains(Flags::MORE) {
                return Ok(());
            }
        }
    }

    /// Waits for the next event pushed into this session (after a `Subscribe` on it): its
    /// sequence number, topic and data. `Ok(None)` when a frame other than an event arrived
    /// (a stale answer on a lossy line); [`ClientError::Timeout`] when none came within the
    /// link's timeout (call again to keep waiting).
    pub fn next_event(&mut self) -> Result<Option<(u32, String, Vec<u8>)>> {
        if let Some(e) = self.kept.as_mut().and_then(std::collections::VecDeque::pop_front) {
            return Ok(Some(e));
        }
        let frame = match self.decoder.read_frame(&mut self.io) {
            Ok(f) => f,
            Err(ReadError::Decode(_)) if self.lossy => return Ok(None),
            Err(ReadError::Io(e)) if embedded_io::Error::kind(&e) == embedded_io::ErrorKind::Interrupted => {
                return Ok(None)
            }
            Err(e) => return Err(self.read_err(e)),
        };
        self.spoken = true;
        if frame.kind() != Kind::Event {
            return Ok(None);
        }
        let event = meta::<msg::Event<'_>>(&frame)?;
        Ok(Some((event.seq, event.topic.to_string(), frame.body.to_vec())))
    }

    /// `hello`: what the device is.
    pub fn hello(&mut self, client: &str) -> Result<DeviceInfo> {
        let frame = self.call(Kind::Hello, &msg::Hello { client }, &[])?;
        let i: msg::Info<'_> = meta(&frame)?;
        Ok(DeviceInfo::from(&i))
    }

    /// `echo` (or `upper`): the body back.
    pub fn echo(&mut self, data: &[u8], upper: bool) -> Result<Vec<u8>> {
        let kind = if upper { Kind::Upper } else { Kind::Echo };
        Ok(self.call(kind, &(), data)?.body.to_vec())
    }

    /// `exec`: runs a registered command, handing output to `out` as it streams; returns the
    /// exit status.
    pub fn exec(&mut self, command: &str, args: &[&str], mut out: impl FnMut(&[u8])) -> Result<i32> {
        let args = heapless::Vec::from_slice(args)
            .map_err(|_| ClientError::Usage(format!("a command takes at most {} arguments", msg::MAX_ARGS)))?;
        let req = msg::ExecRequest { command, args };
        let mut status = None;
        self.stream(Kind::Exec, &req, &[], |f| {
            out(f.body);
            if !f.flags().contains(Flags::MORE) {
                status = Some(meta::<msg::ExecDone>(f)?.status);
            }
            Ok(())
        })?;
        status.ok_or_else(|| ClientError::Protocol("the device ended the command without its status".into()))
    }

    /// `list`: every visible file.
    ///
    /// Over a lossy link a listing is also confirmed, and read again (up to [`LOSSY_TRIES`]
    /// times) when a page went missing: the pages of one listing share one request id and carry
    /// no index, so a lost page in the middle would otherwise go unnoticed and files would
    /// silently be left out (see `Client::list_confirmed`).
    pub fn list(&mut self) -> Result<Vec<RemoteFile>> {
        if !self.lossy {
            return self.list_pages(0).map(|(files, _)| files);
        }
        let mut attempt = 1;
        loop {
            let failure = match self.list_pages(0).and_then(|(files, _)| self.list_confirmed(files)) {
                Ok(files) => return Ok(files),
                Err(e) => e,
            };
            if attempt >= LOSSY_TRIES || !failure.is_link_damage() {
                return Err(failure);
            }
            attempt += 1;
        }
    }

    /// The entries of a `List` stream from index `start`, and how many pages brought them.
    fn list_pages(&mut self, start: u32) -> Result<(Vec<RemoteFile>, usize)> {
        let mut files = Vec::new();
        let mut pages = 0;
        self.stream(Kind::List, &msg::ListRequest { start }, &[], |f| {
            let page: msg::ListPage<'_> = meta(f)?;
            pages += 1;
            files.extend(page.entries.iter().map(|e| RemoteFile {
                name: e.name.to_string(),
                size: e.size,
            }));
            Ok(())
        })?;
        Ok((files, pages))
    }

    /// `files`, read as a whole listing over a lossy link, if the device confirms that there
    /// is nothing more: asked for its listing from index `files.len()`, it must answer with an
    /// empty page. The device sends an empty page only to a start at or past its last file (a
    /// page from an earlier start holds at least that file), and a lost page cannot make one
    /// appear, so an empty answer proves the device has at most `files.len()` files; the
    /// listing read holds that many distinct names, all from the device, so it is all of them.
    /// A lost page (any but the last, whose loss leaves the stream unfinished) shows as a
    /// non-empty confirmation. An empty listing needs no check: it is that same proof. Like any
    /// listing in pages, this holds while the files do not change: files removed between the
    /// listing and its confirmation could hide as many lost ones.
    fn list_confirmed(&mut self, files: Vec<RemoteFile>) -> Result<Vec<RemoteFile>> {
        if files.is_empty() {
            return Ok(files);
        }
        let lost = || {
            ClientError::connection(
                Over::Stream,
                Cause::Lost,
                "a page of the listing was lost on the link (or the files changed meanwhile)",
            )
        };
        let mut names = std::collections::HashSet::new();
        if !files.iter().all(|f| names.insert(f.name.as_str())) {
            // The same name twice: pages of different listings were mixed.
            return Err(lost());
        }
        let at = u32::try_from(files.len()).map_err(|_| lost())?;
        let (tail, pages) = self.list_pages(at)?;
        if pages == 1 && tail.is_empty() {
            return Ok(files);
        }
        Err(lost())
    }

    /// `stat`: size and digest of a file.
    pub fn stat(&mut self, name: &str) -> Result<(u64, Digest)> {
        let frame = self.call(Kind::Stat, &msg::NameRef { name }, &[])?;
        let s: msg::StatInfo<'_> = meta(&frame)?;
        Ok((s.size, s.sha256))
    }

    /// `remove`: deletes a file.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        self.call(Kind::Remove, &msg::NameRef { name }, &[]).map(|_| ())
    }

    /// `time-get`: the device time formatted with `format` (empty: the default format), and the
    /// device's Unix time in milliseconds. [`Client::clock`] also says whether it was ever set.
    pub fn time(&mut self, format: &str) -> Result<(String, u64)> {
        let t = self.clock(format)?;
        Ok((t.text, t.unix_ms))
    }

    /// `time-get`: the device clock, formatted with `format`, and whether it was ever set.
    pub fn clock(&mut self, format: &str) -> Result<DeviceTime> {
        let frame = self.call(Kind::TimeGet, &msg::TimeGet { format }, &[])?;
        let t: msg::Time = meta(&frame)?;
        Ok(DeviceTime {
            text: String::from_utf8_lossy(frame.body).into_owned(),
            unix_ms: t.unix_ms,
            synced: t.synced,
        })
    }

    /// `time-set`: sets the device clock; returns the device's Unix time in milliseconds after.
    pub fn set_time(&mut self, unix_ms: u64) -> Result<u64> {
        Ok(self.set_clock(unix_ms)?.unix_ms)
    }

    /// `time-set`: sets the device clock; returns the clock as the device reports it after.
    pub fn set_clock(&mut self, unix_ms: u64) -> Result<DeviceTime> {
        let frame = self.call(Kind::TimeSet, &msg::Clock { unix_ms }, &[])?;
        let t: msg::Time = meta(&frame)?;
        Ok(DeviceTime {
            text: String::new(),
            unix_ms: t.unix_ms,
            synced: t.synced,
        })
    }

    /// Uploads `size` bytes from `src` as `name`, whose SHA-256 is `sha256`, keeping the device's
    /// window of chunks in flight. Resumes where the device holds a suspended upload of the same
    /// file. `progress` sees the acknowledged byte count.
    pub fn put<R: std::io::Read + Seek>(
        &mut self,
        name: &str,
        src: &mut R,
        size: u64,
        sha256: Digest,
        overwrite: bool,
        mut progress: impl FnMut(u64),
    ) -> Result<Transfer> {
        let begin = msg::PutBegin {
            name,
            size,
            sha256,
            overwrite,
        };
        let ready: msg::PutReady = meta(&self.call(Kind::PutBegin, &begin, &[])?)?;
        if ready.offset > size || ready.chunk == 0 {
            return Err(ClientError::Protocol(format!(
                "the device offered to resume at byte {} with chunks of {} bytes, which cannot be right",
                ready.offset, ready.chunk
            )));
        }
        src.seek(SeekFrom::Start(ready.offset))
            .map_err(|e| ClientError::Local(format!("cannot seek in the file to upload ({e})")))?;
        progress(ready.offset);
        // A lossy link loses whole frames: small ones lose less.
        let chunk = if self.lossy {
            ready.chunk.min(LOSSY_CHUNK)
        } else {
            ready.chunk
        };
        let mut buf = vec![0u8; chunk as usize];
        let mut sent = ready.offset;
        let mut in_flight = std::collections::VecDeque::new();
        // On a lossy link every chunk sent after a lost one is refused and sent again: a window
        // of a few small chunks keeps a line busy all the same.
        let window = if self.lossy {
            ready.window.clamp(1, LOSSY_WINDOW)
        } else {
            ready.window.max(1)
        } as usize;
        loop {
            while in_flight.len() < window && sent < size {
                let n = (size - sent).min(buf.len() as u64) as usize;
                src.read_exact(&mut buf[..n])
                    .map_err(|e| ClientError::Local(format!("cannot read the file to upload ({e})")))?;
                let id = self.send(Kind::PutData, &msg::PutData { offset: sent }, &buf[..n])?;
                in_flight.push_back(id);
                sent += n as u64;
            }
            let Some(id) = in_flight.pop_front() else { break };
            self.await_answer(id, Quiet::Probe)?;
            let frame = self.decoder.last_frame().expect("a frame was just read");
            let frame = check(frame, &link_name(&self.peer, self.lossy), self.lossy)?;
            let ack: msg::PutAck = meta(&frame)?;
            progress(ack.received);
        }
        self.commit(name, size, sha256)?;
        Ok(Transfer {
            size,
            sha256,
            resumed_from: ready.offset,
        })
    }

    /// `PutCommit` of the upload of `name`. Over a lossy link it is repeated when its answer is
    /// lost or damaged. A repeat may find the upload already committed by the attempt whose
    /// answer was lost (`NoTransfer`, or `AlreadyExists`); then the device must prove it holds
    /// exactly the file sent ([`Client::holds`]), or the commit fails: success is never claimed
    /// for a file that differs.
    fn commit(&mut self, name: &str, size: u64, sha256: Digest) -> Result<()> {
        let tries = if self.lossy { LOSSY_TRIES } else { 1 };
        let mut attempt = 1;
        loop {
            let failure = match self.call(Kind::PutCommit, &msg::NameRef { name }, &[]) {
                Ok(frame) => {
                    let done: msg::FileDone = meta(&frame)?;
                    if done.size != size || done.sha256 != sha256 {
                        return Err(ClientError::Protocol(
                            "the device stored a different size or SHA-256 than was sent".into(),
                        ));
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            let committed_before = matches!(failure.code(), Some(ErrorCode::NoTransfer | ErrorCode::AlreadyExists));
            if attempt > 1 && committed_before {
                if self.holds(name, size, sha256)? {
                    return Ok(());
                }
                return Err(ClientError::Protocol(format!(
                    "the answer to committing `{name}` was lost, and the device's `{name}` is not the file sent \
                     (it was replaced or removed meanwhile)"
                )));
            }
            if attempt >= tries || !failure.is_link_damage() {
                return Err(failure);
            }
            attempt += 1;
        }
    }

    /// Whether the device holds `name` with exactly this size and SHA-256 (the device's own
    /// digest of the stored file, from `Stat`); `false` when it has no such file.
    pub fn holds(&mut self, name: &str, size: u64, sha256: Digest) -> Result<bool> {
        match self.stat(name) {
            Ok((s, d)) => Ok(s == size && d == sha256),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Downloads `name` from `offset` into `dst`. `hasher` must already have seen the first
    /// `offset` bytes (a resumed download); the whole file's digest is checked at the end.
    pub fn get<W: std::io::Write>(
        &mut self,
        name: &str,
        offset: u64,
        dst: &mut W,
        mut hasher: Sha256,
        mut progress: impl FnMut(u64),
    ) -> Result<Transfer> {
        let mut at = offset;
        let mut end = None;
        let lossy = self.lossy;
        let link = self.link();
        self.stream(Kind::Get, &msg::Get { name, offset }, &[], |f| {
            if f.flags().contains(Flags::MORE) {
                let d: msg::GetData = meta(f)?;
                if d.offset != at && lossy {
                    // A chunk was lost on the line: resume from `at`.
                    return Err(ClientError::Link(format!("{link} lost the chunk at byte {at}")));
                }
                if d.offset != at {
                    return Err(ClientError::Protocol(format!(
                        "the device sent the chunk at byte {} where byte {at} was due",
                        d.offset
                    )));
                }
                if let Err(e) = dst.write_all(f.body) {
                    // No use in the rest of the stream: stop (the caller ends the session).
                    return Err(ClientError::Local(format!("cannot write the downloaded data ({e})")));
                }
                hasher.update(f.body);
                at += f.body.len() as u64;
                progress(at);
            } else {
                end = Some(meta::<msg::FileDone>(f)?);
            }
            Ok(())
        })?;
        let done =
            end.ok_or_else(|| ClientError::Protocol("the device ended the download without its SHA-256".into()))?;
        if lossy && at < done.size {
            // The chunks before the end were lost with nothing after them to show a gap.
            return Err(ClientError::Link(format!("{link} lost the chunk at byte {at}")));
        }
        let digest: Digest = hasher.finalize().into();
        if at != done.size || digest != done.sha256 {
            return Err(ClientError::Protocol(format!(
                "the downloaded data ({at} bytes) does not match the SHA-256 of the device's file ({} bytes)",
                done.size
            )));
        }
        dst.flush()
            .map_err(|e| ClientError::Local(format!("cannot write the downloaded data ({e})")))?;
        Ok(Transfer {
            size: done.size,
            sha256: digest,
            resumed_from: offset,
        })
    }
}
