//! Tether over a serial line: the [`Serial`] driver binds one [`Session`] to a UART.
//!
//! A serial link is one session. The bytes travel in the COBS packets of [`framing`] (one frame,
//! one packet, delimited by zero bytes), which make a lost, flipped or inserted byte cost at most
//! the frame it hits and the one after it; every session rule (staging, streams, upload
//! resumption, garbage budget, frame deadline, idle timeout) is the engine's, so this driver only
//! moves bytes between the UART, the framing and the engine.
//!
//! Two front ends share all of that state and logic:
//!
//! - [`Serial::poll`] over `embedded-io`'s `Read + ReadReady + Write + WriteReady`: it never
//!   blocks, so it runs from a bare-metal main loop beside anything else:
//!
//!   ```text
//!   let mut serial = Serial::<4096>::new(Limits::default());
//!   loop {
//!       serial.poll(now_ms(), &mut uart, &mut device)?;
//!       // sleep until the UART interrupts or serial.deadline()
//!   }
//!   ```
//!
//! - [`Serial::serve_async`] over `embedded-io-async`'s `Read + Write`, for embassy: it writes what
//!   the session has to say, then awaits the UART's next bytes. It returns `false` when nothing can
//!   happen until time passes (a command that waits, a deadline): await a timer then.
//!
//! Memory: the session's `2 × N`, the unframer's `N`, and about 1 KiB of encoder and I/O buffers.

pub mod framing;

use crate::service::files::Storage;
use crate::service::{Context, Device};
use crate::session::{Limits, Session};
use framing::{Encoder, Unframer};

/// Bytes taken from the UART per read.
const INPUT: usize = 64;
/// Bytes taken from the engine per transmit call; longer frames come in pieces.
const RAW: usize = 256;
/// Rounds of transmit-then-receive per poll, so that one poll cannot run for long.
const ROUNDS: usize = 32;

/// Whether a packet starts with the intact header of a request (a host's, not line noise).
fn is_request(bytes: &[u8]) -> bool {
    let head = bytes
        .get(..crate::wire::HEADER_LEN)
        .and_then(|h| crate::wire::header::check(h).ok().flatten());
    head.is_some_and(|h| !h.flags.contains(crate::wire::Flags::RESPONSE))
}

/// The serial driver: one session, its framing, and the buffers between them and the UART.
///
/// `N` is the largest frame in either direction, as for [`Session`].
pub struct Serial<const N: usize> {
    session: Session<N>,
    rx: Unframer<N>,
    /// Bytes of the complete packet in `rx` already given to the engine.
    fed: usize,
    input: [u8; INPUT],
    in_pos: usize,
    in_len: usize,
    /// Engine output not yet taken by the encoder.
    raw: [u8; RAW],
    raw_pos: usize,
    raw_len: usize,
    tx: Encoder,
}

impl<const N: usize> Serial<N> {
    /// A driver whose session follows `limits`. The session opens on the first poll.
    pub const fn new(limits: Limits) -> Self {
        Serial {
            session: Session::on_a_line(limits),
            rx: Unframer::new(),
            fed: 0,
            input: [0; INPUT],
            in_pos: 0,
            in_len: 0,
            raw: [0; RAW],
            raw_pos: 0,
            raw_len: 0,
            tx: Encoder::new(),
        }
    }

    /// The session engine (its state, for status displays and tests).
    pub fn session(&self) -> &Session<N> {
        &self.session
    }

    /// Offers an event to the line's session (sent with the next poll if the peer subscribed and
    /// nothing else is waiting to go out); returns whether it was taken. Give it the sequence
    /// number the network server gave the same event
    /// ([`Server::last_event_seq`](crate::server::Server::last_event_seq)), or
    /// [`Device::next_event_seq`] on a device without one.
    pub fn push_event<C: Context, S: Storage>(
        &mut self,
        now_ms: u64,
        topic: &str,
        seq: u32,
        data: &[u8],
        device: &mut Device<'_, C, S>,
    ) -> bool {
        self.session.push_event(now_ms, topic, seq, data, device)
    }

    /// The rules the session enforces.
    pub fn limits(&self) -> &Limits {
        self.session.limits()
    }

    /// The next moment a poll may decide something on its own (a deadline), for a loop that
    /// sleeps. Bytes from the UART or a waiting command's progress also need a poll.
    pub fn deadline(&self) -> Option<u64> {
        self.session.deadline()
    }

    /// Serves the line once without blocking: writes what the UART has room for, reads what it
    /// has, hands complete packets to the engine and applies the session's rules. Returns whether
    /// anything happened.
    pub fn poll<U, C, S>(&mut self, now_ms: u64, uart: &mut U, device: &mut Device<'_, C, S>) -> Result<bool, U::Error>
    where
        U: embedded_io::Read + embedded_io::ReadReady + embedded_io::Write + embedded_io::WriteReady,
        C: Context + 'static,
        S: Storage,
    {
        self.open(now_ms, device);
        let mut progress = false;
        for _ in 0..ROUNDS {
            let mut moved = false;
            while uart.write_ready()? {
                let n = {
                    let out = self.outgoing(now_ms, device);
                    if out.is_empty() {
                        break;
                    }
                    uart.write(out)?
                };
                if n == 0 {
                    break;
                }
                self.tx.advance(n);
                moved = true;
            }
            moved |= self.digest(now_ms, device);
            if self.in_pos == self.in_len && uart.read_ready()? {
                self.in_len = uart.read(&mut self.input)?;
                self.in_pos = 0;
                moved |= self.in_len > 0;
                moved |= self.digest(now_ms, device);
            }
            if !moved {
                break;
            }
            progress = true;
        }
        progress |= self.enforce(now_ms, device);
        Ok(progress)
    }

    /// Serves the line once on an async UART: writes everything the session has to say now, then,
    /// if the session reads, awaits the next bytes and hands them on. `clock` gives the time in
    /// milliseconds (it is asked again after every await).
    ///
    /// Returns whether anything happened; `false` means nothing can until time passes (a command
    /// that waits for its output): await a short timer, or [`Serial::deadline`], before the next
    /// call. Cancelling it (e.g. with a timeout around the read) loses no byte: bytes are only
    /// taken from a read that completed, and an interrupted write is resumed where it stood.
    pub async fn serve_async<U, C, S>(
        &mut self,
        clock: impl Fn() -> u64,
        uart: &mut U,
        device: &mut Device<'_, C, S>,
    ) -> Result<bool, U::Error>
    where
        U: embedded_io_async::Read + embedded_io_async::Write,
        C: Context + 'static,
        S: Storage,
    {
        self.open(clock(), device);
        let mut progress = false;
        loop {
            let n = {
                let out = self.outgoing(clock(), device);
                if out.is_empty() {
                    break;
                }
                uart.write(out).await?
            };
            if n == 0 {
                break;
            }
            self.tx.advance(n);
            progress = true;
        }
        progress |= self.digest(clock(), device);
        progress |= self.enforce(clock(), device);
        if !progress && self.in_pos == self.in_len && self.session.wants_input() {
            self.in_len = uart.read(&mut self.input).await?;
            self.in_pos = 0;
            progress |= self.in_len > 0;
            progress |= self.digest(clock(), device);
        }
        Ok(progress)
    }

    fn open<C: Context, S: Storage>(&mut self, now_ms: u64, device: &mut Device<'_, C, S>) {
        if !self.session.is_open() {
            device.limit_max_frame(N);
            self.session.open(now_ms, device);
        }
    }

    /// The encoded bytes to write next; empty when the session has nothing to say now.
    fn outgoing<C: Context + 'static, S: Storage>(&mut self, now_ms: u64, device: &mut Device<'_, C, S>) -> &[u8] {
        while self.tx.pending().is_empty() {
            if self.raw_pos == self.raw_len {
                self.raw_pos = 0;
                self.raw_len = self.session.transmit(now_ms, &mut self.raw, device);
                if self.raw_len == 0 {
                    break;
                }
            }
            self.raw_pos += self.tx.feed(&self.raw[self.raw_pos..self.raw_len]);
        }
        self.tx.pending()
    }

    /// Moves input bytes through the unframer into the engine as far as the engine takes them.
    fn digest<C: Context + 'static, S: Storage>(&mut self, now_ms: u64, device: &mut Device<'_, C, S>) -> bool {
        let mut moved = false;
        loop {
            if let Some(packet) = self.rx.packet() {
                // A packet longer than the frame its intact header announces (a frame and more, or
                // two frames) is not served at all: it goes whole to the delimiter.
                let longer = longer_than_its_frame(packet.bytes, packet.lost);
                let end = if longer.is_some() { 0 } else { packet.bytes.len() };
                if self.fed == 0 && end > 0 && is_request(packet.bytes) && self.session.supersede(device) {
                    // The stream's frame on its way out is cut short: the peer drops it.
                    self.raw_pos = self.raw_len;
                    self.tx.cut();
                }
                if self.fed < end {
                    let n = self.session.receive(now_ms, &packet.bytes[self.fed..end], device);
                    if n == 0 {
                        return moved;
                    }
                    self.fed += n;
                } else {
                    // The packet's end is the frame's end: whatever is incomplete is dropped here.
                    let lost = packet.lost + (packet.bytes.len() - end);
                    self.session.cut_packet(lost, longer, device);
                    self.rx.next();
                    self.fed = 0;
                }
                moved = true;
                continue;
            }
            if self.in_pos == self.in_len {
                return moved;
            }
            self.in_pos += self.rx.push(&self.input[self.in_pos..self.in_len]);
            moved = true;
        }
    }

    /// Applies the session's rules; a session the engine drops is closed (an upload suspended,
    /// a stream ended, a frame being sent cut off) and opened afresh, since the line stays.
    fn enforce<C: Context, S: Storage>(&mut self, now_ms: u64, device: &mut Device<'_, C, S>) -> bool {
        let Some(why) = self.session.check(now_ms) else {
            return false;
        };
        if why.is_explained() && (self.raw_pos < self.raw_len || !self.tx.is_idle()) {
            // The refusal is still on its way out: the peer should read why (a line always
            // drains, so this waits at most one frame's time on the wire).
            return false;
        }
        self.session.drop_peer(device, why);
        self.raw_pos = self.raw_len;
        self.tx.cut();
        self.session.open(now_ms, device);
        true
    }
}

/// The kind and request id of the frame a packet starts with, if its header is intact and
/// announces fewer bytes than the packet holds (`lost` of them beyond the receiver's buffer).
fn longer_than_its_frame(bytes: &[u8], lost: usize) -> Option<(crate::wire::Kind, u32)> {
    let header = crate::wire::header::check(bytes).ok()??;
    let len = bytes.len().saturating_add(lost) as u64;
    (header.frame_len() < len).then_some((header.kind, header.request_id))
}
