//! Secure sessions on the host: the client's side of the handshake, and a link that seals every
//! frame written to it and opens every frame read from it (docs/PROTOCOL.md §16).
//!
//! [`Sealed`] sits between a [`Client`](crate::Client) and its transport, so every request and
//! answer of the client is sealed without the client knowing: one place for the rule, on TCP and
//! serial alike.
//!
//! ```text
//! Client ──frames──▶ Sealed ──sealed frames──▶ TcpLink / SerialLink ──▶ device
//! ```

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use embedded_io_adapters::std::FromStd;
use rand_core::UnwrapErr;
use tether_core::codec::{encode_raw, Decoder, ReadError};
use tether_core::secure::{Channel, Handshake, Psk, COUNTER_LEN, MSG1_LEN, MSG2_LEN, SEALED_PREFIX, TAG_LEN};
use tether_core::wire::{ErrorCode, Flags, FrameSpec, HeaderView, Kind, HEADER_LEN};

use crate::client::MAX_FRAME;
use crate::error::{Cause, ClientError, Over, Result};

/// The request id of the handshake: the first request of a session.
const HANDSHAKE_ID: u32 = 1;

/// Reads a key file (64 hex digits and a newline, docs/PROTOCOL.md §16.2). Returns the key and,
/// when the file can be read by other users than its owner, a warning to show.
pub fn read_key_file(path: &Path) -> Result<(Psk, Option<String>)> {
    let shown = path.display();
    let text =
        std::fs::read(path).map_err(|e| ClientError::Local(format!("cannot read the key file {shown} ({e})")))?;
    let key = Psk::from_hex(&text).map_err(|e| ClientError::Local(format!("{shown} is not a key file: {e}")))?;
    Ok((key, loose_permissions(path)))
}

/// A warning when `path` is readable or writable by group or others (Unix only).
pub fn loose_permissions(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(format!(
                "the key file {} can be read by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    let _ = path;
    None
}

/// A fresh random key, from the operating system's CSPRNG.
pub fn generate_key() -> Psk {
    let mut bytes = [0u8; 32];
    rand_core::Rng::fill_bytes(&mut UnwrapErr(getrandom::SysRng), &mut bytes);
    let key = Psk::from_bytes(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    key
}

/// A transport whose frames are sealed: what the client writes is sealed frame by frame, what the
/// device sends is opened. A frame that fails to open ends the link with an error; frames
/// damaged on a lossy line (their CRCs fail) are dropped as the line would drop them.
pub struct Sealed<L: Read + Write> {
    link: FromStd<L>,
    channel: Channel,
    decoder: Box<Decoder<MAX_FRAME>>,
    /// The sealed frame being built: `SEALED_PREFIX` bytes of room for the outer header and
    /// counter, then the bytes of the frame the client is writing (and, rarely, the start of its
    /// next one), sealed in place once complete.
    outgoing: Vec<u8>,
    /// The length of the opened inner frame being read (in the decoder's buffer, after the
    /// sealed frame's header and counter), and how much of it was read.
    incoming_len: usize,
    read_pos: usize,
    peer: String,
    /// Set when a frame failed to open: the channel is closed for good.
    broken: bool,
    /// On a line, the message 2 the handshake took: the device sends it again for each repeat
    /// of message 1 that reached it before the first sealed frame, and such a copy is passed
    /// over, not taken for a frame that fails to open.
    message2: Option<[u8; MSG2_LEN]>,
}

impl<L: Read + Write> Sealed<L> {
    /// Runs the handshake with `key` over `link` and returns the sealed link.
    ///
    /// Fails with [`ClientError::Auth`] when the device refuses the key, has none, or answers
    /// with anything but a valid handshake message: never falls back to an unsealed session.
    pub fn handshake(link: L, key: &Psk, peer: &str) -> Result<Sealed<L>> {
        Opening::new(key)?.finish(link, peer)
    }
}

/// A handshake with its message 1 ready: made before connecting, so that the first bytes a device
/// gets on a new connection are the whole message 1 (a device under a flood of connections
/// evicts connections that have proven nothing, the oldest first: a client that computes while
/// connected spends that time at risk, see docs/PROTOCOL.md §13).
pub struct Opening {
    handshake: Handshake,
    frame: [u8; HEADER_LEN + MSG1_LEN],
    len: usize,
}

impl Opening {
    /// Draws the ephemeral key and writes message 1 for `key`.
    pub fn new(key: &Psk) -> Result<Opening> {
        let mut handshake = Handshake::initiator(key, &mut UnwrapErr(getrandom::SysRng));
        let mut message1 = [0u8; MSG1_LEN];
        handshake
            .write_message(&mut message1)
            .map_err(|e| ClientError::Auth(format!("handshake: {e}")))?;
        let mut frame = [0u8; HEADER_LEN + MSG1_LEN];
        let len = encode_raw(
            &mut frame,
            FrameSpec::request(Kind::Handshake, HANDSHAKE_ID),
            &[],
            &message1,
        )
        .map_err(|e| ClientError::Auth(format!("handshake: {e}")))?;
        Ok(Opening { handshake, frame, len })
    }

    /// Runs the rest of the handshake over `link`: see [`Sealed::handshake`].
    pub fn finish<L: Read + Write>(self, link: L, peer: &str) -> Result<Sealed<L>> {
        self.run(link, peer, None)
    }

    /// [`Opening::finish`] over a serial line, which may lose message 1 or message 2, or lead to a
    /// board that takes a while for its side: on silence, message 1 is sent again, the same bytes
    /// (the device answers a repeat with the same message 2, docs/PROTOCOL.md §17), first after
    /// `first`, then at doubling intervals, until a message 2 reads correctly or `within` has
    /// passed. A message 2 that does not read (the answer to another handshake, left on the line)
    /// is passed over; a device that refuses the key is final.
    pub fn finish_on_a_line<L: Read + Write>(
        self,
        link: L,
        peer: &str,
        first: Duration,
        within: Duration,
    ) -> Result<Sealed<L>> {
        self.run(link, peer, Some((first, within)))
    }

    fn run<L: Read + Write>(self, link: L, peer: &str, line: Option<(Duration, Duration)>) -> Result<Sealed<L>> {
        let Opening {
            handshake,
            frame,
            len: n,
        } = self;
        let mut link = FromStd::new(link);
        write_all(&mut link, &frame[..n], peer)?;
        let started = Instant::now();
        let (mut sent_at, mut wait) = (started, line.map_or(Duration::MAX, |(first, _)| first));
        // On a line, why the last answer was passed over: the error if no good one follows.
        let mut passed_over: Option<ClientError> = None;
        let mut decoder = Box::new(Decoder::<MAX_FRAME>::new());
        let (handshake, message2) = loop {
            if let Some((_, within)) = line {
                if started.elapsed() >= within {
                    let silence = io::Error::from(io::ErrorKind::TimedOut);
                    return Err(passed_over.unwrap_or_else(|| crate::client::stream_err(peer, &silence)));
                }
            }
            match decoder.read_frame(&mut link) {
                Ok(f) if f.kind() == Kind::Handshake && f.request_id() == HANDSHAKE_ID => {
                    match read_answer(&f, &handshake, peer) {
                        Ok(done) => break (done, f.body.try_into().unwrap_or([0; MSG2_LEN])),
                        Err(Failure::Damaged(e)) if line.is_some() => {
                            // Message 1 arrived damaged and the device took nothing from it: the
                            // same bytes again at once.
                            write_all(&mut link, &frame[..n], peer)?;
                            sent_at = Instant::now();
                            passed_over = Some(e);
                        }
                        Err(Failure::Unreadable(e)) if line.is_some() => passed_over = Some(e),
                        Err(Failure::Damaged(e) | Failure::Unreadable(e) | Failure::Refused(e)) => return Err(e),
                    }
                }
                Ok(f) => match crate::client::refusal(&f) {
                    // Every session is in use: the device says so and closes (not a key problem).
                    Some(refused) => return Err(refused),
                    // Line noise or a stale answer on a serial line: keep waiting for ours.
                    None => continue,
                },
                Err(ReadError::Decode(_)) => continue,
                // A quiet moment of a serial line: message 1 or message 2 may be lost, or the
                // board still at its side.
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    if sent_at.elapsed() >= wait {
                        write_all(&mut link, &frame[..n], peer)?;
                        sent_at = Instant::now();
                        wait = wait.saturating_mul(2);
                    }
                }
                // A device that refuses the key says so before it closes; one that closes without
                // a word dropped a connection that had proven nothing yet (PROTOCOL.md §13 rule 5:
                // a flood of other connections, or a deadline): a connection failure, worth a
                // new connection ([`crate::net::open`]).
                Err(ReadError::Eof | ReadError::UnexpectedEof) => {
                    return Err(ClientError::connection(
                        Over::Stream,
                        Cause::Closed,
                        format!("{peer} closed the connection before answering the handshake"),
                    ))
                }
                Err(ReadError::Io(e)) => {
                    // The answer passed over says more than the silence after it.
                    return Err(match passed_over {
                        Some(why) if e.kind() == io::ErrorKind::TimedOut => why,
                        _ => crate::client::stream_err(peer, &e),
                    });
                }
            }
        };
        let channel = handshake
            .into_channel()
            .map_err(|e| ClientError::Auth(format!("handshake: {e}")))?;
        Ok(Sealed {
            link,
            channel,
            decoder,
            outgoing: vec![0; SEALED_PREFIX],
            incoming_len: 0,
            read_pos: 0,
            peer: peer.to_string(),
            broken: false,
            message2: line.map(|_| message2),
        })
    }
}

/// Why the device's answer to message 1 did not complete the handshake.
enum Failure {
    /// The device found message 1 damaged: the link's doing.
    Damaged(ClientError),
    /// A message 2 that does not read: not the answer to this message 1, or not the device meant.
    Unreadable(ClientError),
    /// The device refused the key, or has none.
    Refused(ClientError),
}

/// Reads the device's answer to message 1 with a copy of `handshake` (a failed step ends a
/// handshake for good, and on a line the next answer may be the right one): the handshake done,
/// or why not.
fn read_answer(
    answer: &tether_core::wire::Frame<'_>,
    handshake: &Handshake,
    peer: &str,
) -> std::result::Result<Handshake, Failure> {
    if let Some(e) = answer.error() {
        // Message 1 left well-formed: a device that found it damaged (its CRC failed, or a
        // line cut it short) saw the link's doing, not a key (PROTOCOL.md §16.6), and a new
        // handshake may get through.
        if let Some(ErrorCode::BadCrc | ErrorCode::Malformed) = ErrorCode::from_u16(e.code) {
            return Err(Failure::Damaged(ClientError::Link(format!(
                "the link damaged the handshake on its way to {peer} (the device says: {})",
                e.message
            ))));
        }
        return Err(Failure::Refused(ClientError::Auth(match ErrorCode::from_u16(e.code) {
            Some(ErrorCode::UnknownKind) => format!(
                "{peer} has no key, so it cannot prove who it is: refusing to talk to it in the clear \
                 ({})",
                e.message
            ),
            _ => format!("{peer} refused the key: {}", e.message),
        })));
    }
    if !answer.flags().contains(Flags::RESPONSE) || !answer.meta.is_empty() {
        return Err(Failure::Unreadable(ClientError::Auth(format!(
            "{peer} sent a malformed handshake answer"
        ))));
    }
    let mut trial = handshake.clone();
    match trial.read_message(answer.body) {
        Ok(()) => Ok(trial),
        Err(e) => Err(Failure::Unreadable(ClientError::Auth(format!(
            "{peer} did not prove that it holds the key ({e}): it may not be the device you meant"
        )))),
    }
}

impl<L: Read + Write> Sealed<L> {
    /// The underlying transport, to look at.
    pub fn get_ref(&self) -> &L {
        self.link.inner()
    }

    /// The underlying transport.
    pub fn get_mut(&mut self) -> &mut L {
        self.link.inner_mut()
    }

    /// Whether an opened frame is still being read: a read returns its rest without the
    /// transport. (Bytes the transport itself holds are its own to tell; this link's decoder
    /// reads exactly what the frame it assembles needs, so it never holds a whole frame
    /// between reads.)
    pub fn has_opened_input(&self) -> bool {
        self.read_pos < self.incoming_len
    }

    /// Seals and sends every complete frame in `outgoing`, in place (no copy of the frame).
    fn send_complete(&mut self) -> io::Result<()> {
        while let Some(len) = frame_len(&self.outgoing[SEALED_PREFIX..]) {
            let end = SEALED_PREFIX + len;
            if self.outgoing.len() < end {
                break;
            }
            // The client writes frame by frame, so bytes of a next frame are rare: set them aside.
            let next = (self.outgoing.len() > end).then(|| self.outgoing.split_off(end));
            self.outgoing.resize(end + TAG_LEN, 0);
            let n = self
                .channel
                .seal_in_place(&mut self.outgoing, len)
                .map_err(|e| io::Error::other(format!("cannot seal a frame: {e}")))?;
            self.link.inner_mut().write_all(&self.outgoing[..n])?;
            self.outgoing.truncate(SEALED_PREFIX);
            if let Some(next) = next {
                self.outgoing.extend_from_slice(&next);
            }
        }
        Ok(())
    }

    /// Reads the next sealed frame from the device and opens it in the decoder's buffer, where
    /// [`Read`] then takes the inner frame from.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            match self.decoder.read_frame(&mut self.link) {
                Ok(_) => {}
                // Damage on a lossy line: the frame is gone, as the line's own framing would drop it.
                Err(ReadError::Decode(_)) => continue,
                Err(ReadError::Eof) => return Ok(false),
                Err(ReadError::UnexpectedEof) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(ReadError::Io(e)) => return Err(e),
            }
            let Some((header, bytes)) = self.decoder.last_frame_mut() else {
                continue;
            };
            if self.message2.is_some_and(|m2| is_message2(&header, bytes, &m2)) {
                continue;
            }
            match self.channel.open_decoded(header, bytes) {
                Ok(inner) => self.incoming_len = inner.header.frame_len() as usize,
                Err(e) => {
                    self.broken = true;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a frame from {} failed to open ({e}): the connection was tampered with",
                            self.peer
                        ),
                    ));
                }
            }
            self.read_pos = 0;
            return Ok(true);
        }
    }
}

/// Whether a frame (its header, and its whole bytes) is the handshake response carrying `m2`:
/// a repeat of the answer taken.
fn is_message2(header: &tether_core::wire::Header, frame: &[u8], m2: &[u8; MSG2_LEN]) -> bool {
    header.kind == Kind::Handshake
        && header.flags.contains(Flags::RESPONSE)
        && header.request_id == HANDSHAKE_ID
        && header.meta_len == 0
        && frame.get(HEADER_LEN..) == Some(&m2[..])
}

/// The whole length of the frame at the start of `bytes` (a frame this client encoded), once its
/// header is there.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    usize::try_from(HeaderView::new_checked(bytes)?.frame_len()).ok()
}

fn write_all<L: Write>(link: &mut FromStd<L>, bytes: &[u8], peer: &str) -> Result<()> {
    let w = link.inner_mut();
    w.write_all(bytes)
        .and_then(|()| w.flush())
        .map_err(|e| crate::client::stream_err(peer, &e))
}

impl<L: Read + Write> Read for Sealed<L> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the sealed session has ended",
            ));
        }
        if self.read_pos == self.incoming_len && !self.next_frame()? {
            return Ok(0);
        }
        let n = buf.len().min(self.incoming_len - self.read_pos);
        let Some(frame) = self.decoder.last_frame() else {
            return Err(io::Error::other("the opened frame is gone"));
        };
        let at = COUNTER_LEN + self.read_pos;
        buf[..n].copy_from_slice(&frame.body[at..at + n]);
        self.read_pos += n;
        Ok(n)
    }
}

impl<L: Read + Write> Write for Sealed<L> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the sealed session has ended",
            ));
        }
        self.outgoing.extend_from_slice(buf);
        self.send_complete()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_complete()?;
        self.link.inner_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that reads scripted bytes and swallows what is written.
    struct Script(io::Cursor<Vec<u8>>);
    impl io::Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl io::Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// docs/PROTOCOL.md §7, §13: a device with every session in use answers a new connection with
    /// the unasked `Busy` refusal (kind Hello, id 0) and closes it. The handshake reports the busy
    /// device, not a refused key.
    #[test]
    fn the_busy_refusal_during_the_handshake_is_reported_as_busy() {
        let info = tether_core::msg::ErrorInfo {
            code: ErrorCode::Busy as u16,
            message: "every session is in use; try again",
        };
        let mut busy = vec![0u8; 128];
        let n = tether_core::codec::encode(&mut busy, FrameSpec::error(Kind::Hello, 0), &info, &[]).unwrap();
        busy.truncate(n);
        let key = Psk::from_bytes([1; 32]);
        let e = Sealed::handshake(Script(io::Cursor::new(busy)), &key, "the device")
            .err()
            .expect("no session");
        assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
    }

    /// The device's answer to message 1, as an error frame of kind `Handshake` and its id.
    fn answered(code: ErrorCode) -> ClientError {
        let key = Psk::from_bytes([1; 32]);
        Sealed::handshake(Script(io::Cursor::new(refusal(code))), &key, "the device")
            .err()
            .expect("no session")
    }

    /// The device's error response `code` to message 1.
    fn refusal(code: ErrorCode) -> Vec<u8> {
        let info = tether_core::msg::ErrorInfo {
            code: code as u16,
            message: code.text(),
        };
        let mut frame = vec![0u8; 128];
        let spec = FrameSpec::error(Kind::Handshake, HANDSHAKE_ID);
        let n = tether_core::codec::encode(&mut frame, spec, &info, &[]).unwrap();
        frame.truncate(n);
        frame
    }

    /// A board on a serial line that is slow to answer (the line stays quiet `quiet` times), then
    /// answers the first message 1 it got, after a message 2 of another handshake left on the
    /// line, and once more for a repeat that reached it (docs/PROTOCOL.md §17); then a sealed
    /// answer. With `damaged`, it first answers that message 1 arrived cut short.
    struct SlowBoard {
        key: Psk,
        lock: tether_core::secure::Lock,
        quiet: usize,
        damaged: bool,
        answered: bool,
        written: Vec<u8>,
        answer: io::Cursor<Vec<u8>>,
    }

    impl SlowBoard {
        fn new(key: &Psk, quiet: usize) -> SlowBoard {
            SlowBoard {
                key: key.clone(),
                lock: tether_core::secure::Lock::new(key.clone(), [3; 32]),
                quiet,
                damaged: false,
                answered: false,
                written: Vec::new(),
                answer: io::Cursor::new(Vec::new()),
            }
        }

        /// The answer to message 1 `m1`: its handshake response and the channel.
        fn respond(lock: &mut tether_core::secure::Lock, m1: &[u8]) -> (Vec<u8>, Channel) {
            let mut m2 = [0u8; MSG2_LEN];
            let (n, channel) = lock.respond(m1, &mut m2).unwrap();
            let mut frame = vec![0u8; HEADER_LEN + MSG2_LEN];
            encode_raw(
                &mut frame,
                FrameSpec::response(Kind::Handshake, HANDSHAKE_ID),
                &[],
                &m2[..n],
            )
            .unwrap();
            (frame, channel)
        }
    }

    impl io::Read for SlowBoard {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.quiet > 0 {
                self.quiet -= 1;
                return Err(io::Error::new(io::ErrorKind::Interrupted, crate::serial::QUIET));
            }
            if self.answer.position() < self.answer.get_ref().len() as u64 || self.answered {
                return self.answer.read(buf);
            }
            if std::mem::take(&mut self.damaged) {
                self.answer = io::Cursor::new(refusal(ErrorCode::Malformed));
            } else {
                self.answered = true;
                let m1 = &self.written[HEADER_LEN..HEADER_LEN + MSG1_LEN];
                // An earlier run's handshake, answered after that run gave up.
                let other = Opening::new(&self.key).unwrap();
                let (stale, _) = Self::respond(&mut self.lock, &other.frame[HEADER_LEN..other.len]);
                let (m2, mut channel) = Self::respond(&mut self.lock, m1);
                let mut inner = [0u8; HEADER_LEN + 4];
                encode_raw(&mut inner, FrameSpec::response(Kind::Echo, 2), &[], b"late").unwrap();
                let mut sealed = [0u8; 128];
                let n = channel.seal(&inner, &mut sealed).unwrap();
                let answer = [&stale[..], &m2, &m2, &sealed[..n]].concat();
                self.answer = io::Cursor::new(answer);
            }
            self.answer.read(buf)
        }
    }

    impl io::Write for SlowBoard {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn on_a_quiet_line_the_same_message_1_is_repeated_and_a_late_message_2_opens_the_session() {
        let key = Psk::from_bytes([7; 32]);
        let opening = Opening::new(&key).unwrap();
        let m1 = opening.frame[..opening.len].to_vec();
        let board = SlowBoard::new(&key, 3);
        let mut sealed = opening
            .finish_on_a_line(board, "the board", Duration::ZERO, Duration::from_secs(10))
            .expect("the late message 2 read, the stale one passed over");
        let sent = &sealed.get_ref().written;
        assert!(sent.len() >= 2 * m1.len(), "message 1 repeated on silence");
        assert!(sent.chunks(m1.len()).all(|c| c == m1), "the same bytes every time");
        // The repeat's copy of message 2 is passed over, not taken for a frame that fails to open.
        let mut inner = [0u8; HEADER_LEN + 4];
        sealed
            .read_exact(&mut inner)
            .expect("the sealed answer after the repeated message 2");
        assert_eq!(&inner[HEADER_LEN..], b"late");
    }

    #[test]
    fn on_a_line_a_message_1_the_device_found_damaged_is_sent_again_at_once() {
        let key = Psk::from_bytes([7; 32]);
        let opening = Opening::new(&key).unwrap();
        let m1 = opening.frame[..opening.len].to_vec();
        let mut board = SlowBoard::new(&key, 0);
        board.damaged = true;
        let sealed = opening
            .finish_on_a_line(board, "the board", Duration::from_secs(10), Duration::from_secs(10))
            .expect("the second copy answered");
        assert_eq!(
            sealed.get_ref().written,
            [&m1[..], &m1].concat(),
            "the same bytes, twice"
        );
    }

    #[test]
    fn a_line_that_stays_quiet_times_out_and_a_refused_key_is_final() {
        let key = Psk::from_bytes([7; 32]);
        let board = SlowBoard::new(&key, usize::MAX);
        let e = Opening::new(&key)
            .unwrap()
            .finish_on_a_line(board, "the board", Duration::ZERO, Duration::from_millis(50))
            .err()
            .expect("no answer");
        assert!(e.is_timeout(), "{e:?}");
        // A refusal is no stale answer: not passed over (the script would end next, a closed
        // connection).
        let e = Opening::new(&key)
            .unwrap()
            .finish_on_a_line(
                Script(io::Cursor::new(refusal(ErrorCode::Unauthorized))),
                "the board",
                Duration::ZERO,
                Duration::from_secs(10),
            )
            .err()
            .expect("refused");
        assert!(matches!(e, ClientError::Auth(_)), "{e:?}");
    }

    /// PROTOCOL.md §16.6: a message 1 damaged on its way (`BadCrc`; on a line also cut short,
    /// `Malformed`) is the link's doing, which a new handshake may get past; only `Unauthorized`
    /// says the key is wrong.
    #[test]
    fn a_damaged_message_1_is_link_damage_and_a_wrong_key_is_not() {
        for code in [ErrorCode::BadCrc, ErrorCode::Malformed] {
            let e = answered(code);
            assert!(matches!(e, ClientError::Link(_)), "{code:?}: {e:?}");
            assert!(e.is_link_damage());
        }
        assert!(matches!(answered(ErrorCode::Unauthorized), ClientError::Auth(_)));
    }
}
