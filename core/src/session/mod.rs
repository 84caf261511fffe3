//! The session engine: one peer's byte stream in, response bytes out, and the rules that keep a
//! bad peer from holding a session — with no socket, UART or clock type inside.
//!
//! Like quinn-proto or rustls's unbuffered API, a [`Session`] is a state machine the transport
//! driver feeds and drains:
//!
//! ```text
//! driver                                  engine
//! ------                                  ------
//! peer connected            ──open()────▶
//! bytes from the peer       ──receive()─▶ decode, handle one request, stage its answer
//! room toward the peer      ──transmit()▶ staged bytes, then further frames of a stream
//! peer finished sending     ──finish()──▶ a waiting command is ended, not waited for
//! now and then              ──check()───▶ Some(Close): drop the peer (frame deadline, idle, garbage)
//! peer gone / dropped       ──close()───▶ upload suspended, stream dropped
//! ```
//!
//! The engine reads a new request only once the previous answer has been handed to the transport
//! ([`Session::wants_input`]), so a peer that does not read its answers stops being read: its own
//! transport buffer fills and the peer is throttled, never the device's memory.
//!
//! Time is milliseconds on any monotonic clock the driver likes (`now_ms`). Every rule is in
//! [`Limits`]; `docs/PROTOCOL.md` §13 states them for peers.

mod evict;
mod guard;

pub use evict::{pick_eviction, Newcomer, Rank};
pub use guard::Standing;

use guard::Guard;

use crate::codec::Decoder;
use crate::service::files::Storage;
use crate::service::stats::Tally;
use crate::service::{Conn, Context, Device};
use crate::wire::{DecodeError, ErrorCode, Frame, Kind, HEADER_LEN};

/// Most frames one [`Session::transmit`] call produces, so that a stream of small frames into a
/// large transport buffer cannot starve the driver's other sessions.
const FRAMES_PER_TRANSMIT: usize = 32;

/// The largest response-stream frame on a line ([`Session::on_a_line`]): a byte fault costs the
/// frame it hits, so on a noisy line a 16 KiB frame would rarely arrive whole, while 1 KiB frames
/// cost about 3 % of a clean line's rate (docs/PROTOCOL.md §17.2). Other answers may be as large
/// as `N`.
pub const LINE_STREAM_FRAME: usize = 1024;

/// The rules a session enforces on its peer (`docs/PROTOCOL.md` §13, session rules). A
/// [`Session`] holds its own; a server or driver gives every session the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Once a frame's first byte has arrived, the whole frame must arrive within this many
    /// milliseconds (counted only while the session is ready to read), or the session is closed:
    /// a drip-feeding peer cannot hold it.
    pub frame_ms: u64,
    /// A session that stays idle this long is closed: nothing moved in either direction, garbage
    /// and the answers to it not counted.
    pub idle_ms: u64,
    /// A session is closed once it has sent more than this many bytes that decode to no valid
    /// frame since its last valid frame. Every undecodable frame counts, at least a header's worth.
    pub garbage: usize,
    /// On a device with a key, a session that is not authenticated this many milliseconds after
    /// it opened is closed: a peer without the key cannot hold a session.
    pub handshake_ms: u64,
    /// On a device without a key, a session gives way to a new peer (when every session is
    /// taken) only once it has been idle this long ([`Session::eviction_rank`]).
    pub evict_idle_ms: u64,
    /// On a device with a key, a session whose message 1 the device answered gives way to a new
    /// peer only this long after the answer: its peer's time to send its first sealed frame.
    pub answer_grace_ms: u64,
}

impl Limits {
    /// The reference device's rules, as `docs/PROTOCOL.md` §13 states them.
    pub const DEFAULT: Limits = Limits {
        frame_ms: 5_000,
        idle_ms: 120_000,
        garbage: 4096,
        handshake_ms: 5_000,
        evict_idle_ms: 2_000,
        answer_grace_ms: 1_000,
    };

    /// Whether a session (framed or plain) that has been idle for `idle_for_ms` is past the idle
    /// time: the one idle rule of every session.
    pub fn idle_past(&self, idle_for_ms: u64) -> bool {
        idle_for_ms >= self.idle_ms
    }

    /// Whether `garbage` bytes since the last valid frame are past the budget.
    fn garbage_past(&self, garbage: usize) -> bool {
        garbage > self.garbage
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why the engine wants its peer dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// More than [`Limits::garbage`] bytes of garbage since the last valid frame.
    Garbage,
    /// A frame did not arrive complete within [`Limits::frame_ms`].
    FrameTimeout,
    /// No byte moved for [`Limits::idle_ms`].
    Idle,
    /// The handshake failed: the peer does not hold the device's key, or sent something that is
    /// not a handshake message. (The session is closed once the refusal has been handed over.)
    Handshake,
    /// The handshake was not completed within [`Limits::handshake_ms`] of opening.
    NoHandshake,
    /// On a sealed session, a frame that is not sealed, replayed, reordered or modified; or the
    /// session's send counter ran out.
    Refused,
}

impl Close {
    /// A short description, for logs.
    pub fn text(self) -> &'static str {
        match self {
            Close::Garbage => "too much garbage",
            Close::FrameTimeout => "frame not complete in time",
            Close::Idle => "idle",
            Close::Handshake => "handshake refused",
            Close::NoHandshake => "no handshake in time",
            Close::Refused => "sealed frame refused",
        }
    }

    /// Whether the session's last answer explains the close (a refused handshake): a driver
    /// that can lets that answer reach the peer before it ends the transport's side.
    pub fn is_explained(self) -> bool {
        self == Close::Handshake
    }

    /// Whether the close is for failing authentication (counted in `Stats::auth_failures`).
    pub fn is_auth_failure(self) -> bool {
        matches!(self, Close::Handshake | Close::NoHandshake | Close::Refused)
    }
}

/// One peer's session: decoder, staged response, service state and timers.
///
/// `N` is the largest frame, in both directions: the decoder holds one incoming frame and the
/// stage one outgoing frame, so a session costs about `2 × N` bytes.
pub struct Session<const N: usize> {
    limits: Limits,
    decoder: Decoder<N>,
    conn: Conn,
    /// One encoded response frame; `pos..len` is still to be handed to the transport.
    out: [u8; N],
    pos: usize,
    len: usize,
    open: bool,
    /// The peer will send nothing more (TCP FIN).
    finished: bool,
    /// Garbage bytes since the last valid frame.
    garbage: usize,
    /// A verdict reached while receiving, reported by the next [`Session::check`].
    verdict: Option<Close>,
    /// A verdict reported once the staged answer has been handed to the transport (the refusal
    /// of a handshake, so that the peer learns why).
    closing: Option<Close>,
    /// Open, locked until the handshake, or sealed.
    guard: Guard,
    /// When the peer connected.
    opened_at: u64,
    /// When the device answered the peer's message 1 (for eviction, [`Rank::answered`]).
    answered_at: Option<u64>,
    /// The transport outlives its peers (a serial line): see [`Session::on_a_line`].
    line: bool,
    /// When a byte last moved in either direction, garbage and the answers to it not counted.
    last_progress: u64,
    /// What is staged answers garbage: handing it over is no activity either.
    fault_staged: bool,
    /// While locked, the peer sent a whole frame that is not a handshake, or garbage: a client
    /// about to prove the key would have sent its message 1 (for eviction, [`Rank::locked`]).
    spoke: bool,
    /// When the first byte of the frame now being assembled arrived.
    frame_since: Option<u64>,
    /// When the session last became ready to read after being blocked on its own output.
    ready_since: u64,
    /// On a line, the handshake answered last, kept until the peer's first sealed frame opens:
    /// see [`Session::on_a_line`].
    #[cfg(feature = "secure")]
    flight: Option<Flight>,
}

/// A handshake a line session answered: the client's message 1 and the device's message 2.
///
/// A line has no connection to say that message 2 got through: a client that hears nothing (a
/// slow board still computing its side, or message 2 lost on the line) can only send message 1
/// again, the same bytes, and must get the same message 2 back (as DTLS and QUIC repeat a
/// flight), not a new session whose message 2 its handshake state cannot read.
#[cfg(feature = "secure")]
struct Flight {
    message1: [u8; crate::secure::MSG1_LEN],
    message2: [u8; crate::secure::MSG2_LEN],
}

#[cfg(feature = "secure")]
impl Flight {
    /// Whether `frame` is the request this flight answered, byte for byte (its request id
    /// aside, which names only the attempt).
    fn repeated_by(&self, frame: &Frame<'_>) -> bool {
        crate::secure::message1(frame) == Some(&self.message1[..])
    }
}

impl<const N: usize> Default for Session<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Session<N> {
    const SANE: () = assert!(N >= 512, "frames of at least 512 bytes");

    /// A session with no peer, under the default [`Limits`].
    pub const fn new() -> Self {
        Self::with_limits(Limits::DEFAULT)
    }

    /// A session with no peer, under `limits`.
    pub const fn with_limits(limits: Limits) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::SANE;
        Session {
            limits,
            decoder: Decoder::new(),
            conn: Conn::new(),
            out: [0; N],
            pos: 0,
            len: 0,
            open: false,
            finished: false,
            garbage: 0,
            verdict: None,
            closing: None,
            guard: Guard::Open,
            opened_at: 0,
            answered_at: None,
            line: false,
            last_progress: 0,
            fault_staged: false,
            spoke: false,
            frame_since: None,
            ready_since: 0,
            #[cfg(feature = "secure")]
            flight: None,
        }
    }

    /// A session on a transport that outlives its peers, such as a serial line, where a new
    /// client cannot be told from the old one by a new connection: on a sealed session, a
    /// `Hello` or `Handshake` request in the clear is taken as a new peer and starts the session
    /// over (the old one's upload suspended, its keys forgotten) instead of ending it. This gives
    /// nothing away: without the key the new session is locked like any other, and the old one
    /// would have been ended by that frame anyway.
    ///
    /// The one exception is the handshake the session answered last, repeated byte for byte
    /// before the peer's first sealed frame has opened: it is answered with the same message 2
    /// again, and nothing else changes (no new keys, no Diffie-Hellman work, the handshake
    /// deadline still counted from the first). A client that heard nothing repeats its message 1;
    /// starting over would answer it with a message 2 of keys its handshake does not have. A
    /// replay of a recorded message 1 gets no more than the message 2 already on the wire, and
    /// only until the session is proven: after that it starts the session over as before.
    pub const fn on_a_line(limits: Limits) -> Self {
        let mut session = Self::with_limits(limits);
        session.line = true;
        session
    }

    /// The rules this session enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A peer connected.
    pub fn open<C: Context, S: Storage>(&mut self, now_ms: u64, device: &mut Device<'_, C, S>) {
        if self.open {
            self.close(device);
        }
        self.open = true;
        self.guard = Guard::for_device(device);
        self.opened_at = now_ms;
        self.answered_at = None;
        self.last_progress = now_ms;
        self.ready_since = now_ms;
        device.stats.tally(Tally::SessionOpened);
    }

    /// Whether a peer is attached.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The peer is gone (or was dropped): an upload in progress is suspended, a stream dropped,
    /// buffers emptied. The session can then [`Session::open`] for the next peer.
    pub fn close<C: Context, S: Storage>(&mut self, device: &mut Device<'_, C, S>) {
        if self.open {
            device.stats.tally(Tally::SessionClosed);
        }
        device.close(&mut self.conn);
        self.decoder.reset();
        self.open = false;
        self.finished = false;
        self.pos = 0;
        self.len = 0;
        self.garbage = 0;
        self.fault_staged = false;
        self.spoke = false;
        self.verdict = None;
        self.closing = None;
        self.guard = Guard::Open;
        self.frame_since = None;
        #[cfg(feature = "secure")]
        {
            self.flight = None;
        }
    }

    /// The service state (upload, stream) of the connection.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Whether the session reads a new request now: it is open, the peer may still send, and the
    /// previous answer has been handed to the transport in full.
    pub fn wants_input(&self) -> bool {
        self.open
            && !self.finished
            && self.verdict.is_none()
            && self.closing.is_none()
            && self.pos == self.len
            && !self.conn.streaming()
    }

    /// On a line ([`Session::on_a_line`]) the peer's next request supersedes a response stream in
    /// progress (docs/PROTOCOL.md §17): a host that sends one has given up on the stream (it lost a
    /// frame of it, or its user pressed Ctrl-C), and on a line nothing else would ever stop it.
    /// The driver calls this when a request arrives while the session streams: the stream ends
    /// and what of its frame is still staged is dropped (the driver cuts the packet on its way
    /// out). Returns whether a stream was ended; on other transports it does nothing.
    pub fn supersede<C: Context, S: Storage>(&mut self, device: &mut Device<'_, C, S>) -> bool {
        if !self.line || !self.open || !self.conn.streaming() {
            return false;
        }
        event!(info, "a new request on the line: the stream in progress ended");
        device.end_stream(&mut self.conn);
        self.pos = self.len;
        true
    }

    /// The largest frame of a response stream: `N`, or on a line [`LINE_STREAM_FRAME`].
    fn stream_room(&self) -> usize {
        if self.line {
            LINE_STREAM_FRAME.min(N)
        } else {
            N
        }
    }

    /// Whether everything asked has been answered: nothing staged, no stream.
    pub fn is_settled(&self) -> bool {
        self.pos == self.len && !self.conn.streaming()
    }

    /// Milliseconds since a byte last moved in either direction.
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_progress)
    }

    /// Where the peer stands with respect to the device's key.
    pub fn standing(&self) -> Standing {
        self.guard.standing()
    }

    /// Whether the peer has proven the device's key (or the device has none): such a session
    /// never gives way to a peer that has proven nothing.
    pub fn is_trusted(&self) -> bool {
        matches!(self.standing(), Standing::Open | Standing::Authenticated)
    }

    /// How readily this session gives way to a new peer waiting for one ([`pick_eviction`]), or
    /// `None` when it must be kept (`docs/PROTOCOL.md` §13, eviction; [`Limits::evict_idle_ms`],
    /// [`Limits::answer_grace_ms`]).
    ///
    /// On a device with a key, a session whose peer has not proven the key gives way at once,
    /// the oldest first and one that was never answered a handshake before one that was, so a
    /// flood of keyless connections cycles through the sessions while a key holder's fresh
    /// handshake lives until a handful of newer connections arrive; an authenticated session
    /// never gives way to anyone who has proven nothing. On an open device, a session gives way
    /// once it has been idle `min_idle_ms`, the one idle longest first.
    pub fn eviction_rank(&self, now_ms: u64) -> Option<Rank> {
        self.eviction_rank_for(now_ms, Newcomer::Unproven)
    }

    /// [`Session::eviction_rank`] for a waiting peer that has shown `newcomer`: one with a fresh
    /// message 1 that proves the key takes the place of a session answered but unproven at once,
    /// without waiting out its [`Limits::answer_grace_ms`].
    pub fn eviction_rank_for(&self, now_ms: u64, newcomer: Newcomer) -> Option<Rank> {
        let Limits {
            evict_idle_ms,
            answer_grace_ms,
            ..
        } = self.limits;
        let age = now_ms.saturating_sub(self.opened_at);
        match self.standing() {
            Standing::Locked => Some(Rank::locked(self.spoke, age)),
            Standing::Answered => {
                let since = self.answered_at.map_or(0, |at| now_ms.saturating_sub(at));
                let grace = match newcomer {
                    Newcomer::Unproven => answer_grace_ms,
                    Newcomer::FreshMessage1 => 0,
                };
                Rank::answered(since, grace)
            }
            Standing::Authenticated => None,
            Standing::Open => Rank::idle(self.idle_ms(now_ms), evict_idle_ms),
        }
    }

    /// The peer will send nothing more (a TCP FIN). Requests already received are still answered,
    /// but a command that waits is ended instead of waited for, so a peer that ran
    /// `exec sleep …` and hung up frees its session at once.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Whether [`Session::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Feeds bytes from the peer. Decodes until one request (or one fault) has been handled, or the
    /// bytes run out, and returns how many were used; call again with the rest once
    /// [`Session::transmit`] has taken the answer. Takes nothing while [`Session::wants_input`] is
    /// false.
    pub fn receive<C: Context + 'static, S: Storage>(
        &mut self,
        now_ms: u64,
        data: &[u8],
        device: &mut Device<'_, C, S>,
    ) -> usize {
        self.receive_from(now_ms, Input::Shared(data), device)
    }

    /// [`Session::receive`] from bytes the engine may write to (a TCP socket's receive buffer):
    /// a sealed frame that lies whole in them is opened where it lies, without a copy.
    pub fn receive_mut<C: Context + 'static, S: Storage>(
        &mut self,
        now_ms: u64,
        data: &mut [u8],
        device: &mut Device<'_, C, S>,
    ) -> usize {
        self.receive_from(now_ms, Input::Writable(data), device)
    }

    fn receive_from<C: Context + 'static, S: Storage>(
        &mut self,
        now_ms: u64,
        data: Input<'_>,
        device: &mut Device<'_, C, S>,
    ) -> usize {
        if !self.wants_input() || data.is_empty() {
            return 0;
        }
        #[cfg(feature = "secure")]
        if matches!(self.guard, Guard::Open) && device.key_required() {
            // The device was given its key while this session was open: from now on the session
            // must prove it like any other.
            self.guard = Guard::Locked;
            self.opened_at = now_ms;
            self.answered_at = None;
        }
        // One call decodes until a frame or fault is complete (then the rest waits for the next
        // call, after the answer is out) or every byte is used.
        let stream_room = self.stream_room();
        let Session {
            decoder,
            conn,
            out,
            guard,
            garbage,
            #[cfg(feature = "secure")]
            opened_at,
            #[cfg(feature = "secure")]
            answered_at,
            #[cfg(feature = "secure")]
            line,
            #[cfg(feature = "secure")]
            flight,
            ..
        } = self;
        let mut answer = Answer::Nothing;
        #[cfg(feature = "secure")]
        if guard.is_sealed() {
            // Opened where it lies, or in the decoder's own buffer: a sealed session needs no
            // second frame buffer.
            let (used, item) = match data {
                Input::Shared(data) => decoder.decode_owned(data),
                Input::Writable(data) => decoder.decode_in_place(data),
            };
            answer = match item {
                None => Answer::Nothing,
                Some(Err(e)) => fault(e, garbage, guard, out, device),
                Some(Ok((header, bytes))) if *line && new_peer(&header) => {
                    let frame = Frame::split(header, bytes);
                    match flight.as_ref() {
                        Some(answered) if answered.repeated_by(&frame) => {
                            event!(info, "message 1 repeated on the line: message 2 sent again");
                            *garbage = 0;
                            repeat(&frame, answered, out)
                        }
                        _ => {
                            event!(info, "a new peer on the line: session started over");
                            device.close(conn);
                            *guard = Guard::Locked;
                            *opened_at = now_ms;
                            *answered_at = None;
                            *flight = None;
                            match frame.kind() {
                                Kind::Handshake => handshake(now_ms, &frame, guard, out, device, Some(flight)),
                                _ => request(&frame, conn, guard, out, stream_room, device, garbage),
                            }
                        }
                    }
                }
                Some(Ok((header, bytes))) => match guard.open(header, bytes) {
                    Ok(inner) => {
                        *flight = None;
                        request(&inner, conn, guard, out, stream_room, device, garbage)
                    }
                    Err(e) => {
                        event!(info, "bad input: {}", guard::refusal_text(e));
                        Answer::Close(Close::Refused)
                    }
                },
            };
            return self.received(now_ms, used, answer, device);
        }
        let (used, item) = decoder.decode(data.bytes());
        if let Some(item) = item {
            answer = match item {
                #[cfg(feature = "secure")]
                Ok(frame) if guard.is_locked() && frame.kind() == Kind::Handshake => {
                    handshake(now_ms, &frame, guard, out, device, line.then_some(flight))
                }
                Ok(frame) => request(&frame, conn, guard, out, stream_room, device, garbage),
                Err(e) => fault(e, garbage, guard, out, device),
            };
        }
        self.received(now_ms, used, answer, device)
    }

    /// The bookkeeping after [`Session::receive`] decoded `used` bytes into `answer`.
    fn received<C: Context, S: Storage>(
        &mut self,
        now_ms: u64,
        used: usize,
        answer: Answer,
        device: &mut Device<'_, C, S>,
    ) -> usize {
        let faulted = matches!(answer, Answer::Fault(_));
        if self.standing() == Standing::Answered && self.answered_at.is_none() {
            self.answered_at = Some(now_ms);
        }
        if self.guard.is_locked() && !matches!(answer, Answer::Nothing) {
            self.spoke = true;
        }
        match answer {
            Answer::Nothing => {}
            Answer::Staged(len) => self.stage(len),
            Answer::Fault(len) => {
                self.stage(len);
                self.fault_staged = true;
            }
            Answer::Last(len, why) => {
                self.stage(len);
                self.closing = Some(why);
            }
            Answer::Close(why) => self.verdict = Some(why),
        }
        device.stats.tally(Tally::BytesIn(used));
        // Garbage is never activity: a peer cannot keep a session alive, or out of eviction's
        // reach, by sending bytes that decode to nothing.
        if used > 0 && !faulted {
            self.last_progress = now_ms;
        }
        self.check_garbage();
        self.frame_since = match (self.decoder.is_idle(), self.frame_since) {
            (true, _) => None,
            (false, Some(t)) => Some(t),
            (false, None) => Some(now_ms),
        };
        used
    }

    /// The garbage budget, checked wherever garbage is counted.
    fn check_garbage(&mut self) {
        if self.limits.garbage_past(self.garbage) {
            self.verdict = Some(Close::Garbage);
        }
    }

    fn stage(&mut self, len: usize) {
        self.pos = 0;
        self.len = len;
        self.fault_staged = false;
    }

    /// The transport marks the end of the peer's frame (a serial link's packet delimiter, see
    /// [`crate::serial`]): bytes of a frame still being assembled will never be completed, so they
    /// are dropped now rather than joined to the next frame. `lost` counts bytes the transport
    /// itself discarded (a packet too long or damaged in its own framing).
    ///
    /// What was dropped counts as garbage, and is no activity. When the dropped frame's header arrived intact, the peer
    /// is answered with a `Malformed` error for that request, so it can repeat it at once instead
    /// of waiting for a timeout.
    pub fn cut<C: Context, S: Storage>(&mut self, lost: usize, device: &mut Device<'_, C, S>) {
        self.cut_packet(lost, None, device);
    }

    /// [`Session::cut`], for a transport that dropped `lost` bytes itself and knows the request
    /// they held: a serial packet longer than the frame its intact header announces (a frame and
    /// more, or two frames), none of which is served (`docs/PROTOCOL.md` §17). The peer is answered
    /// `Malformed` for that request, as for a frame cut short.
    pub fn cut_packet<C: Context, S: Storage>(
        &mut self,
        lost: usize,
        longer: Option<(Kind, u32)>,
        device: &mut Device<'_, C, S>,
    ) {
        let (dropped, request) = self.decoder.cut().unwrap_or((0, longer));
        let request = match request {
            // A sealed frame's outer kind and id name no request (as in `fault`).
            Some((Kind::Sealed, _)) => Some((Kind::Unknown(0), 0)),
            other => other,
        };
        let detail = match longer {
            Some(_) => "packet longer than its frame",
            None => "frame cut short",
        };
        self.frame_since = None;
        if dropped + lost == 0 || !self.open {
            return;
        }
        event!(info, "bad input: {} ({} bytes)", detail, dropped + lost);
        device.stats.tally(Tally::DecodeFault);
        self.garbage += (dropped + lost).max(1);
        self.spoke |= self.guard.is_locked();
        if let (Some((kind, id)), true) = (request, self.is_settled()) {
            let detail = format_args!("{detail}");
            match self.guard.build(&mut self.out, |room| {
                device.error(room, kind, id, ErrorCode::Malformed, detail)
            }) {
                Some(len) => {
                    self.stage(len);
                    self.fault_staged = true;
                }
                None => self.verdict = Some(Close::Refused),
            }
        }
        self.check_garbage();
    }

    /// Hands response bytes to the transport: whatever is staged, then further frames of a
    /// stream. Writes into `room` (the transport's free space) and returns how many bytes it wrote.
    ///
    /// Where `room` has a whole frame's worth of space, a stream frame is built right there (one
    /// copy less for every downloaded byte); otherwise it is staged and handed over in pieces.
    pub fn transmit<C: Context + 'static, S: Storage>(
        &mut self,
        now_ms: u64,
        room: &mut [u8],
        device: &mut Device<'_, C, S>,
    ) -> usize {
        if !self.open {
            return 0;
        }
        let blocked = !self.wants_input();
        let stream_room = self.stream_room();
        let mut written = 0;
        let mut frames = 0;
        while written < room.len() {
            if self.pos < self.len {
                let take = (self.len - self.pos).min(room.len() - written);
                room[written..written + take].copy_from_slice(&self.out[self.pos..self.pos + take]);
                self.pos += take;
                written += take;
                continue;
            }
            if !self.conn.streaming() || frames == FRAMES_PER_TRANSMIT {
                break;
            }
            frames += 1;
            let rest = &mut room[written..];
            let conn = &mut self.conn;
            let built = match rest.get_mut(..stream_room) {
                Some(direct) => self
                    .guard
                    .build(direct, |r| device.resume(conn, r))
                    .inspect(|&n| written += n),
                None => {
                    let n = self
                        .guard
                        .build(&mut self.out[..stream_room], |r| device.resume(conn, r));
                    (self.pos, self.len) = (0, n.unwrap_or(0));
                    n
                }
            };
            let Some(n) = built else {
                self.verdict = Some(Close::Refused);
                break;
            };
            if n == 0 {
                // A command that waits. If the peer has hung up, nobody will read its answer.
                if self.finished {
                    event!(info, "peer finished: waiting command ended");
                    device.end_stream(&mut self.conn);
                }
                break;
            }
        }
        device.stats.tally(Tally::BytesOut(written));
        if written > 0 && !self.fault_staged {
            self.last_progress = now_ms;
        }
        if blocked && self.wants_input() {
            self.ready_since = now_ms;
        }
        written
    }

    /// Offers an event to the session: staged (sealed on a secure session) and sent with the next
    /// [`Session::transmit`] if the peer subscribed and nothing else is staged; returns whether
    /// it was. A session busy with an answer misses the event; its sequence number shows the gap.
    pub fn push_event<C: Context, S: Storage>(
        &mut self,
        now_ms: u64,
        topic: &str,
        seq: u32,
        data: &[u8],
        device: &mut Device<'_, C, S>,
    ) -> bool {
        if !self.open || !self.conn.subscribed() || self.pos < self.len || self.closing.is_some() {
            return false;
        }
        let _ = device;
        match self.guard.build(&mut self.out, |room| {
            crate::service::events::event_frame(room, topic, seq, data)
        }) {
            Some(0) => false,
            Some(len) => {
                self.stage(len);
                self.last_progress = now_ms;
                true
            }
            None => {
                self.verdict = Some(Close::Refused);
                false
            }
        }
    }

    /// Applies the timers and the garbage budget; `Some` means: drop the peer now (then call
    /// [`Session::close`]).
    pub fn check(&mut self, now_ms: u64) -> Option<Close> {
        let limits = self.limits;
        if !self.open {
            return None;
        }
        if let Some(v) = self.verdict {
            return Some(v);
        }
        if let (Some(v), true) = (self.closing, self.pos == self.len) {
            return Some(v);
        }
        if !self.is_trusted() && now_ms >= self.opened_at.saturating_add(limits.handshake_ms) {
            return Some(Close::NoHandshake);
        }
        if let Some(at) = self.frame_deadline() {
            if now_ms >= at {
                return Some(Close::FrameTimeout);
            }
        }
        if limits.idle_past(self.idle_ms(now_ms)) {
            return Some(Close::Idle);
        }
        None
    }

    /// The next moment [`Session::check`] may decide something, for a driver that sleeps.
    pub fn deadline(&self) -> Option<u64> {
        let limits = &self.limits;
        if !self.open {
            return None;
        }
        let mut next = self.last_progress.saturating_add(limits.idle_ms);
        if let Some(frame) = self.frame_deadline() {
            next = next.min(frame);
        }
        if !self.is_trusted() {
            next = next.min(self.opened_at.saturating_add(limits.handshake_ms));
        }
        Some(next)
    }

    /// When the partial frame must be complete: counted from its first byte, or from the moment
    /// the session was last ready to read again, whichever is later (a session busy with its own
    /// answers does not read, so the peer cannot be blamed for that time).
    fn frame_deadline(&self) -> Option<u64> {
        let since = self.frame_since?;
        if !self.wants_input() {
            return None;
        }
        Some(since.max(self.ready_since).saturating_add(self.limits.frame_ms))
    }

    /// Drops the peer for `why` (a verdict of [`Session::check`]): counts it in the device's
    /// statistics and closes the session. The driver ends the transport's side (a TCP reset).
    pub fn drop_peer<C: Context, S: Storage>(&mut self, device: &mut Device<'_, C, S>, why: Close) {
        Self::count_drop(device, why);
        self.close(device);
    }

    fn count_drop<C: Context, S: Storage>(device: &mut Device<'_, C, S>, why: Close) {
        event!(info, "session dropped: {}", why.text());
        device.stats.tally(Tally::PeerDropped {
            frame_timeout: why == Close::FrameTimeout,
            auth_failure: why.is_auth_failure(),
        });
    }
}

/// Whether a frame in the clear on a sealed session is a new peer's first request (see
/// [`Session::on_a_line`]).
#[cfg(feature = "secure")]
fn new_peer(header: &crate::wire::Header) -> bool {
    matches!(header.kind, Kind::Hello | Kind::Handshake) && !header.flags.contains(crate::wire::Flags::RESPONSE)
}

/// Bytes from the peer, as the driver hands them over.
enum Input<'d> {
    /// Read only.
    Shared(&'d [u8]),
    /// Writable: sealed frames are opened in place.
    Writable(&'d mut [u8]),
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Input::Shared(d) => d,
            Input::Writable(d) => d,
        }
    }
}

/// What one decoded frame or fault led to.
enum Answer {
    /// Nothing complete yet.
    Nothing,
    /// An answer of this many bytes is staged.
    Staged(usize),
    /// The bytes decoded to no frame; an error answer of this many bytes is staged.
    Fault(usize),
    /// An answer is staged, and the session ends once it has been handed over.
    #[cfg_attr(not(feature = "secure"), allow(dead_code))]
    Last(usize, Close),
    /// The session ends now, with nothing more sent.
    Close(Close),
}

/// Serves one request frame: the services answer it into `out`, sealed if the session is; the
/// first frame of a response stream within `stream_room` bytes.
fn request<C: Context + 'static, S: Storage>(
    frame: &Frame<'_>,
    conn: &mut Conn,
    guard: &mut Guard,
    out: &mut [u8],
    stream_room: usize,
    device: &mut Device<'_, C, S>,
    garbage: &mut usize,
) -> Answer {
    // Upload chunks would drown everything else at the info level. (Without the `log` feature
    // both arms compile to nothing, hence the allow.)
    let (kind, id, body) = (frame.kind(), frame.request_id(), frame.body.len());
    #[allow(clippy::if_same_then_else)]
    if kind == Kind::PutData {
        event!(debug, "request {:?} id {} ({} bytes)", kind, id, body);
    } else {
        event!(info, "request {:?} id {} ({} bytes)", kind, id, body);
    }
    *garbage = 0;
    let transport = guard.transport();
    let room = if crate::service::policy::rule(kind).streams {
        stream_room.min(out.len())
    } else {
        out.len()
    };
    match guard.build(&mut out[..room], |room| device.handle(conn, frame, transport, room)) {
        Some(len) => Answer::Staged(len),
        None => Answer::Close(Close::Refused),
    }
}

/// Answers bytes that decoded to no frame with an error, and counts them against the garbage
/// budget.
fn fault<C: Context + 'static, S: Storage>(
    e: DecodeError,
    garbage: &mut usize,
    guard: &mut Guard,
    out: &mut [u8],
    device: &mut Device<'_, C, S>,
) -> Answer {
    event!(info, "bad input: {}", e);
    device.stats.tally(Tally::DecodeFault);
    *garbage += match e {
        DecodeError::Garbage { skipped } | DecodeError::HeaderCrc { skipped } => skipped,
        // A frame with an intact header that decodes to nothing costs its header, so a peer
        // cannot draw unlimited error replies that way either (an oversized frame's skipped body
        // costs the peer its own bandwidth).
        DecodeError::TooLarge { .. } | DecodeError::UnsupportedVersion { .. } | DecodeError::PayloadCrc { .. } => {
            HEADER_LEN
        }
    };
    // On a sealed session the damaged frame's header is the outer one (`Sealed`, id 0), a kind no
    // inner frame may carry: the answer names no request, and the peer repeats what it is missing.
    let (kind, id) = match e.request() {
        Some((Kind::Sealed, _)) | None => (Kind::Unknown(0), 0),
        Some(request) => request,
    };
    match guard.build(out, |room| device.error(room, kind, id, e.code(), format_args!("{e}"))) {
        Some(len) => Answer::Fault(len),
        None => Answer::Close(Close::Refused),
    }
}

/// Runs the device's side of the handshake on a locked session: message 1 in the request's
/// body, message 2 in the response's. Success seals the session (and, on a line, keeps the
/// exchange in `flight` for a repeat); failure is answered `Unauthorized` and ends it.
#[cfg(feature = "secure")]
fn handshake<C: Context + 'static, S: Storage>(
    now_ms: u64,
    frame: &Frame<'_>,
    guard: &mut Guard,
    out: &mut [u8],
    device: &mut Device<'_, C, S>,
    flight: Option<&mut Option<Flight>>,
) -> Answer {
    use crate::codec::encode_raw;
    use crate::secure::{Error, MSG1_LEN, MSG2_LEN};
    use crate::wire::FrameSpec;

    let id = frame.request_id();
    let mut message2 = [0u8; MSG2_LEN];
    let result = match (crate::secure::message1(frame), device.lock_mut()) {
        (None, _) => Err(Error::Malformed),
        (Some(message1), Some(lock)) => {
            // The moment of arrival and the peer's fresh ephemeral key: entropy that costs nothing
            // (and cannot weaken the generator, whatever a peer puts in).
            let mut entropy = [0u8; 8 + MSG1_LEN];
            entropy[..8].copy_from_slice(&now_ms.to_le_bytes());
            let n = message1.len().min(MSG1_LEN);
            entropy[8..8 + n].copy_from_slice(&message1[..n]);
            lock.mix_entropy(&entropy);
            lock.respond(message1, &mut message2)
        }
        (Some(_), None) => Err(Error::State),
    };
    match result {
        Ok((n, channel)) => {
            event!(info, "handshake complete: session sealed");
            *guard = Guard::Sealed { channel, proven: false };
            device.count_handshake();
            if let (Some(slot), Ok(message1)) = (flight, frame.body.try_into()) {
                *slot = Some(Flight { message1, message2 });
            }
            let spec = FrameSpec::response(Kind::Handshake, id);
            match encode_raw(out, spec, &[], &message2[..n]) {
                Ok(len) => Answer::Staged(len),
                Err(_) => Answer::Close(Close::Refused),
            }
        }
        Err(e) => {
            event!(info, "handshake refused: {}", e);
            let detail = format_args!("handshake refused: wrong key or modified message");
            let len = device.error(out, Kind::Handshake, id, e.code(), detail);
            Answer::Last(len, Close::Handshake)
        }
    }
}

/// Answers a repeated message 1 with the message 2 of `flight` (see [`Session::on_a_line`]),
/// under the request id of the repeat.
#[cfg(feature = "secure")]
fn repeat(frame: &Frame<'_>, flight: &Flight, out: &mut [u8]) -> Answer {
    let spec = crate::wire::FrameSpec::response(Kind::Handshake, frame.request_id());
    match crate::codec::encode_raw(out, spec, &[], &flight.message2) {
        Ok(len) => Answer::Staged(len),
        Err(_) => Answer::Close(Close::Refused),
    }
}
