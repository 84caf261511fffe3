//! The `decoder` target: differential fuzzing of [`Decoder`].
//!
//! One stream is decoded five ways: in one piece, one byte at a time, in the chunks the input
//! chooses, and with `read_frame` over a reader that hands out as much as asked or the chunk
//! sizes the input chooses. All five must report the same frames, at the same stream offsets, the
//! same faults of trusted headers, the same number of bytes dropped between them (untrusted faults
//! are counted per call, so only their sums between two other items are compared) and end in the
//! same state. Along the way every frame must pass both CRCs, fit the decoder, re-encode to the
//! bytes it was decoded from, and the decoder must keep its documented contracts (`None` means the
//! whole chunk was used, never more than `N` bytes held or asked for, `read_frame` never reads past
//! the frame it returns). [`parse_datagram`] must agree with the first step of the one-piece run.
//!
//! Input layout:
//!
//! ```text
//! byte 0       mode: bits 0-1 pick N (24, 64, 512, 4096); bit 2 repairs header CRCs, bit 3
//!              repairs payload CRCs of the frames found in the stream before decoding it
//! byte 1       k: length of the chunk plan (at most 64 is used)
//! k bytes      chunk sizes, cycled (0 means "all the rest")
//! the rest     the stream
//! ```
//!
//! With mode 3 and an empty plan, a seed is just `03 00` followed by real frames.

use std::convert::Infallible;

use tether_core::codec::{encode_raw, parse_datagram, DatagramError, Decoder, ReadError};
use tether_core::crc32;
use tether_core::wire::{DecodeError, Frame, FrameSpec, Header, HEADER_LEN, MAGIC, VERSION};

/// Mode bit: recompute the header CRC of every header candidate in the stream.
pub const REPAIR_HEADERS: u8 = 0x04;
/// Mode bit: recompute the payload CRC of every complete frame in the stream.
pub const REPAIR_PAYLOADS: u8 = 0x08;
/// The mode of a seed that is plain frames for a 4096-byte decoder.
pub const PLAIN_4096: u8 = 0x03;

/// Builds a decoder input from its parts (for seeds).
pub fn input(mode: u8, plan: &[u8], stream: &[u8]) -> Vec<u8> {
    assert!(plan.len() <= 64);
    let mut out = vec![mode, plan.len() as u8];
    out.extend_from_slice(plan);
    out.extend_from_slice(stream);
    out
}

/// One fuzz iteration.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&k, rest)) = rest.split_first() else { return };
    let k = (k as usize).min(64).min(rest.len());
    let (plan, stream) = rest.split_at(k);
    let mut stream = stream.to_vec();
    repair(&mut stream, mode & REPAIR_HEADERS != 0, mode & REPAIR_PAYLOADS != 0);
    let plan: Vec<usize> = plan
        .iter()
        .map(|&b| if b == 0 { usize::MAX } else { b as usize })
        .collect();
    match mode & 3 {
        0 => check::<HEADER_LEN>(&stream, &plan),
        1 => check::<64>(&stream, &plan),
        2 => check::<512>(&stream, &plan),
        _ => check::<4096>(&stream, &plan),
    }
}

/// Lets the fuzzer edit lengths and contents freely and still hand the decoder frames that pass
/// their checks: fixes the CRCs of the header candidates (and complete frames) in the stream.
fn repair(stream: &mut [u8], headers: bool, payloads: bool) {
    if !headers && !payloads {
        return;
    }
    let mut p = 0;
    while p + HEADER_LEN <= stream.len() {
        if stream[p..p + 2] != MAGIC {
            p += 1;
            continue;
        }
        let meta = u16::from_le_bytes([stream[p + 6], stream[p + 7]]) as usize;
        let body = u32::from_le_bytes(stream[p + 12..p + 16].try_into().unwrap()) as usize;
        let total = HEADER_LEN + meta + body;
        let fits = total <= stream.len() - p;
        if payloads && fits {
            let crc = crc32::checksum(&stream[p + HEADER_LEN..p + total]);
            stream[p + 16..p + 20].copy_from_slice(&crc.to_le_bytes());
        }
        if headers {
            let crc = crc32::checksum(&stream[p..p + 20]);
            stream[p + 20..p + 24].copy_from_slice(&crc.to_le_bytes());
        }
        p += if fits { total } else { HEADER_LEN };
    }
}

/// What a decoder reported, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A frame and the stream offset just past it.
    Frame {
        header: Header,
        meta: Vec<u8>,
        body: Vec<u8>,
        end: usize,
    },
    /// A fault whose header was trusted (it names a frame by its header).
    Fault(DecodeError),
    /// Bytes dropped as garbage or under a bad header, summed over consecutive reports.
    Dropped(usize),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct End {
    buffered: usize,
    idle: bool,
}

fn push(items: &mut Vec<Item>, item: Item) {
    if let Item::Dropped(n) = item {
        if let Some(Item::Dropped(m)) = items.last_mut() {
            *m += n;
            return;
        }
    }
    items.push(item);
}

/// Checks a frame against the stream it came from and records it.
fn frame_item<const N: usize>(frame: &Frame<'_>, stream: &[u8], end: usize) -> Item {
    let h = frame.header;
    assert_eq!(h.version, VERSION, "a frame of another version was returned");
    assert_eq!(frame.meta.len(), h.meta_len as usize);
    assert_eq!(frame.body.len(), h.body_len as usize);
    let total = h.frame_len() as usize;
    assert!(total <= N, "a frame of {total} bytes from a decoder of {N}");
    assert!(
        end >= total && end <= stream.len(),
        "frame end {end} outside the stream"
    );
    let mut crc = crc32::Crc32::new();
    crc.update(frame.meta);
    crc.update(frame.body);
    assert_eq!(
        crc.finish(),
        h.payload_crc,
        "a frame with a wrong payload CRC was returned"
    );
    assert_eq!(frame.meta, &stream[end - total + HEADER_LEN..][..frame.meta.len()]);
    assert_eq!(frame.body, &stream[end - frame.body.len()..end]);

    // Re-encoding gives the bytes the frame was decoded from (the reserved byte is written as 0,
    // so a frame that arrived with another value there differs in that byte and the header CRC).
    let mut want = stream[end - total..end].to_vec();
    if want[5] != 0 {
        want[5] = 0;
        let crc = crc32::checksum(&want[..20]);
        want[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    let mut again = vec![0u8; total];
    let spec = FrameSpec {
        kind: h.kind,
        flags: h.flags,
        request_id: h.request_id,
    };
    match encode_raw(&mut again, spec, frame.meta, frame.body) {
        Ok(n) => {
            assert_eq!(n, total);
            assert_eq!(again, want, "the frame does not re-encode to its bytes");
        }
        // A decoder frame holds at most u16::MAX metadata bytes; the encoder refuses more than 512.
        Err(e) => assert!(frame.meta.len() > tether_core::wire::MAX_META_LEN, "{e:?}"),
    }
    Item::Frame {
        header: h,
        meta: frame.meta.to_vec(),
        body: frame.body.to_vec(),
        end,
    }
}

fn fault_item<const N: usize>(e: DecodeError) -> Item {
    match e {
        DecodeError::Garbage { skipped } | DecodeError::HeaderCrc { skipped } => {
            assert!(skipped >= 1, "a fault that dropped nothing: {e:?}");
            Item::Dropped(skipped)
        }
        DecodeError::TooLarge { declared, limit, .. } => {
            assert_eq!(limit, N);
            assert!(declared > N as u64, "{e:?}");
            Item::Fault(e)
        }
        DecodeError::UnsupportedVersion { version, .. } => {
            assert_ne!(version, VERSION);
            Item::Fault(e)
        }
        DecodeError::PayloadCrc { .. } => Item::Fault(e),
    }
}

/// Decodes `stream` with `decode`, in chunks whose sizes cycle through `sizes`.
fn decode_chunked<const N: usize>(stream: &[u8], sizes: &[usize]) -> (Vec<Item>, End) {
    let mut dec = Box::new(Decoder::<N>::new());
    let mut items = Vec::new();
    let mut start = 0;
    let mut next = 0;
    // Every call either reports something or uses its whole chunk; every report but a frame
    // completed from the buffer drops at least one byte, and such a frame empties the buffer.
    let mut budget = 2 * stream.len() + 2 * stream.len().div_ceil(HEADER_LEN) + 8;
    while start < stream.len() {
        let size = sizes[next % sizes.len()].clamp(1, stream.len() - start);
        next += 1;
        let chunk = &stream[start..start + size];
        let mut used_total = 0;
        loop {
            budget = budget.checked_sub(1).expect("the decoder makes no progress");
            let (used, item) = dec.decode(&chunk[used_total..]);
            assert!(
                used <= chunk.len() - used_total,
                "used {used} of {}",
                chunk.len() - used_total
            );
            used_total += used;
            let at = start + used_total;
            let item = match item {
                Some(Ok(frame)) => frame_item::<N>(&frame, stream, at),
                Some(Err(e)) => fault_item::<N>(e),
                None => {
                    assert_eq!(used_total, chunk.len(), "`None` before the whole chunk was used");
                    break;
                }
            };
            push(&mut items, item);
            assert!(dec.buffered() <= N);
        }
        assert!(dec.buffered() <= N && dec.buffered() <= start + size);
        assert!(dec.last_frame().is_none(), "last_frame after decode");
        start += size;
    }
    let end = End {
        buffered: dec.buffered(),
        idle: dec.is_idle(),
    };
    (items, end)
}

/// A reader over the stream that returns at most the next of `sizes` bytes a call (cycling).
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: &'a [usize],
    next: usize,
    largest_ask: usize,
}

impl embedded_io::ErrorType for Reader<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        assert!(!buf.is_empty(), "read_frame asked for 0 bytes (reads as end of stream)");
        self.largest_ask = self.largest_ask.max(buf.len());
        let size = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = buf.len().min(size).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads `stream` with `read_frame` until it ends.
fn read_all<const N: usize>(stream: &[u8], sizes: &[usize]) -> (Vec<Item>, End) {
    let mut dec = Box::new(Decoder::<N>::new());
    let mut reader = Reader {
        data: stream,
        pos: 0,
        sizes,
        next: 0,
        largest_ask: 0,
    };
    let mut items = Vec::new();
    for _ in 0..stream.len() + 2 {
        let item = match tether_core::codec::read_frame(&mut reader, &mut dec) {
            Ok(frame) => {
                let frame = frame_item::<N>(&frame, stream, reader.pos);
                let again = dec.last_frame().expect("last_frame after a frame");
                assert_eq!(frame_item::<N>(&again, stream, reader.pos), frame);
                frame
            }
            Err(ReadError::Decode(e)) => {
                assert!(dec.last_frame().is_none());
                fault_item::<N>(e)
            }
            Err(ReadError::Eof) => {
                assert_eq!(reader.pos, stream.len());
                assert!(dec.is_idle(), "Eof from a decoder that is not idle");
                return (
                    items,
                    End {
                        buffered: 0,
                        idle: true,
                    },
                );
            }
            Err(ReadError::UnexpectedEof) => {
                assert_eq!(reader.pos, stream.len());
                assert!(!dec.is_idle(), "UnexpectedEof from an idle decoder");
                let end = End {
                    buffered: dec.buffered(),
                    idle: false,
                };
                return (items, end);
            }
            Err(ReadError::Io(never)) => match never {},
        };
        push(&mut items, item);
        assert!(
            reader.largest_ask <= N,
            "read_frame asked for {} bytes",
            reader.largest_ask
        );
    }
    panic!("read_frame makes no progress");
}

fn check<const N: usize>(stream: &[u8], plan: &[usize]) {
    let whole = decode_chunked::<N>(stream, &[usize::MAX]);
    let bytewise = decode_chunked::<N>(stream, &[1]);
    assert_eq!(
        bytewise, whole,
        "byte-by-byte decoding differs from decoding in one piece"
    );
    if !plan.is_empty() {
        let chunked = decode_chunked::<N>(stream, plan);
        assert_eq!(chunked, whole, "decoding in chunks {plan:?} differs from one piece");
    }
    let read = read_all::<N>(stream, &[usize::MAX]);
    assert_eq!(read, whole, "read_frame differs from decode");
    if !plan.is_empty() {
        let read = read_all::<N>(stream, plan);
        assert_eq!(read, whole, "read_frame with reads of {plan:?} differs from decode");
    }
    check_datagram::<N>(stream);
}

/// `parse_datagram` says what the first `decode` of the whole stream says, in its own terms (a
/// datagram may carry zero padding after its frame: PROTOCOL.md §1).
fn check_datagram<const N: usize>(stream: &[u8]) {
    let mut dec = Box::new(Decoder::<N>::new());
    let (used, first) = dec.decode(stream);
    match (parse_datagram(stream, N), first) {
        (Ok(d), Some(Ok(f))) => {
            assert!(stream[used..].iter().all(|&b| b == 0), "non-zero bytes after the frame");
            assert_eq!((d.header, d.meta, d.body), (f.header, f.meta, f.body));
        }
        (Err(DatagramError::Trailing), Some(Ok(_))) => assert!(used < stream.len()),
        (Err(DatagramError::Truncated), None) => {}
        (Err(DatagramError::Decode(a)), Some(Err(b))) => assert_eq!(a, b),
        (d, f) => panic!("parse_datagram says {d:?}, decode says {f:?}"),
    }
}
