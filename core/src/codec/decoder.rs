//! The streaming frame decoder: byte chunks in, checked frames out.
//!
//! TCP (or a UART) hands over bytes in whatever pieces it likes: several frames merged in one read,
//! one frame split over many. [`Decoder`] finds the boundaries. It holds at most one partial frame
//! in a buffer of `N` bytes owned by the decoder, so a device decides its memory at compile time.
//!
//! A frame that arrives whole inside one chunk is parsed in place and borrows the caller's chunk:
//! no copy. Only a frame cut by a chunk boundary is assembled in the buffer.

use crate::wire::header::{self, Header, HeaderFault, HEADER_LEN, VERSION};
use crate::wire::{DecodeError, Frame};

/// A streaming decoder holding at most one frame of up to `N` bytes (header included).
///
/// `N` is the largest frame this end accepts; advertise it to peers (the `hello` service does).
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    /// Bytes in `buf[..len]`: always a prefix of a frame that has passed every check so far.
    len: usize,
    /// Bytes of a refused frame (too large, wrong version) still to be discarded.
    skip: u64,
    /// The frame `read_frame` returned last, still in `buf[..total]` until the next read.
    last: Option<(Header, usize)>,
    /// The checked header of the frame being assembled in `buf`, once all of it is there:
    /// checked once, not again for every chunk of a large frame.
    head: Option<Header>,
}

/// What the checks say about the bytes at the start of a slice.
enum Probe {
    /// A plausible frame prefix; this many more bytes complete the header or the frame. The
    /// header, once complete and checked, comes along.
    Need(usize, Option<Header>),
    /// A complete, checked frame of `total` bytes.
    Frame(Header, usize),
    /// A fault: drop `consume` bytes here and `skip` more from later input.
    Fault {
        error: DecodeError,
        consume: usize,
        skip: u64,
    },
}

fn probe(bytes: &[u8], limit: usize) -> Probe {
    let header = match header::check(bytes) {
        Ok(Some(h)) => h,
        Ok(None) => return Probe::Need(HEADER_LEN - bytes.len(), None),
        Err(fault) => {
            // Resynchronise on the next byte that could start a frame; everything before it is lost
            // anyway, everything after it is examined again.
            let skipped = 1 + header::find_magic(&bytes[1..]);
            let error = match fault {
                HeaderFault::Magic => DecodeError::Garbage { skipped },
                HeaderFault::Crc => DecodeError::HeaderCrc { skipped },
            };
            return Probe::Fault {
                error,
                consume: skipped,
                skip: 0,
            };
        }
    };
    let total = header.frame_len();
    let refuse = if header.version != VERSION {
        Some(DecodeError::UnsupportedVersion {
            version: header.version,
            kind: header.kind,
            request_id: header.request_id,
        })
    } else if total > limit as u64 {
        Some(DecodeError::TooLarge {
            declared: total,
            limit,
            kind: header.kind,
            request_id: header.request_id,
        })
    } else {
        None
    };
    if let Some(error) = refuse {
        // The header CRC vouches for the lengths, so the frame can be stepped over without
        // buffering it and the stream stays in sync.
        let consume = (bytes.len() as u64).min(total) as usize;
        return Probe::Fault {
            error,
            consume,
            skip: total - consume as u64,
        };
    }
    let total = total as usize;
    if bytes.len() < total {
        return Probe::Need(total - bytes.len(), Some(header));
    }
    verify(header, &bytes[..total])
}

/// The payload check of a complete frame whose header has been checked.
fn verify(header: Header, frame: &[u8]) -> Probe {
    if crate::crc32::checksum(&frame[HEADER_LEN..]) != header.payload_crc {
        let error = DecodeError::PayloadCrc {
            kind: header.kind,
            request_id: header.request_id,
        };
        return Probe::Fault {
            error,
            consume: frame.len(),
            skip: 0,
        };
    }
    Probe::Frame(header, frame.len())
}

/// A complete frame handed over by [`Decoder::decode_owned`]: its checked header and its whole
/// bytes, in the decoder's buffer and writable.
pub type OwnedFrame<'a> = (Header, &'a mut [u8]);

/// A complete frame's header and where it lies.
type Located = (Header, Place);

/// Where a complete frame lies.
enum Place {
    /// In the caller's input: start and length.
    Input(usize, usize),
    /// In the decoder's buffer, from its start: length.
    Buffer(usize),
}

/// One step of work on the buffered bytes, free of borrows so that callers can loop.
enum Step {
    /// This many more bytes are needed for the frame in the buffer.
    Need(usize),
    /// The buffer holds a complete frame.
    Ready(Header, usize),
    /// A fault was found and its bytes dropped from the buffer.
    Fault(DecodeError),
}

impl<const N: usize> Decoder<N> {
    const ROOM_FOR_A_HEADER: () = assert!(N >= HEADER_LEN, "a decoder must hold at least a header");

    /// A decoder with an empty buffer.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::ROOM_FOR_A_HEADER;
        Decoder {
            buf: [0; N],
            len: 0,
            skip: 0,
            last: None,
            head: None,
        }
    }

    /// The largest frame accepted, header included.
    pub const fn max_frame(&self) -> usize {
        N
    }

    /// Bytes of an incomplete frame held in the buffer.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Whether the decoder sits between frames (nothing buffered, nothing left to skip).
    pub fn is_idle(&self) -> bool {
        self.len == 0 && self.skip == 0
    }

    /// Forgets any partial frame, e.g. when the connection is replaced.
    pub fn reset(&mut self) {
        self.len = 0;
        self.skip = 0;
        self.last = None;
        self.head = None;
    }

    /// Ends the input here: the transport says no more bytes of the frame being assembled will
    /// come (a serial link's packet delimiter). Returns `None` if the decoder was idle; otherwise
    /// how many bytes of an incomplete frame were dropped and, if its header had arrived intact,
    /// the kind and request id it named, so that the peer can be told which request was lost.
    pub fn cut(&mut self) -> Option<(usize, Option<(crate::wire::Kind, u32)>)> {
        if self.is_idle() {
            return None;
        }
        let request = self.head.map(|h| (h.kind, h.request_id));
        let dropped = self.len;
        self.reset();
        Some((dropped, request))
    }

    /// The frame the last successful [`Decoder::read_frame`] returned, once more.
    ///
    /// Lets a caller look at a frame, decide to keep it, and return it from a loop without
    /// fighting the borrow checker. `None` after any other call that touches the buffer.
    pub fn last_frame(&self) -> Option<Frame<'_>> {
        self.last
            .map(|(header, total)| Frame::split(header, &self.buf[..total]))
    }

    /// [`Decoder::last_frame`], writable: its checked header and its whole bytes, for a receiver
    /// that transforms the frame in place (opening a sealed frame).
    pub fn last_frame_mut(&mut self) -> Option<OwnedFrame<'_>> {
        self.last.map(|(header, total)| (header, &mut self.buf[..total]))
    }

    /// Decodes from the next chunk of input.
    ///
    /// Returns how many bytes of `input` were used and, when one is complete, a frame or an error.
    /// Call again with the unused rest (`&input[used..]`) until it returns `None`, which means every
    /// byte was used and the decoder waits for more. Errors are not fatal: the decoder has already
    /// stepped past the offending bytes and the next call continues with the following frame.
    ///
    /// ```
    /// use tether_core::codec::{encode_raw, Decoder};
    /// use tether_core::wire::{FrameSpec, Kind};
    ///
    /// let mut wire = [0u8; 64];
    /// let n = encode_raw(&mut wire, FrameSpec::request(Kind::Echo, 7), &[], b"hi").unwrap();
    /// let mut dec = Decoder::<256>::new();
    /// let mut input = &wire[..n];
    /// let mut bodies = 0;
    /// loop {
    ///     let (used, item) = dec.decode(input);
    ///     input = &input[used..];
    ///     match item {
    ///         Some(Ok(frame)) => { assert_eq!(frame.body, b"hi"); bodies += 1 }
    ///         Some(Err(e)) => panic!("{e}"),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(bodies, 1);
    /// ```
    pub fn decode<'a>(&'a mut self, input: &'a [u8]) -> (usize, Option<Result<Frame<'a>, DecodeError>>) {
        let (used, item) = self.decode_at(input);
        let item = item.map(|r| {
            r.map(|(header, place)| match place {
                Place::Input(start, total) => Frame::split(header, &input[start..start + total]),
                Place::Buffer(total) => Frame::split(header, &self.buf[..total]),
            })
        });
        (used, item)
    }

    /// Like [`Decoder::decode`], but a complete frame is always handed over in the decoder's own
    /// buffer, writable: the checked header and the whole frame's bytes. A frame that lay whole in
    /// `input` is copied there first.
    ///
    /// For a receiver that transforms frames in place, such as a secure session decrypting a
    /// sealed frame without a second frame buffer.
    pub fn decode_owned<'a>(&'a mut self, input: &[u8]) -> (usize, Option<Result<OwnedFrame<'a>, DecodeError>>) {
        let (used, item) = self.decode_at(input);
        let item = item.map(|r| {
            r.map(|(header, place)| match place {
                Place::Input(start, total) => {
                    // Fits: the checked total of a frame is at most N.
                    self.buf[..total].copy_from_slice(&input[start..start + total]);
                    (header, &mut self.buf[..total])
                }
                Place::Buffer(total) => (header, &mut self.buf[..total]),
            })
        });
        (used, item)
    }

    /// Like [`Decoder::decode_owned`], for input the caller lets the receiver write to: a frame
    /// that lies whole in `input` is handed over there, writable, without a copy; one assembled
    /// from several chunks comes from the decoder's buffer.
    pub fn decode_in_place<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> (usize, Option<Result<OwnedFrame<'a>, DecodeError>>) {
        let (used, item) = self.decode_at(input);
        let item = item.map(|r| {
            r.map(|(header, place)| match place {
                Place::Input(start, total) => (header, &mut input[start..start + total]),
                Place::Buffer(total) => (header, &mut self.buf[..total]),
            })
        });
        (used, item)
    }

    /// The work of [`Decoder::decode`], saying where a complete frame lies instead of borrowing it.
    fn decode_at(&mut self, input: &[u8]) -> (usize, Option<Result<Located, DecodeError>>) {
        self.last = None;
        let mut used = self.discard(input);
        if self.skip > 0 {
            return (used, None);
        }
        if self.len == 0 {
            // Fast path: the frame, or as much as is there, is parsed where it lies.
            let rest = &input[used..];
            return match probe(rest, N) {
                Probe::Frame(header, total) => (used + total, Some(Ok((header, Place::Input(used, total))))),
                Probe::Need(_, head) => {
                    self.head = head;
                    // Fits: a header prefix is shorter than a header, and a longer prefix belongs to
                    // a frame whose checked total is at most N.
                    self.buf[..rest.len()].copy_from_slice(rest);
                    self.len = rest.len();
                    (input.len(), None)
                }
                Probe::Fault { error, consume, skip } => {
                    self.skip = skip;
                    (used + consume, Some(Err(error)))
                }
            };
        }
        loop {
            match self.step() {
                Step::Ready(header, total) => {
                    self.len = 0;
                    return (used, Some(Ok((header, Place::Buffer(total)))));
                }
                Step::Fault(error) => {
                    used += self.discard(&input[used..]);
                    return (used, Some(Err(error)));
                }
                Step::Need(want) => {
                    let rest = &input[used..];
                    if rest.is_empty() {
                        return (used, None);
                    }
                    let n = want.min(rest.len());
                    self.buf[self.len..self.len + n].copy_from_slice(&rest[..n]);
                    self.len += n;
                    used += n;
                }
            }
        }
    }

    /// Reads one frame from a blocking reader.
    ///
    /// It asks the reader for exactly the bytes of the current frame (the header first, then the
    /// rest), so it never consumes bytes that belong to the next frame and can share a stream with
    /// other readers. A decode error is returned after its bytes were dropped: call again to go on
    /// with the next frame.
    pub fn read_frame<R: embedded_io::Read>(&mut self, reader: &mut R) -> Result<Frame<'_>, ReadError<R::Error>> {
        self.last = None;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(N as u64) as usize;
                let got = reader.read(&mut self.buf[..n]).map_err(ReadError::Io)?;
                if got == 0 {
                    return Err(ReadError::UnexpectedEof);
                }
                self.skip -= got as u64;
                continue;
            }
            match self.step() {
                Step::Ready(header, total) => {
                    self.len = 0;
                    self.last = Some((header, total));
                    return Ok(Frame::split(header, &self.buf[..total]));
                }
                Step::Fault(error) => return Err(ReadError::Decode(error)),
                Step::Need(want) => {
                    let got = reader
                        .read(&mut self.buf[self.len..self.len + want])
                        .map_err(ReadError::Io)?;
                    if got == 0 {
                        return Err(if self.len == 0 {
                            ReadError::Eof
                        } else {
                            ReadError::UnexpectedEof
                        });
                    }
                    self.len += got;
                }
            }
        }
    }

    /// Drops the part of a refused frame that `input` holds; returns how much that was.
    fn discard(&mut self, input: &[u8]) -> usize {
        let n = self.skip.min(input.len() as u64) as usize;
        self.skip -= n as u64;
        n
    }

    /// Examines the buffer.
    fn step(&mut self) -> Step {
        if self.len == 0 {
            return Step::Need(HEADER_LEN);
        }
        let probed = match self.head {
            Some(h) => {
                let total = h.frame_len() as usize;
                if self.len < total {
                    return Step::Need(total - self.len);
                }
                verify(h, &self.buf[..total])
            }
            None => probe(&self.buf[..self.len], N),
        };
        match probed {
            Probe::Need(want, head) => {
                self.head = head;
                Step::Need(want)
            }
            Probe::Frame(header, total) => {
                self.head = None;
                Step::Ready(header, total)
            }
            Probe::Fault { error, consume, skip } => {
                self.head = None;
                self.buf.copy_within(consume..self.len, 0);
                self.len -= consume;
                self.skip = skip;
                Step::Fault(error)
            }
        }
    }
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`Decoder::read_frame`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The reader failed.
    Io(E),
    /// The stream ended cleanly between frames.
    Eof,
    /// The stream ended inside a frame.
    UnexpectedEof,
    /// The bytes were not a valid frame; they have been dropped.
    Decode(DecodeError),
}

impl<E: core::fmt::Debug> core::fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read failed: {e:?}"),
            ReadError::Eof => f.write_str("connection closed"),
            ReadError::UnexpectedEof => f.write_str("connection closed in the middle of a frame"),
            ReadError::Decode(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug> std::error::Error for ReadError<E> {}

/// Reads one frame from a blocking reader into `decoder`: the free-function twin of
/// [`write_frame`](crate::codec::write_frame). See [`Decoder::read_frame`].
///
/// ```
/// use tether_core::codec::{read_frame, write_frame, Decoder};
/// use tether_core::wire::{FrameSpec, Kind};
///
/// let mut wire = [0u8; 64];
/// let mut out: &mut [u8] = &mut wire;
/// write_frame(&mut out, FrameSpec::request(Kind::Echo, 1), &(), b"hi").unwrap();
/// let mut input: &[u8] = &wire;
/// let mut decoder = Decoder::<128>::new();
/// let frame = read_frame(&mut input, &mut decoder).unwrap();
/// assert_eq!((frame.kind(), frame.body), (Kind::Echo, &b"hi"[..]));
/// ```
pub fn read_frame<'d, R: embedded_io::Read, const N: usize>(
    reader: &mut R,
    decoder: &'d mut Decoder<N>,
) -> Result<Frame<'d>, ReadError<R::Error>> {
    decoder.read_frame(reader)
}

/// Why [`parse_datagram`] refused a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramError {
    /// The frame itself is bad.
    Decode(DecodeError),
    /// The datagram ends before the frame does.
    Truncated,
    /// Bytes other than zero padding follow the frame (one datagram carries exactly one frame).
    Trailing,
}

impl core::fmt::Display for DatagramError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DatagramError::Decode(e) => write!(f, "{e}"),
            DatagramError::Truncated => f.write_str("datagram shorter than the frame it starts"),
            DatagramError::Trailing => f.write_str("non-zero bytes after the frame in a datagram"),
        }
    }
}

/// Parses bytes that must be exactly one frame of at most `limit` bytes, nothing before or after
/// it (a sealed frame's plaintext, for one).
pub fn parse_frame(bytes: &[u8], limit: usize) -> Result<Frame<'_>, DatagramError> {
    match parse_datagram(bytes, limit) {
        Ok(frame) if frame.header.frame_len() == bytes.len() as u64 => Ok(frame),
        Ok(_) => Err(DatagramError::Trailing),
        Err(e) => Err(e),
    }
}

/// Parses a datagram that must hold exactly one frame of at most `limit` bytes, optionally
/// followed by zero bytes of padding (a UDP client pads its request to at least the size of the
/// answer it wants, so the device never sends more than it received: docs/PROTOCOL.md §1).
pub fn parse_datagram(bytes: &[u8], limit: usize) -> Result<Frame<'_>, DatagramError> {
    match probe(bytes, limit) {
        Probe::Frame(header, total) if bytes[total..].iter().all(|&b| b == 0) => {
            Ok(Frame::split(header, &bytes[..total]))
        }
        Probe::Frame(..) => Err(DatagramError::Trailing),
        Probe::Need(..) => Err(DatagramError::Truncated),
        Probe::Fault { error, .. } => Err(DatagramError::Decode(error)),
    }
}
