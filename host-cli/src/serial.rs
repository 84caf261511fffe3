//! Tether over a serial line on the PC: `--to serial:/dev/ttyUSB0[@BAUD]`.
//!
//! [`SerialLink`] is a transport wrapper: [`crate::Client`] writes and reads plain Tether frames,
//! and the link carries them as the COBS packets of `tether_core::serial::framing` (one frame per
//! packet). It hands the client only packets that hold exactly one intact frame: a packet
//! damaged on the line is dropped here, and the client notices the missing answer (a later
//! answer arrives, or the read times out) and repeats or resumes.
//!
//! Serial ports are opened with `serial2`: it depends on nothing but `libc` (no libudev, unlike
//! `serialport`'s default features), sets any baud rate on Linux (termios2), and has read and
//! write timeouts and input discarding on Linux, macOS and Windows.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_io_adapters::std::FromStd;
use tether_core::codec::parse_frame;
use tether_core::serial::framing::{encode_packet, max_packet_len, Encoder, Unframer, DELIMITER};
use tether_core::wire::{FrameSpec, Kind};

use crate::client::{Client, MAX_FRAME};
use crate::error::{Cause, ClientError, Over, Result};

/// The baud rate when `--to serial:PATH` names none.
pub const DEFAULT_BAUD: u32 = 115_200;

/// A serial address: the port and its baud rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialAddr {
    /// The port, e.g. `/dev/ttyUSB0`, a pty path, or `COM3`.
    pub path: String,
    /// The line rate.
    pub baud: u32,
}

impl std::fmt::Display for SerialAddr {
    /// `serial:PATH@BAUD`, as `--to` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "serial:{}@{}", self.path, self.baud)
    }
}

/// Parses `serial:PATH[@BAUD]`; `None` if `to` is not a serial address.
pub fn parse_addr(to: &str) -> Option<std::result::Result<SerialAddr, String>> {
    let rest = to.strip_prefix("serial:")?;
    let (path, baud) = match rest.rsplit_once('@') {
        Some((p, b)) => match b.parse::<u32>() {
            Ok(b) if b > 0 => (p, b),
            _ => return Some(Err(format!("`{b}` is not a baud rate (serial:PATH[@BAUD])"))),
        },
        None => (rest, DEFAULT_BAUD),
    };
    if path.is_empty() {
        return Some(Err("serial: needs a port, e.g. serial:/dev/ttyUSB0@115200".into()));
    }
    Some(Ok(SerialAddr {
        path: path.to_string(),
        baud,
    }))
}

/// Frames over a byte stream as COBS packets; see the module documentation.
pub struct SerialLink<P> {
    port: P,
    encoder: Encoder,
    out: Vec<u8>,
    unframer: Box<Unframer<MAX_FRAME>>,
    input: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    /// The intact frame being handed to the reader, and how far.
    frame: Vec<u8>,
    frame_pos: usize,
    /// Packets dropped as damaged, shared with whoever watches the line (see
    /// [`SerialLink::damage_counter`]).
    dropped: Arc<AtomicU64>,
    /// How long the line may stay quiet before a read fails with `TimedOut`; zero: the port's
    /// own read timeout is the whole wait (see [`SerialLink::set_patience`]).
    patience: Duration,
    /// The port's own read timeout: how long a quiet moment is (zero: not set).
    quiet: Duration,
    /// When the read waiting now began, while the line is quiet.
    quiet_since: Option<Instant>,
}

/// The message of the `Interrupted` error a read returns each time the line stayed quiet for
/// the port's read timeout (see [`SerialLink::set_patience`]).
pub const QUIET: &str = "the line is quiet";

impl<P: Read + Write> SerialLink<P> {
    /// A link over an open port.
    pub fn new(port: P) -> Self {
        SerialLink {
            port,
            encoder: Encoder::new(),
            out: Vec::new(),
            unframer: Box::new(Unframer::new()),
            input: vec![0; 64 * 1024],
            in_pos: 0,
            in_len: 0,
            frame: Vec::new(),
            frame_pos: 0,
            dropped: Arc::new(AtomicU64::new(0)),
            patience: Duration::ZERO,
            quiet: Duration::ZERO,
            quiet_since: None,
        }
    }

    /// Waits up to `patience` in all for the line to speak, in steps of the port's own read
    /// timeout. After each quiet step the link sends an empty packet (a lone delimiter, which
    /// means nothing to the device, docs/PROTOCOL.md §17) — a packet of ours whose closing
    /// delimiter the line lost waits for the next zero, and this is it — and the read fails with
    /// [`io::ErrorKind::Interrupted`] ([`QUIET`]), so that the client can decide what the
    /// silence means (a lost request, or a device that takes its time) and read again. Once
    /// `patience` has passed without a byte, the read fails with `TimedOut`.
    pub fn set_patience(&mut self, patience: Duration) {
        self.patience = patience;
    }

    /// Packets dropped as damaged so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The count of packets dropped as damaged, for a client that tells a line that delivers
    /// nothing from one that delivers only damaged frames ([`crate::Client::watching_damage`]).
    pub fn damage_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// The port (to change its timeouts).
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
    }

    /// The port, to look at (e.g. to wait until it is readable).
    pub fn port(&self) -> &P {
        &self.port
    }

    /// Whether bytes read from the port wait here for a read: the rest of a frame being handed
    /// over, or line bytes not yet unframed (the next packets, read from the port with an
    /// earlier one). A read then returns without the port; waiting for the port to be readable
    /// would wait for the device to send more. (The unframer holds at most the start of a
    /// packet between reads, which only the port can complete.)
    pub fn has_buffered_input(&self) -> bool {
        self.frame_pos < self.frame.len() || self.in_pos < self.in_len
    }
}

impl<P: Read + Write> Write for SerialLink<P> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        loop {
            let pending = self.encoder.pending();
            self.out.extend_from_slice(pending);
            let n = pending.len();
            self.encoder.advance(n);
            if rest.is_empty() {
                break;
            }
            let used = self.encoder.feed(rest);
            rest = &rest[used..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut at = 0;
        while at < self.out.len() {
            match restarting(|| self.port.write(&self.out[at..]))? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the serial port took no bytes",
                    ))
                }
                n => at += n,
            }
        }
        self.out.clear();
        restarting(|| self.port.flush())
    }
}

impl<P: Read + Write> Read for SerialLink<P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.frame_pos == self.frame.len() {
            if let Some(p) = self.unframer.packet() {
                // Exactly one intact frame (docs/PROTOCOL.md §17): not a frame and zeros, not two.
                let whole = p.lost == 0 && parse_frame(p.bytes, MAX_FRAME).is_ok();
                if whole {
                    self.frame.clear();
                    self.frame.extend_from_slice(p.bytes);
                    self.frame_pos = 0;
                } else {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.unframer.next();
                continue;
            }
            if self.in_pos == self.in_len {
                let since = *self.quiet_since.get_or_insert_with(Instant::now);
                match restarting(|| self.port.read(&mut self.input)) {
                    Ok(n) => {
                        self.quiet_since = None;
                        (self.in_pos, self.in_len) = (0, n);
                        if n == 0 {
                            return Ok(0);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut && since.elapsed() < self.patience => {
                        self.port.write_all(&[DELIMITER])?;
                        self.port.flush()?;
                        return Err(io::Error::new(io::ErrorKind::Interrupted, QUIET));
                    }
                    Err(e) => {
                        self.quiet_since = None;
                        return Err(e);
                    }
                }
            }
            self.in_pos += self.unframer.push(&self.input[self.in_pos..self.in_len]);
        }
        let n = buf.len().min(self.frame.len() - self.frame_pos);
        buf[..n].copy_from_slice(&self.frame[self.frame_pos..self.frame_pos + n]);
        self.frame_pos += n;
        Ok(n)
    }
}

/// Repeats a call a signal interrupted: Ctrl-C has its own handler, which reports the interrupt
/// and exits; the read it interrupted is no failure of the line.
fn restarting<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The port of the serial line this process opened last (a second handle to it), for
/// [`abandon`].
static LAST_LINE: std::sync::Mutex<Option<serial2::SerialPort>> = std::sync::Mutex::new(None);

/// Tells the device on the serial line this process opened last to stop what it streams to this
/// process (a download, a command's output): a `Hello` with request id 0, which supersedes a
/// stream on a line (docs/PROTOCOL.md §17.2) and whose answer the next run skips. On a sealed
/// session it starts the session over, which ends the stream as well. For a Ctrl-C handler:
/// it takes no lock another thread may hold for long, and ignores every error.
pub fn abandon() {
    let Ok(mut guard) = LAST_LINE.try_lock() else { return };
    let Some(port) = guard.as_mut() else { return };
    let mut frame = [0u8; tether_core::wire::HEADER_LEN];
    let Ok(n) = tether_core::codec::encode_raw(&mut frame, FrameSpec::request(Kind::Hello, 0), &[], &[]) else {
        return;
    };
    let mut packet = [0u8; max_packet_len(tether_core::wire::HEADER_LEN)];
    if let Some(k) = encode_packet(&frame[..n], &mut packet) {
        let _ = port.write_all(&packet[..k]);
        let _ = port.flush();
    }
}

/// A client over a serial port.
pub type SerialClient = Client<FromStd<SerialLink<serial2::SerialPort>>>;

/// How long a line may stay quiet before a reader asks why: four of the largest frames a device
/// streams on a line (docs/PROTOCOL.md §17.2) at `baud`, and at least a quarter of a second.
pub fn quiet_after(baud: u32) -> Duration {
    let frame = tether_core::session::LINE_STREAM_FRAME as f64 * 1.01 + 8.0;
    let line = Duration::from_secs_f64(4.0 * frame * 10.0 / f64::from(baud.max(1)));
    line.max(Duration::from_millis(250))
}

impl SerialLink<serial2::SerialPort> {
    /// Waits up to `timeout` for the line in all, in steps of [`quiet_after`] the baud rate (see
    /// [`SerialLink::set_patience`]).
    pub fn set_timeout(&mut self, timeout: Duration, baud: u32) -> io::Result<()> {
        self.quiet = quiet_after(baud);
        self.set_read_timeout(timeout)
    }

    /// Waits up to `timeout` for the line from now on, in the quiet steps [`set_timeout`]
    /// chose.
    ///
    /// [`set_timeout`]: SerialLink::set_timeout
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let step = if self.quiet.is_zero() {
            timeout
        } else {
            self.quiet.min(timeout)
        };
        self.port.set_read_timeout(step)?;
        self.set_patience(timeout);
        Ok(())
    }
}

/// Opens the port of `addr` with `timeout` for every read (in all: see
/// [`SerialLink::set_patience`]) and write. Bytes already waiting in its input (the tail of an
/// earlier conversation) or still unsent are discarded.
pub fn link(addr: &SerialAddr, timeout: Duration) -> Result<SerialLink<serial2::SerialPort>> {
    let fail = |e: io::Error| {
        ClientError::connection(
            Over::Stream,
            Cause::Unreachable,
            format!("cannot open serial port {}: {e}", addr.path),
        )
    };
    let mut port = serial2::SerialPort::open(&addr.path, addr.baud).map_err(fail)?;
    port.set_write_timeout(timeout).map_err(fail)?;
    // Unsent bytes of an earlier attempt (a window of chunks) would only delay this one.
    port.discard_buffers().map_err(fail)?;
    if let (Ok(handle), Ok(mut last)) = (port.try_clone(), LAST_LINE.lock()) {
        *last = Some(handle);
    }
    let mut link = SerialLink::new(port);
    link.set_timeout(timeout, addr.baud).map_err(fail)?;
    Ok(link)
}

/// A client over the port of `addr`; it knows its link loses frames (see [`Client::lossy`]).
pub fn open(addr: &SerialAddr, timeout: Duration) -> Result<SerialClient> {
    let link = link(addr, timeout)?;
    let damage = link.damage_counter();
    Ok(Client::with_peer(FromStd::new(link), addr.to_string())
        .on_lossy_link()
        .watching_damage(damage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::codec::{encode_raw, parse_datagram};

    /// A port that reads scripted line bytes and records what is written.
    struct Script {
        input: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }
    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame(id: u32, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + body.len()];
        let n = encode_raw(&mut f, FrameSpec::response(Kind::Echo, id), &[], body).unwrap();
        f.truncate(n);
        f
    }

    fn packet(f: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; max_packet_len(f.len())];
        let n = encode_packet(f, &mut p).unwrap();
        p.truncate(n);
        p
    }

    #[test]
    fn only_intact_frames_reach_the_reader() {
        let (a, b, c) = (frame(1, b"first"), frame(2, b"second"), frame(3, b"third"));
        let mut line = packet(&a);
        let mut damaged = packet(&b);
        damaged[10] ^= 0x04; // a flipped bit: the frame's CRC fails
        line.extend(damaged);
        line.extend(packet(&b)[..20].iter().copied()); // cut short: the next packet's 00 ends it
        line.extend(packet(&[&b[..], &[0, 0]].concat())); // longer than its frame: zeros after it
        line.extend(packet(&[&b[..], &c[..]].concat())); // and two frames in one packet
        line.extend(packet(&c));
        let mut link = SerialLink::new(Script {
            input: io::Cursor::new(line),
            written: Vec::new(),
        });
        let mut got = Vec::new();
        link.read_to_end(&mut got).unwrap();
        assert_eq!(got, [a, c].concat());
        assert_eq!(link.dropped(), 4);
    }

    #[test]
    fn input_read_with_an_earlier_packet_is_reported_as_buffered() {
        let (a, b) = (frame(1, b"first"), frame(2, b"second"));
        // Both packets arrive in one read of the port.
        let mut link = SerialLink::new(Script {
            input: io::Cursor::new([packet(&a), packet(&b)].concat()),
            written: Vec::new(),
        });
        assert!(!link.has_buffered_input(), "nothing read yet");
        let mut got = vec![0u8; a.len() - 4];
        link.read_exact(&mut got).unwrap();
        assert!(link.has_buffered_input(), "the rest of the first frame");
        let mut got = vec![0u8; 4];
        link.read_exact(&mut got).unwrap();
        assert!(link.has_buffered_input(), "the second packet, read with the first");
        let mut got = vec![0u8; b.len()];
        link.read_exact(&mut got).unwrap();
        assert_eq!(got, b);
        assert!(!link.has_buffered_input(), "all of it read");
    }

    /// A device on a line that loses the answers whose turn is in `lose` (0 = the first answer).
    struct LossyEcho {
        unframer: Box<Unframer<4096>>,
        answers: std::collections::VecDeque<u8>,
        turn: usize,
        lose: Vec<usize>,
        requests: Vec<u32>,
    }
    impl Write for LossyEcho {
        fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
            let n = buf.len();
            while !buf.is_empty() {
                let k = self.unframer.push(buf);
                buf = &buf[k..];
                if let Some(p) = self.unframer.packet() {
                    let req = parse_datagram(p.bytes, 4096).expect("the host sends intact frames");
                    let (id, body) = (req.request_id(), req.body.to_vec());
                    self.requests.push(id);
                    if !self.lose.contains(&self.turn) {
                        self.answers.extend(packet(&frame(id, &body)));
                    }
                    self.turn += 1;
                    self.unframer.next();
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Read for LossyEcho {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.answers.is_empty() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
            }
            let n = buf.len().min(self.answers.len());
            for (slot, b) in buf.iter_mut().zip(self.answers.drain(..n)) {
                *slot = b;
            }
            Ok(n)
        }
    }

    fn lossy_client(lose: Vec<usize>) -> Client<FromStd<SerialLink<LossyEcho>>> {
        Client::lossy(FromStd::new(SerialLink::new(LossyEcho {
            unframer: Box::new(Unframer::new()),
            answers: Default::default(),
            turn: 0,
            lose,
            requests: Vec::new(),
        })))
    }

    #[test]
    fn a_lost_answer_to_an_idempotent_request_is_asked_again() {
        let mut c = lossy_client(vec![0, 1]);
        assert_eq!(c.echo(b"ping", false).unwrap(), b"ping");
        let dev = c.into_inner().into_inner().port;
        assert_eq!(dev.requests.len(), 3, "sent three times, answered the third");
        // Lossy ids come from one counter per process (other tests take ids from it at the same
        // time), so each repeat has a new, later id, not necessarily the very next one.
        assert!(
            dev.requests
                .windows(2)
                .all(|w| (1..1 << 31).contains(&w[1].wrapping_sub(w[0]))),
            "a new, later id each time: {:?}",
            dev.requests
        );
    }

    #[test]
    fn a_request_that_is_not_idempotent_is_not_repeated() {
        let mut c = lossy_client(vec![0]);
        let e = c.remove("x").unwrap_err();
        assert!(e.is_connection(), "{e}");
        assert_eq!(c.into_inner().into_inner().port.requests.len(), 1);
    }

    #[test]
    fn written_frames_leave_as_packets_on_flush() {
        let a = frame(7, b"out");
        let mut link = SerialLink::new(Script {
            input: io::Cursor::new(Vec::new()),
            written: Vec::new(),
        });
        link.write_all(&a[..5]).unwrap();
        link.write_all(&a[5..]).unwrap();
        link.flush().unwrap();
        assert_eq!(link.port.written, packet(&a));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1:7070"), None);
        assert_eq!(
            parse_addr("serial:/dev/ttyUSB0"),
            Some(Ok(SerialAddr {
                path: "/dev/ttyUSB0".into(),
                baud: DEFAULT_BAUD
            }))
        );
        assert_eq!(
            parse_addr("serial:/dev/pts/3@921600"),
            Some(Ok(SerialAddr {
                path: "/dev/pts/3".into(),
                baud: 921_600
            }))
        );
        assert!(matches!(parse_addr("serial:/dev/x@fast"), Some(Err(_))));
        assert!(matches!(parse_addr("serial:"), Some(Err(_))));
    }
}
