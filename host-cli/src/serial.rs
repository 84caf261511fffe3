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
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use tether_core::codec::parse_frame;
use tether_core::serial::framing::{Encoder, Unframer};

use crate::client::{Client, MAX_FRAME};
use crate::error::{ClientError, Result};

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
    dropped: u64,
}

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
            dropped: 0,
        }
    }

    /// Packets dropped as damaged so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The port (to change its timeouts).
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
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
        self.port.write_all(&self.out)?;
        self.out.clear();
        self.port.flush()
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
                    self.dropped += 1;
                }
                self.unframer.next();
                continue;
            }
            if self.in_pos == self.in_len {
                self.in_len = self.port.read(&mut self.input)?;
                self.in_pos = 0;
                if self.in_len == 0 {
                    return Ok(0);
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

/// A client over a serial port.
pub type SerialClient = Client<FromStd<SerialLink<serial2::SerialPort>>>;

/// Opens the port of `addr` with `timeout` for every read and write. Bytes already waiting in
/// its input (the tail of an earlier conversation) or still unsent are discarded.
pub fn link(addr: &SerialAddr, timeout: Duration) -> Result<SerialLink<serial2::SerialPort>> {
    let fail = |e: io::Error| ClientError::Connection(format!("cannot open serial port {}: {e}", addr.path));
    let mut port = serial2::SerialPort::open(&addr.path, addr.baud).map_err(fail)?;
    port.set_read_timeout(timeout).map_err(fail)?;
    port.set_write_timeout(timeout).map_err(fail)?;
    // Unsent bytes of an earlier attempt (a window of chunks) would only delay this one.
    port.discard_buffers().map_err(fail)?;
    Ok(SerialLink::new(port))
}

/// A client over the port of `addr`; it knows its link loses frames (see [`Client::lossy`]).
pub fn open(addr: &SerialAddr, timeout: Duration) -> Result<SerialClient> {
    Ok(Client::with_peer(FromStd::new(link(addr, timeout)?), addr.to_string()).on_lossy_link())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::codec::{encode_raw, parse_datagram};
    use tether_core::serial::framing::{encode_packet, max_packet_len};
    use tether_core::wire::{FrameSpec, Kind};

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
