//! Properties of the streaming decoder and the encoders, and one test for every error path.
//!
//! The properties (proptest) cover what a byte stream can do to a receiver: arbitrary splits and
//! merges, random bytes, garbage between frames, frames above the limit and short reads. The plain
//! tests pin each error variant, both through [`Decoder::decode`] and [`Decoder::read_frame`].

use std::convert::Infallible;

use proptest::collection::vec;
use proptest::prelude::*;
use tether_core::codec::{
    encode, encode_raw, encode_with, parse_datagram, write_frame, DatagramError, Decoder, EncodeError, ReadError,
    WriteError,
};
use tether_core::crc32;
use tether_core::msg::{ErrorInfo, PutData};
use tether_core::wire::{
    DecodeError, ErrorCode, Flags, Frame, FrameSpec, Header, Kind, HEADER_LEN, MAGIC, MAX_META_LEN, VERSION,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A frame with owned parts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    kind: Kind,
    flags: Flags,
    request_id: u32,
    meta: Vec<u8>,
    body: Vec<u8>,
}

impl Owned {
    fn of(frame: &Frame<'_>) -> Owned {
        Owned {
            kind: frame.kind(),
            flags: frame.flags(),
            request_id: frame.request_id(),
            meta: frame.meta.to_vec(),
            body: frame.body.to_vec(),
        }
    }

    fn len(&self) -> usize {
        HEADER_LEN + self.meta.len() + self.body.len()
    }

    /// The frame's bytes, from the real encoder.
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        let spec = FrameSpec {
            kind: self.kind,
            flags: self.flags,
            request_id: self.request_id,
        };
        let n = encode_raw(&mut out, spec, &self.meta, &self.body).expect("encode");
        assert_eq!(n, out.len());
        out
    }
}

/// A small frame for tests: kind Echo.
fn echo(request_id: u32, body: &[u8]) -> Owned {
    Owned {
        kind: Kind::Echo,
        flags: Flags::NONE,
        request_id,
        meta: Vec::new(),
        body: body.to_vec(),
    }
}

/// The bytes of a frame of another protocol version (the encoder only writes version 1).
fn with_version(version: u8, frame: &Owned) -> Vec<u8> {
    let mut bytes = frame.encode();
    let mut payload_crc = crc32::Crc32::new();
    payload_crc.update(&frame.meta);
    payload_crc.update(&frame.body);
    Header {
        version,
        kind: frame.kind,
        flags: frame.flags,
        request_id: frame.request_id,
        meta_len: frame.meta.len() as u16,
        body_len: frame.body.len() as u32,
        payload_crc: payload_crc.finish(),
    }
    .emit(&mut bytes);
    bytes
}

/// What the decoder reported.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Frame(Owned),
    Error(DecodeError),
}

impl Item {
    fn frame(&self) -> Option<&Owned> {
        match self {
            Item::Frame(f) => Some(f),
            Item::Error(_) => None,
        }
    }

    /// Bytes dropped by a fault whose header could not be trusted.
    fn untrusted_skip(&self) -> usize {
        match self {
            Item::Error(DecodeError::Garbage { skipped } | DecodeError::HeaderCrc { skipped }) => *skipped,
            _ => 0,
        }
    }

    /// Frames and faults of trusted headers: what must not depend on how the input is split.
    fn is_trusted(&self) -> bool {
        !matches!(
            self,
            Item::Error(DecodeError::Garbage { .. } | DecodeError::HeaderCrc { .. })
        )
    }
}

/// Checks the invariants of a frame the decoder returned: it passed both CRCs and fits.
fn assert_sound(frame: &Frame<'_>, limit: usize) {
    let h = frame.header;
    assert_eq!(h.version, VERSION);
    assert_eq!(frame.meta.len(), h.meta_len as usize);
    assert_eq!(frame.body.len(), h.body_len as usize);
    assert!(h.frame_len() <= limit as u64);
    let mut crc = crc32::Crc32::new();
    crc.update(frame.meta);
    crc.update(frame.body);
    assert_eq!(
        crc.finish(),
        h.payload_crc,
        "a frame with a wrong payload CRC was returned"
    );
    let mut header = [0u8; HEADER_LEN];
    h.emit(&mut header);
    assert_eq!(header[..2], MAGIC);
}

/// Feeds `bytes` to `dec` in chunks whose sizes cycle through `sizes`, collecting everything
/// reported. After every `decode` call, `watch` sees the decoder and how many bytes of `bytes` have
/// been consumed.
fn feed<const N: usize>(
    dec: &mut Decoder<N>,
    bytes: &[u8],
    sizes: &[usize],
    mut watch: impl FnMut(&Decoder<N>, usize),
) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut next = 0;
    while start < bytes.len() {
        let size = sizes[next % sizes.len()].clamp(1, bytes.len() - start);
        next += 1;
        let chunk = &bytes[start..start + size];
        let mut used_total = 0;
        loop {
            let (used, item) = dec.decode(&chunk[used_total..]);
            used_total += used;
            let item = item.map(|r| match r {
                Ok(frame) => {
                    assert_sound(&frame, N);
                    Item::Frame(Owned::of(&frame))
                }
                Err(e) => Item::Error(e),
            });
            assert!(used_total <= chunk.len());
            watch(dec, start + used_total);
            match item {
                Some(item) => items.push(item),
                None => {
                    assert_eq!(used_total, chunk.len(), "`None` must mean the whole chunk was used");
                    break;
                }
            }
        }
        start += size;
    }
    items
}

fn decode_whole<const N: usize>(dec: &mut Decoder<N>, bytes: &[u8]) -> Vec<Item> {
    feed(dec, bytes, &[usize::MAX], |_, _| {})
}

/// A blocking reader that returns at most one of `sizes` bytes a call (cycling) and records how
/// far it has read.
struct ShortReader<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: Vec<usize>,
    next: usize,
}

impl<'a> ShortReader<'a> {
    fn new(data: &'a [u8], sizes: &[usize]) -> Self {
        ShortReader {
            data,
            pos: 0,
            sizes: sizes.to_vec(),
            next: 0,
        }
    }
}

impl embedded_io::ErrorType for ShortReader<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for ShortReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let size = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = buf.len().min(size).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Everything `read_frame` reports until the stream ends, and how it ended.
fn read_all<const N: usize>(dec: &mut Decoder<N>, reader: &mut ShortReader<'_>) -> (Vec<Item>, ReadError<Infallible>) {
    let mut items = Vec::new();
    for _ in 0..=reader.data.len() + 1 {
        match dec.read_frame(reader) {
            Ok(frame) => {
                assert_sound(&frame, N);
                items.push(Item::Frame(Owned::of(&frame)));
            }
            Err(ReadError::Decode(e)) => items.push(Item::Error(e)),
            Err(end) => return (items, end),
        }
    }
    panic!("read_frame does not make progress");
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any frame: any kind byte, any flags, any id, metadata up to 64 bytes, body up to `max_body`.
fn any_frame(max_body: usize) -> impl Strategy<Value = Owned> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        vec(any::<u8>(), 0..=64),
        vec(any::<u8>(), 0..=max_body),
    )
        .prop_map(|(kind, flags, request_id, meta, body)| Owned {
            kind: Kind::from(kind),
            flags: Flags(flags),
            request_id,
            meta,
            body,
        })
}

/// Chunk sizes: small, large, or the whole input at once.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        vec(1usize..=32, 1..16),
        vec(1usize..=3000, 1..8),
        Just(vec![usize::MAX]),
    ]
}

/// Bytes rich in magic bytes, so that candidate headers are frequent.
fn magic_rich_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![4 => any::<u8>(), 1 => Just(MAGIC[0]), 1 => Just(MAGIC[1])],
        0..=max,
    )
}

/// Garbage that does not contain the magic `E7 54` (but plenty of lone `E7` and `54`).
fn magic_free_garbage(max: usize) -> impl Strategy<Value = Vec<u8>> {
    magic_rich_bytes(max).prop_map(|mut g| {
        for i in 1..g.len() {
            if g[i - 1] == MAGIC[0] && g[i] == MAGIC[1] {
                g[i] = 0x55;
            }
        }
        g
    })
}

/// Arbitrary garbage: magic-rich bytes, sometimes with a magic and a partial header in front.
fn arbitrary_garbage(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), magic_rich_bytes(max)).prop_map(
        |(magic_first, g)| {
            if magic_first {
                [&MAGIC[..], &g].concat()
            } else {
                g
            }
        },
    )
}

/// One piece of a hostile stream.
#[derive(Debug, Clone)]
enum Segment {
    /// Random bytes.
    Random(Vec<u8>),
    /// A valid frame.
    Valid(Owned),
    /// A valid frame with one bit flipped.
    Flipped(Owned, usize, u8),
    /// A valid frame cut short.
    Truncated(Owned, usize),
    /// A frame of version 2.
    OtherVersion(Owned),
}

impl Segment {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Segment::Random(b) => b.clone(),
            Segment::Valid(f) => f.encode(),
            Segment::Flipped(f, at, bit) => {
                let mut b = f.encode();
                let at = at % b.len();
                b[at] ^= 1 << (bit % 8);
                b
            }
            Segment::Truncated(f, keep) => {
                let b = f.encode();
                b[..keep % b.len()].to_vec()
            }
            Segment::OtherVersion(f) => with_version(2, f),
        }
    }
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        2 => magic_rich_bytes(256).prop_map(Segment::Random),
        3 => any_frame(1100).prop_map(Segment::Valid),
        1 => (any_frame(700), any::<usize>(), any::<u8>()).prop_map(|(f, at, bit)| Segment::Flipped(f, at, bit)),
        1 => (any_frame(300), any::<usize>()).prop_map(|(f, keep)| Segment::Truncated(f, keep)),
        1 => any_frame(300).prop_map(Segment::OtherVersion),
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Valid frames, concatenated and cut anywhere, decode to exactly the same frames in order.
    #[test]
    fn valid_frames_survive_any_chunking(frames in vec(any_frame(2048), 0..8), sizes in chunk_sizes()) {
        let wire: Vec<u8> = frames.iter().flat_map(Owned::encode).collect();
        let mut dec = Decoder::<4096>::new();
        let items = feed(&mut dec, &wire, &sizes, |_, _| {});
        let want: Vec<Item> = frames.into_iter().map(Item::Frame).collect();
        prop_assert_eq!(items, want);
        prop_assert!(dec.is_idle());
    }

    /// (b) Random bytes never panic the decoder, which never returns a frame that fails its CRCs
    /// (checked in `feed`); its frames and trusted faults do not depend on the chunking.
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..8192), sizes in chunk_sizes()) {
        let mut dec = Decoder::<1024>::new();
        let items = feed(&mut dec, &bytes, &sizes, |d, _| assert!(d.buffered() <= 1024));
        // Uniform random bytes hold no valid header (2^-32 per candidate).
        prop_assert!(items.iter().all(|i| !i.is_trusted()), "a valid header in random bytes: {:?}", items);
        let mut reader = ShortReader::new(&bytes, &sizes);
        let (_, end) = read_all(&mut Decoder::<1024>::new(), &mut reader);
        prop_assert!(matches!(end, ReadError::Eof | ReadError::UnexpectedEof));
        prop_assert_eq!(reader.pos, bytes.len());
    }

    /// (b) A hostile mix of valid, damaged, truncated and foreign frames and magic-rich noise: no
    /// panic, every frame returned is one of the valid frames put in (in order), and chunking or
    /// reading with `read_frame` changes nothing but how dropped bytes are counted.
    #[test]
    fn hostile_streams_are_decoded_consistently(segments in vec(segment(), 0..10), sizes in chunk_sizes()) {
        let wire: Vec<u8> = segments.iter().flat_map(Segment::bytes).collect();
        let valid: Vec<Owned> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Valid(f) => Some(f.clone()),
                _ => None,
            })
            .collect();

        let mut whole_dec = Decoder::<1024>::new();
        let whole = decode_whole(&mut whole_dec, &wire);
        let mut split_dec = Decoder::<1024>::new();
        let split = feed(&mut split_dec, &wire, &sizes, |d, _| assert!(d.buffered() <= 1024));

        // Frames returned are a subsequence of the valid frames, except a frame the generator put
        // on the wire by coincidence: a truncated frame whose cut-off tail equals the bytes that
        // follow it (its last body byte 0xE7, the next frame's first magic byte) is whole on the
        // wire, byte for byte, and must be returned.
        let mut candidates = valid.iter();
        for f in whole.iter().filter_map(Item::frame) {
            let on_wire = || {
                let bytes = f.encode();
                wire.windows(bytes.len()).any(|w| w == bytes.as_slice())
            };
            let coincidental = !valid.contains(f) && on_wire();
            prop_assert!(
                coincidental || candidates.any(|v| v == f),
                "returned a frame that was not sent: {:?}",
                f
            );
        }

        let trusted = |items: &[Item]| items.iter().filter(|i| i.is_trusted()).cloned().collect::<Vec<_>>();
        let untrusted = |items: &[Item]| items.iter().map(Item::untrusted_skip).sum::<usize>();
        prop_assert_eq!(trusted(&split), trusted(&whole));
        prop_assert_eq!(
            untrusted(&split) + split_dec.buffered(),
            untrusted(&whole) + whole_dec.buffered()
        );

        let mut reader = ShortReader::new(&wire, &sizes);
        let (read, end) = read_all(&mut Decoder::<1024>::new(), &mut reader);
        prop_assert!(matches!(end, ReadError::Eof | ReadError::UnexpectedEof));
        prop_assert_eq!(trusted(&read), trusted(&whole));
    }

    /// (c) Garbage without the magic between (and after) frames costs exactly the garbage: every
    /// frame is decoded and the reported skips add up to the garbage (a trailing lone `E7` stays
    /// buffered as a possible frame start).
    #[test]
    fn magic_free_garbage_costs_only_itself(
        parts in vec((magic_free_garbage(64), any_frame(512)), 0..6),
        tail in magic_free_garbage(64),
        sizes in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for (garbage, frame) in &parts {
            wire.extend_from_slice(garbage);
            wire.extend(frame.encode());
        }
        wire.extend_from_slice(&tail);
        let garbage_len = parts.iter().map(|(g, _)| g.len()).sum::<usize>() + tail.len();

        let mut dec = Decoder::<4096>::new();
        let items = feed(&mut dec, &wire, &sizes, |_, _| {});
        let frames: Vec<Owned> = items.iter().filter_map(Item::frame).cloned().collect();
        let want: Vec<Owned> = parts.iter().map(|(_, f)| f.clone()).collect();
        prop_assert_eq!(frames, want);
        let mut skipped = 0;
        for item in &items {
            match item {
                Item::Frame(_) => {}
                Item::Error(DecodeError::Garbage { skipped: n }) => skipped += n,
                Item::Error(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
        prop_assert!(dec.buffered() <= 1);
        prop_assert_eq!(skipped + dec.buffered(), garbage_len);
    }

    /// (c) Arbitrary garbage, magic included, also costs only itself. (A garbage candidate header
    /// whose CRC happens to match would break this; the odds are 2^-32 per candidate.)
    #[test]
    fn arbitrary_garbage_costs_only_itself(
        parts in vec((arbitrary_garbage(64), any_frame(512)), 0..6),
        tail in arbitrary_garbage(64),
        sizes in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for (garbage, frame) in &parts {
            wire.extend_from_slice(garbage);
            wire.extend(frame.encode());
        }
        wire.extend_from_slice(&tail);
        let garbage_len = parts.iter().map(|(g, _)| g.len()).sum::<usize>() + tail.len();

        let mut dec = Decoder::<4096>::new();
        let items = feed(&mut dec, &wire, &sizes, |_, _| {});
        let frames: Vec<Owned> = items.iter().filter_map(Item::frame).cloned().collect();
        let want: Vec<Owned> = parts.iter().map(|(_, f)| f.clone()).collect();
        prop_assert_eq!(frames, want);
        prop_assert!(
            items.iter().all(|i| i.frame().is_some() || !i.is_trusted()),
            "garbage was taken for a header: {:?}",
            items
        );
        let skipped: usize = items.iter().map(Item::untrusted_skip).sum();
        prop_assert!(dec.buffered() < HEADER_LEN);
        prop_assert_eq!(skipped + dec.buffered(), garbage_len);
    }

    /// (d) A frame above the limit is reported with both sizes, streamed through without being
    /// buffered, and the next frame decodes.
    #[test]
    fn too_large_frames_are_skipped_unbuffered(
        big in (any_frame(0), 1001usize..6000, any::<u8>()).prop_map(|(mut f, n, fill)| { f.body = vec![fill; n]; f }),
        next in any_frame(300),
        sizes in chunk_sizes(),
    ) {
        let big_bytes = big.encode();
        prop_assert!(big_bytes.len() > 1024);
        let wire = [big_bytes.clone(), next.encode()].concat();
        let mut dec = Decoder::<1024>::new();
        let items = feed(&mut dec, &wire, &sizes, |d, consumed| {
            if consumed <= big_bytes.len() {
                assert!(d.buffered() <= HEADER_LEN, "{} bytes buffered of a refused frame", d.buffered());
            }
        });
        let refused = DecodeError::TooLarge {
            declared: big_bytes.len() as u64,
            limit: 1024,
            kind: big.kind,
            request_id: big.request_id,
        };
        prop_assert_eq!(&items, &vec![Item::Error(refused), Item::Frame(next.clone())]);
        prop_assert!(dec.is_idle());

        let mut reader = ShortReader::new(&wire, &sizes);
        let mut dec = Decoder::<1024>::new();
        prop_assert_eq!(dec.read_frame(&mut reader).map(|f| Owned::of(&f)), Err(ReadError::Decode(refused)));
        prop_assert_eq!(reader.pos, HEADER_LEN);
        prop_assert_eq!(dec.read_frame(&mut reader).map(|f| Owned::of(&f)), Ok(next));
        prop_assert_eq!(reader.pos, wire.len());
        prop_assert_eq!(dec.read_frame(&mut reader).map(|f| Owned::of(&f)), Err(ReadError::Eof));
    }

    /// (d) A frame of another version, of any size, is skipped by its declared length.
    #[test]
    fn other_versions_are_skipped_by_their_length(
        frame in any_frame(3000),
        version in any::<u8>().prop_filter("not ours", |v| *v != VERSION),
        next in any_frame(300),
        sizes in chunk_sizes(),
    ) {
        let foreign = with_version(version, &frame);
        let wire = [foreign.clone(), next.encode()].concat();
        let mut dec = Decoder::<1024>::new();
        let items = feed(&mut dec, &wire, &sizes, |d, consumed| {
            if consumed <= foreign.len() {
                assert!(d.buffered() <= HEADER_LEN);
            }
        });
        let refused = DecodeError::UnsupportedVersion { version, kind: frame.kind, request_id: frame.request_id };
        prop_assert_eq!(items, vec![Item::Error(refused), Item::Frame(next)]);
    }

    /// (e) `read_frame` over a reader of random short reads returns the same frames and never reads
    /// past the end of the frame it returns.
    #[test]
    fn read_frame_takes_exactly_each_frame(frames in vec(any_frame(2048), 0..8), sizes in vec(1usize..=300, 1..16)) {
        let wire: Vec<u8> = frames.iter().flat_map(Owned::encode).collect();
        let mut reader = ShortReader::new(&wire, &sizes);
        let mut dec = Decoder::<4096>::new();
        let mut end = 0;
        for frame in &frames {
            let got = dec.read_frame(&mut reader).map(|f| Owned::of(&f));
            prop_assert_eq!(got.as_ref(), Ok(frame));
            end += frame.len();
            prop_assert_eq!(reader.pos, end, "read past the end of the frame");
            prop_assert!(dec.is_idle());
        }
        prop_assert_eq!(dec.read_frame(&mut reader).map(|f| Owned::of(&f)), Err(ReadError::Eof));
    }

    /// A datagram holding exactly one frame within the limit, then any number of zero bytes of
    /// padding, parses to it; one byte less does not, nor does any non-zero byte after it.
    #[test]
    fn datagrams_hold_exactly_one_frame(
        frame in any_frame(1100),
        cut in any::<usize>(),
        pad in 0usize..64,
        junk in 1u8..=255,
    ) {
        let bytes = frame.encode();
        let len = bytes.len();
        let parsed = parse_datagram(&bytes, 1024).map(|f| Owned::of(&f));
        let cut = cut % len;
        let truncated = parse_datagram(&bytes[..cut], 1024).map(|f| Owned::of(&f));
        let padded = parse_datagram(&[&bytes[..], &vec![0; pad]].concat(), 1024).map(|f| Owned::of(&f));
        let mut tail = vec![0; pad + 1];
        tail[cut % (pad + 1)] = junk;
        let trailing = parse_datagram(&[&bytes[..], &tail].concat(), 1024).map(|f| Owned::of(&f));
        if len <= 1024 {
            prop_assert_eq!(parsed, Ok(frame.clone()));
            prop_assert_eq!(padded, Ok(frame));
            prop_assert_eq!(truncated, Err(DatagramError::Truncated));
            prop_assert_eq!(trailing, Err(DatagramError::Trailing));
        } else {
            let refused = DatagramError::Decode(DecodeError::TooLarge {
                declared: len as u64,
                limit: 1024,
                kind: frame.kind,
                request_id: frame.request_id,
            });
            prop_assert_eq!(parsed, Err(refused));
            prop_assert_eq!(trailing, Err(refused));
            let want = if cut < HEADER_LEN { Err(DatagramError::Truncated) } else { Err(refused) };
            prop_assert_eq!(truncated, want);
        }
    }

    /// Random datagrams never panic the parser, which never returns an unsound frame.
    #[test]
    fn random_datagrams_never_panic(bytes in prop_oneof![
        vec(any::<u8>(), 0..1200),
        magic_rich_bytes(1200).prop_map(|b| [&MAGIC[..], &b].concat()),
    ]) {
        if let Ok(frame) = parse_datagram(&bytes, 1024) {
            assert_sound(&frame, 1024);
            prop_assert_eq!(frame.header.frame_len(), bytes.len() as u64);
        }
    }
}

proptest! {
    // Byte-at-a-time decoding is the slowest path: fewer, smaller cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// (a) The worst split: one byte at a time.
    #[test]
    fn valid_frames_survive_one_byte_chunks(frames in vec(any_frame(512), 0..5)) {
        let wire: Vec<u8> = frames.iter().flat_map(Owned::encode).collect();
        let mut dec = Decoder::<4096>::new();
        let items = feed(&mut dec, &wire, &[1], |d, _| assert!(d.buffered() <= 4096));
        let want: Vec<Item> = frames.into_iter().map(Item::Frame).collect();
        prop_assert_eq!(items, want);
        prop_assert!(dec.is_idle());
    }

    /// (c) Magic-free garbage fed one byte at a time.
    #[test]
    fn magic_free_garbage_one_byte_chunks(parts in vec((magic_free_garbage(32), any_frame(128)), 1..4)) {
        let mut wire = Vec::new();
        for (garbage, frame) in &parts {
            wire.extend_from_slice(garbage);
            wire.extend(frame.encode());
        }
        let garbage_len: usize = parts.iter().map(|(g, _)| g.len()).sum();
        let mut dec = Decoder::<4096>::new();
        let items = feed(&mut dec, &wire, &[1], |_, _| {});
        let frames: Vec<Owned> = items.iter().filter_map(Item::frame).cloned().collect();
        prop_assert_eq!(frames, parts.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>());
        prop_assert_eq!(items.iter().map(Item::untrusted_skip).sum::<usize>(), garbage_len);
    }
}

// ---------------------------------------------------------------------------------------------
// Error paths, one by one
// ---------------------------------------------------------------------------------------------

/// Reads everything with a reader that hands out `size` bytes a call.
fn read_with(bytes: &[u8], size: usize) -> (Vec<Item>, ReadError<Infallible>, usize) {
    let mut reader = ShortReader::new(bytes, &[size]);
    let (items, end) = read_all(&mut Decoder::<1024>::new(), &mut reader);
    (items, end, reader.pos)
}

#[test]
fn garbage_is_skipped_up_to_the_next_magic() {
    let good = echo(1, b"hello");
    let wire = [&[0x00, 0xE7, 0x00, 0x54, 0xE7][..], &good.encode()].concat();
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &wire),
        [
            Item::Error(DecodeError::Garbage { skipped: 5 }),
            Item::Frame(good.clone())
        ]
    );
    assert_eq!(DecodeError::Garbage { skipped: 5 }.code(), ErrorCode::Malformed);
    assert_eq!(DecodeError::Garbage { skipped: 5 }.request(), None);

    // read_frame takes the 24 bytes a header needs, drops the garbage and keeps the frame's start.
    let (items, end, pos) = read_with(&wire, 1024);
    assert_eq!(
        items,
        [Item::Error(DecodeError::Garbage { skipped: 5 }), Item::Frame(good)]
    );
    assert_eq!((end, pos), (ReadError::Eof, wire.len()));
}

#[test]
fn a_lone_first_magic_byte_at_the_end_waits_for_more() {
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &[0x01, 0xE7]),
        [Item::Error(DecodeError::Garbage { skipped: 1 })]
    );
    assert_eq!(dec.buffered(), 1);
    assert!(!dec.is_idle());
    let good = echo(2, b"x");
    // The E7 was not the start of a frame after all.
    let items = decode_whole(&mut dec, &good.encode());
    assert_eq!(
        items,
        [Item::Error(DecodeError::Garbage { skipped: 1 }), Item::Frame(good)]
    );
    assert!(dec.is_idle());
}

#[test]
fn header_crc_mismatch_resynchronises_on_the_next_magic() {
    let bad = {
        let mut b = echo(1, b"hello").encode();
        b[8] ^= 0x01; // request id, not covered by a recomputed CRC
        b
    };
    assert_ne!(
        crc32::checksum(&bad[..20]),
        u32::from_le_bytes(bad[20..24].try_into().unwrap())
    );
    let good = echo(2, b"world");
    let wire = [bad.clone(), good.encode()].concat();
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &wire),
        [
            Item::Error(DecodeError::HeaderCrc { skipped: bad.len() }),
            Item::Frame(good.clone())
        ]
    );
    assert_eq!(DecodeError::HeaderCrc { skipped: 1 }.code(), ErrorCode::Malformed);
    assert_eq!(DecodeError::HeaderCrc { skipped: 1 }.request(), None);

    // read_frame has only the header at hand when it notices; the body follows as garbage.
    let (items, end, pos) = read_with(&wire, 1024);
    assert_eq!(
        items,
        [
            Item::Error(DecodeError::HeaderCrc { skipped: HEADER_LEN }),
            Item::Error(DecodeError::Garbage { skipped: 5 }),
            Item::Frame(good),
        ]
    );
    assert_eq!((end, pos), (ReadError::Eof, wire.len()));
}

#[test]
fn a_frame_hidden_inside_a_bad_header_is_found() {
    // A damaged header whose 24 bytes contain the start of a real frame: the real frame is found.
    let good = echo(7, b"inner");
    let wire = [&MAGIC[..], &[1, 2, 3, 4, 5], &good.encode()].concat();
    for size in [1, 3, 24, 1024] {
        let mut dec = Decoder::<1024>::new();
        let items = feed(&mut dec, &wire, &[size], |_, _| {});
        assert_eq!(items.last(), Some(&Item::Frame(good.clone())), "chunks of {size}");
        assert_eq!(items.iter().map(Item::untrusted_skip).sum::<usize>(), 7);
    }
    let (items, _, _) = read_with(&wire, 5);
    assert_eq!(
        items,
        [Item::Error(DecodeError::HeaderCrc { skipped: 7 }), Item::Frame(good)]
    );
}

#[test]
fn too_large_is_refused_by_its_header() {
    let big = echo(9, &[0xAB; 1001]); // 1025 bytes
    let good = echo(10, b"next");
    let wire = [big.encode(), good.encode()].concat();
    let refused = DecodeError::TooLarge {
        declared: 1025,
        limit: 1024,
        kind: Kind::Echo,
        request_id: 9,
    };
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &wire),
        [Item::Error(refused), Item::Frame(good.clone())]
    );
    assert_eq!(refused.code(), ErrorCode::TooLarge);
    assert_eq!(refused.request(), Some((Kind::Echo, 9)));
    assert_eq!(
        refused.to_string(),
        "frame of 1025 bytes exceeds the limit of 1024 bytes"
    );

    // Only the header is examined; the rest is skipped even when it arrives in pieces.
    let mut dec = Decoder::<1024>::new();
    let (used, item) = dec.decode(&wire[..30]);
    assert_eq!((used, item.map(|r| r.map(|f| Owned::of(&f)))), (30, Some(Err(refused))));
    assert_eq!(dec.buffered(), 0);
    assert!(!dec.is_idle());
    let (used, item) = dec.decode(&wire[30..1025]);
    assert!(item.is_none());
    assert_eq!(used, 995);
    assert!(dec.is_idle());

    let (items, end, pos) = read_with(&wire, 100);
    assert_eq!(items, [Item::Error(refused), Item::Frame(good)]);
    assert_eq!((end, pos), (ReadError::Eof, wire.len()));
}

#[test]
fn the_limit_is_inclusive() {
    let exact = echo(1, &[0x11; 40]); // 64 bytes
    let over = echo(2, &[0x22; 41]); // 65 bytes
    let mut dec = Decoder::<64>::new();
    assert_eq!(dec.max_frame(), 64);
    let wire = [exact.encode(), over.encode(), exact.encode()].concat();
    for size in [1, 10, 64, 1000] {
        let items = feed(&mut dec, &wire, &[size], |d, _| assert!(d.buffered() <= 64));
        let refused = DecodeError::TooLarge {
            declared: 65,
            limit: 64,
            kind: Kind::Echo,
            request_id: 2,
        };
        assert_eq!(
            items,
            [
                Item::Frame(exact.clone()),
                Item::Error(refused),
                Item::Frame(exact.clone())
            ]
        );
        assert!(dec.is_idle());
    }
}

#[test]
fn unsupported_version_is_skipped_by_its_length() {
    let foreign = with_version(2, &echo(5, b"from the future"));
    let good = echo(6, b"now");
    let wire = [foreign, good.encode()].concat();
    let refused = DecodeError::UnsupportedVersion {
        version: 2,
        kind: Kind::Echo,
        request_id: 5,
    };
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &wire),
        [Item::Error(refused), Item::Frame(good.clone())]
    );
    assert_eq!(refused.code(), ErrorCode::UnsupportedVersion);
    assert_eq!(refused.request(), Some((Kind::Echo, 5)));

    let (items, end, pos) = read_with(&wire, 7);
    assert_eq!(items, [Item::Error(refused), Item::Frame(good)]);
    assert_eq!((end, pos), (ReadError::Eof, wire.len()));
}

#[test]
fn unsupported_version_wins_over_too_large() {
    let foreign = with_version(0, &echo(5, &[0; 2000]));
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &foreign),
        [Item::Error(DecodeError::UnsupportedVersion {
            version: 0,
            kind: Kind::Echo,
            request_id: 5
        })]
    );
    assert!(dec.is_idle());
}

#[test]
fn payload_crc_mismatch_drops_exactly_the_frame() {
    let mut bad = echo(3, b"hello").encode();
    *bad.last_mut().unwrap() ^= 0x20;
    let good = echo(4, b"again");
    let wire = [bad, good.encode()].concat();
    let refused = DecodeError::PayloadCrc {
        kind: Kind::Echo,
        request_id: 3,
    };
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &wire),
        [Item::Error(refused), Item::Frame(good.clone())]
    );
    assert_eq!(refused.code(), ErrorCode::BadCrc);
    assert_eq!(refused.request(), Some((Kind::Echo, 3)));

    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        feed(&mut dec, &wire, &[1], |_, _| {}),
        [Item::Error(refused), Item::Frame(good.clone())]
    );

    let (items, end, pos) = read_with(&wire, 3);
    assert_eq!(items, [Item::Error(refused), Item::Frame(good)]);
    assert_eq!((end, pos), (ReadError::Eof, wire.len()));
}

#[test]
fn a_damaged_metadata_byte_is_a_payload_crc_error() {
    let frame = Owned {
        meta: vec![1, 2, 3],
        ..echo(8, b"")
    };
    let mut bad = frame.encode();
    bad[HEADER_LEN] ^= 0x80;
    let mut dec = Decoder::<1024>::new();
    assert_eq!(
        decode_whole(&mut dec, &bad),
        [Item::Error(DecodeError::PayloadCrc {
            kind: Kind::Echo,
            request_id: 8
        })]
    );
}

#[test]
fn eof_between_frames_and_unexpected_eof_inside_one() {
    let frame = echo(1, b"hello");
    let bytes = frame.encode();

    // Nothing at all, and the end after a whole frame: a clean end.
    assert_eq!(read_with(&[], 8).1, ReadError::Eof);
    let (items, end, _) = read_with(&bytes, 8);
    assert_eq!((items, end), (vec![Item::Frame(frame)], ReadError::Eof));

    // Inside the header, inside the payload, on a lone first magic byte: unexpected.
    assert_eq!(read_with(&bytes[..10], 8), (vec![], ReadError::UnexpectedEof, 10));
    assert_eq!(read_with(&bytes[..27], 8), (vec![], ReadError::UnexpectedEof, 27));
    assert_eq!(read_with(&[0xE7], 8), (vec![], ReadError::UnexpectedEof, 1));

    // Inside the skipped part of a refused frame: unexpected too.
    let big = echo(2, &[0; 2000]).encode();
    let (items, end, pos) = read_with(&big[..1500], 64);
    assert!(matches!(items[..], [Item::Error(DecodeError::TooLarge { .. })]));
    assert_eq!((end, pos), (ReadError::UnexpectedEof, 1500));

    // Garbage and then the end: the garbage is reported, then a clean end.
    let (items, end, _) = read_with(&[1, 2, 3], 8);
    assert_eq!(
        (items, end),
        (vec![Item::Error(DecodeError::Garbage { skipped: 3 })], ReadError::Eof)
    );

    // After Eof, Eof again.
    let mut dec = Decoder::<64>::new();
    let mut reader = ShortReader::new(&[], &[1]);
    assert!(matches!(dec.read_frame(&mut reader), Err(ReadError::Eof)));
    assert!(matches!(dec.read_frame(&mut reader), Err(ReadError::Eof)));

    assert_eq!(ReadError::<Infallible>::Eof.to_string(), "connection closed");
    assert_eq!(
        ReadError::<Infallible>::UnexpectedEof.to_string(),
        "connection closed in the middle of a frame"
    );
}

#[test]
fn reader_errors_are_passed_on() {
    struct Broken;
    impl embedded_io::ErrorType for Broken {
        type Error = embedded_io::ErrorKind;
    }
    impl embedded_io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
            Err(embedded_io::ErrorKind::ConnectionReset)
        }
    }
    let mut dec = Decoder::<64>::new();
    assert!(matches!(
        dec.read_frame(&mut Broken),
        Err(ReadError::Io(embedded_io::ErrorKind::ConnectionReset))
    ));
}

#[test]
fn decode_of_nothing_is_nothing() {
    let mut dec = Decoder::<64>::new();
    let (used, item) = dec.decode(&[]);
    assert_eq!(used, 0);
    assert!(item.is_none());
    assert!(dec.is_idle());
}

#[test]
fn reset_forgets_a_partial_frame_and_a_pending_skip() {
    let frame = echo(1, b"hello").encode();
    let mut dec = Decoder::<64>::new();
    assert!(dec.decode(&frame[..10]).1.is_none());
    assert_eq!(dec.buffered(), 10);
    dec.reset();
    assert!(dec.is_idle());

    let big = echo(2, &[0; 100]).encode();
    assert!(matches!(
        dec.decode(&big[..50]).1,
        Some(Err(DecodeError::TooLarge { .. }))
    ));
    assert!(!dec.is_idle());
    dec.reset();
    assert!(dec.is_idle());
    let items = decode_whole(&mut dec, &frame);
    assert_eq!(items, [Item::Frame(echo(1, b"hello"))]);
}

// ---------------------------------------------------------------------------------------------
// Encoder errors
// ---------------------------------------------------------------------------------------------

#[test]
fn encode_raw_reports_a_small_buffer() {
    let mut out = [0u8; 28];
    assert_eq!(
        encode_raw(&mut out, FrameSpec::request(Kind::Echo, 1), &[], b"hello"),
        Err(EncodeError::BufferTooSmall {
            needed: 29,
            capacity: 28
        })
    );
    let mut out = [0u8; 29];
    assert_eq!(
        encode_raw(&mut out, FrameSpec::request(Kind::Echo, 1), &[], b"hello"),
        Ok(29)
    );
}

#[test]
fn metadata_is_limited_to_512_bytes() {
    let mut out = vec![0u8; 2048];
    let spec = FrameSpec::request(Kind::Echo, 1);
    assert_eq!(
        encode_raw(&mut out, spec, &[0; MAX_META_LEN + 1], b""),
        Err(EncodeError::MetaTooLarge)
    );
    assert_eq!(
        encode_raw(&mut out, spec, &[7; MAX_META_LEN], b""),
        Ok(HEADER_LEN + MAX_META_LEN)
    );

    // Typed metadata: a byte list of 510 is 2 + 510 bytes, one more byte is too many.
    let fits: &[u8] = &[1; 510];
    let n = encode(&mut out, spec, fits, b"").unwrap();
    assert_eq!(n, HEADER_LEN + MAX_META_LEN);
    let mut dec = Decoder::<2048>::new();
    let (_, item) = dec.decode(&out[..n]);
    assert_eq!(item.unwrap().unwrap().meta::<&[u8]>(), Ok(fits));
    let too_big: &[u8] = &[1; 511];
    assert_eq!(encode(&mut out, spec, too_big, b""), Err(EncodeError::MetaTooLarge));

    // write_frame has the same limit.
    let mut sink = Sink(Vec::new());
    assert_eq!(
        write_frame(&mut sink, spec, too_big, b""),
        Err(WriteError::Encode(EncodeError::MetaTooLarge))
    );
    assert!(sink.0.is_empty());
    assert_eq!(EncodeError::MetaTooLarge.to_string(), "metadata exceeds 512 bytes");
}

#[test]
fn encode_reports_a_small_buffer_at_each_stage() {
    let spec = FrameSpec::request(Kind::PutData, 1);
    let meta = PutData { offset: 300 }; // 2 bytes
                                        // No room for the header.
    let mut out = [0u8; 10];
    assert_eq!(
        encode(&mut out, spec, &meta, b"abc"),
        Err(EncodeError::BufferTooSmall {
            needed: HEADER_LEN,
            capacity: 10
        })
    );
    // Room for the header, not for the metadata.
    let mut out = [0u8; 25];
    match encode(&mut out, spec, &meta, b"abc") {
        Err(EncodeError::BufferTooSmall { needed, capacity }) => {
            assert_eq!(capacity, 25);
            assert!(needed > capacity);
        }
        other => panic!("{other:?}"),
    }
    // Room for header and metadata, not for the body.
    let mut out = [0u8; 28];
    assert_eq!(
        encode(&mut out, spec, &meta, b"abc"),
        Err(EncodeError::BufferTooSmall {
            needed: 29,
            capacity: 28
        })
    );
    let mut out = [0u8; 29];
    assert_eq!(encode(&mut out, spec, &meta, b"abc"), Ok(29));

    // encode_with: the fill closure says how much it wanted.
    let mut out = [0u8; 40];
    assert_eq!(
        encode_with(&mut out, spec, &meta, |_| Err(100)),
        Err(EncodeError::BufferTooSmall {
            needed: 26 + 100,
            capacity: 40
        })
    );
    let n = encode_with(&mut out, spec, &meta, |room| {
        assert_eq!(room.len(), 40 - 26);
        room[..4].copy_from_slice(b"data");
        Ok(4)
    })
    .unwrap();
    let mut dec = Decoder::<64>::new();
    let frame = dec.decode(&out[..n]).1.unwrap().unwrap();
    assert_eq!((frame.meta::<PutData>(), frame.body), (Ok(meta), &b"data"[..]));
    assert_eq!(
        EncodeError::BufferTooSmall {
            needed: 29,
            capacity: 28
        }
        .to_string(),
        "frame needs 29 bytes, buffer has 28"
    );
}

#[test]
fn a_body_longer_than_u32_is_refused() {
    // Only reachable in memory through a fill closure that claims more than it could write; the
    // length check comes before any use of the length.
    if usize::BITS > 32 {
        let mut out = [0u8; 64];
        let claimed = u32::MAX as usize + 1;
        assert_eq!(
            encode_with(&mut out, FrameSpec::request(Kind::Echo, 1), &(), |_| Ok(claimed)),
            Err(EncodeError::BodyTooLarge)
        );
    }
}

/// An `embedded_io::Write` into a `Vec`.
struct Sink(Vec<u8>);

impl embedded_io::ErrorType for Sink {
    type Error = Infallible;
}

impl embedded_io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

#[test]
fn write_frame_writes_what_encode_encodes() {
    let spec = FrameSpec::more(Kind::Get, 77);
    let meta = PutData { offset: 123_456 };
    let body = [0x5A; 300];
    let mut sink = Sink(Vec::new());
    write_frame(&mut sink, spec, &meta, &body).unwrap();
    let mut out = [0u8; 400];
    let n = encode(&mut out, spec, &meta, &body).unwrap();
    assert_eq!(sink.0, &out[..n]);
}

// ---------------------------------------------------------------------------------------------
// Frame accessors
// ---------------------------------------------------------------------------------------------

fn decode_one(bytes: &[u8]) -> Owned {
    let mut dec = Decoder::<1024>::new();
    match decode_whole(&mut dec, bytes).as_slice() {
        [Item::Frame(f)] => f.clone(),
        other => panic!("{other:?}"),
    }
}

/// Runs `f` on the frame decoded from `bytes`.
fn with_frame(bytes: &[u8], f: impl FnOnce(&Frame<'_>)) {
    let mut dec = Decoder::<1024>::new();
    let (_, item) = dec.decode(bytes);
    f(&item.expect("a frame").expect("a valid frame"));
}

#[test]
fn meta_refuses_trailing_short_and_invalid_bytes() {
    let spec = FrameSpec::request(Kind::PutData, 1);
    let mut out = [0u8; 64];
    // Exact: `PutData { offset: 300 }` is `ac 02`.
    let n = encode_raw(&mut out, spec, &[0xac, 0x02], b"").unwrap();
    with_frame(&out[..n], |f| {
        assert_eq!(f.meta::<PutData>(), Ok(PutData { offset: 300 }))
    });
    // One byte too many.
    let n = encode_raw(&mut out, spec, &[0xac, 0x02, 0x00], b"").unwrap();
    with_frame(&out[..n], |f| {
        assert_eq!(f.meta::<PutData>(), Err(ErrorCode::Malformed))
    });
    // Cut short: the varint says more follows.
    let n = encode_raw(&mut out, spec, &[0xac], b"").unwrap();
    with_frame(&out[..n], |f| {
        assert_eq!(f.meta::<PutData>(), Err(ErrorCode::Malformed))
    });
    // Not a bool.
    let n = encode_raw(&mut out, spec, &[0x02], b"").unwrap();
    with_frame(&out[..n], |f| assert_eq!(f.meta::<bool>(), Err(ErrorCode::Malformed)));
    // Not UTF-8.
    let n = encode_raw(&mut out, spec, &[0x02, 0xff, 0xfe], b"").unwrap();
    with_frame(&out[..n], |f| assert_eq!(f.meta::<&str>(), Err(ErrorCode::Malformed)));
    // Empty metadata is `()`, and only that.
    let n = encode_raw(&mut out, spec, &[], b"").unwrap();
    with_frame(&out[..n], |f| {
        assert_eq!(f.meta::<()>(), Ok(()));
        assert_eq!(f.meta::<PutData>(), Err(ErrorCode::Malformed));
    });
}

#[test]
fn error_gives_the_code_and_message_of_error_responses_only() {
    let mut out = [0u8; 128];
    let info = ErrorInfo {
        code: ErrorCode::NotFound as u16,
        message: "no such file",
    };
    let n = encode(&mut out, FrameSpec::error(Kind::Get, 3), &info, b"").unwrap();
    with_frame(&out[..n], |f| {
        assert_eq!(f.flags(), Flags::RESPONSE | Flags::ERROR);
        assert_eq!(f.error(), Some(info));
    });

    // The same metadata without the ERROR flag is not an error.
    let n = encode(&mut out, FrameSpec::response(Kind::Get, 3), &info, b"").unwrap();
    with_frame(&out[..n], |f| assert_eq!(f.error(), None));

    // An error response whose metadata cannot be read still reads as an error.
    let n = encode_raw(&mut out, FrameSpec::error(Kind::Get, 3), &[0x06, 0x05, b'a'], b"").unwrap();
    with_frame(&out[..n], |f| {
        assert_eq!(
            f.error(),
            Some(ErrorInfo {
                code: ErrorCode::Malformed as u16,
                message: "unreadable error metadata"
            })
        )
    });
    assert_eq!(decode_one(&out[..n]).flags, Flags(0x05));
}

#[test]
fn unknown_kinds_and_flags_survive_the_round_trip() {
    let frame = Owned {
        kind: Kind::from(0xEE),
        flags: Flags(0xF8),
        request_id: u32::MAX,
        meta: vec![],
        body: vec![],
    };
    assert_eq!(frame.kind, Kind::Unknown(0xEE));
    assert_eq!(decode_one(&frame.encode()), frame);
}

#[test]
fn the_reserved_byte_is_written_as_zero_and_ignored_when_read() {
    let frame = echo(1, b"r");
    let mut bytes = frame.encode();
    assert_eq!(bytes[5], 0);
    // A peer that sets it (and computes the header CRC over it) is still understood.
    bytes[5] = 0x99;
    let crc = crc32::checksum(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode_one(&bytes), frame);
}

// ---------------------------------------------------------------------------------------------
// Datagrams and `last_frame`
// ---------------------------------------------------------------------------------------------

#[test]
fn datagram_errors() {
    let good = echo(1, b"hello").encode();
    assert_eq!(parse_datagram(&good, 64).map(|f| Owned::of(&f)), Ok(echo(1, b"hello")));
    assert_eq!(
        parse_datagram(&[], 64).map(|f| Owned::of(&f)),
        Err(DatagramError::Truncated)
    );
    assert_eq!(
        parse_datagram(&good[..1], 64).map(|f| Owned::of(&f)),
        Err(DatagramError::Truncated)
    );
    assert_eq!(
        parse_datagram(&good[..28], 64).map(|f| Owned::of(&f)),
        Err(DatagramError::Truncated)
    );
    let two = [good.clone(), good.clone()].concat();
    assert_eq!(
        parse_datagram(&two, 64).map(|f| Owned::of(&f)),
        Err(DatagramError::Trailing)
    );
    assert_eq!(
        parse_datagram(&good, 28).map(|f| Owned::of(&f)),
        Err(DatagramError::Decode(DecodeError::TooLarge {
            declared: 29,
            limit: 28,
            kind: Kind::Echo,
            request_id: 1
        }))
    );
    assert_eq!(
        parse_datagram(&[1, 2, 3], 64).map(|f| Owned::of(&f)),
        Err(DatagramError::Decode(DecodeError::Garbage { skipped: 3 }))
    );
    let mut bad = good.clone();
    bad[9] ^= 1;
    assert!(matches!(
        parse_datagram(&bad, 64),
        Err(DatagramError::Decode(DecodeError::HeaderCrc { .. }))
    ));
    let mut bad = good.clone();
    bad[25] ^= 1;
    assert_eq!(
        parse_datagram(&bad, 64).map(|f| Owned::of(&f)),
        Err(DatagramError::Decode(DecodeError::PayloadCrc {
            kind: Kind::Echo,
            request_id: 1
        }))
    );
    let foreign = with_version(9, &echo(2, b"x"));
    assert_eq!(
        parse_datagram(&foreign, 64).map(|f| Owned::of(&f)),
        Err(DatagramError::Decode(DecodeError::UnsupportedVersion {
            version: 9,
            kind: Kind::Echo,
            request_id: 2
        }))
    );
    assert_eq!(
        DatagramError::Trailing.to_string(),
        "non-zero bytes after the frame in a datagram"
    );
}

#[test]
fn last_frame_is_the_frame_read_frame_returned_until_the_next_call() {
    let a = echo(1, b"first");
    let b = echo(2, b"second");
    let wire = [a.encode(), b.encode(), vec![0x00]].concat();
    let mut reader = ShortReader::new(&wire, &[3]);
    let mut dec = Decoder::<64>::new();
    assert!(dec.last_frame().is_none());
    assert_eq!(dec.read_frame(&mut reader).map(|f| Owned::of(&f)), Ok(a.clone()));
    assert_eq!(dec.last_frame().map(|f| Owned::of(&f)), Some(a));
    assert_eq!(dec.read_frame(&mut reader).map(|f| Owned::of(&f)), Ok(b.clone()));
    assert_eq!(dec.last_frame().map(|f| Owned::of(&f)), Some(b.clone()));
    // A fault clears it.
    assert!(matches!(
        dec.read_frame(&mut reader),
        Err(ReadError::Decode(DecodeError::Garbage { .. }))
    ));
    assert!(dec.last_frame().is_none());

    // So do decode and reset.
    let mut reader = ShortReader::new(&wire[29..], &[64]);
    assert!(dec.read_frame(&mut reader).is_ok());
    assert!(dec.last_frame().is_some());
    let _ = dec.decode(&[]);
    assert!(dec.last_frame().is_none());
    let mut reader = ShortReader::new(&wire[29..], &[64]);
    assert!(dec.read_frame(&mut reader).is_ok());
    dec.reset();
    assert!(dec.last_frame().is_none());
}
