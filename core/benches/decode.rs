//! Frame decoder throughput against two references.
//!
//! Run on a host with the SIMD CRC back end:
//!
//! ```text
//! cargo bench -p tether-core --features std --bench decode
//! ```
//!
//! Without `--features std` the bench still builds and runs, but `tether_core::crc32` is then the
//! firmware's table-driven CRC; those results are stored under groups suffixed `_crc-table` so that
//! criterion never compares them with the SIMD results.
//!
//! Every case consumes a ~1 MiB stream of frames in 1460-byte chunks (one TCP segment each):
//!
//! - `tether Decoder`: [`Decoder::decode`] on a stream of Echo frames with empty metadata;
//! - `memcpy+crc`: the same bytes copied chunk by chunk into a buffer as large as the decoder's and
//!   run through `tether_core::crc32` a buffer-full at a time, the floor no checking decoder that
//!   must hand out contiguous frames can beat;
//! - `tokio LengthDelimitedCodec`: tokio-util's codec on the same bodies, each behind a 4-byte
//!   length prefix, fed into a `BytesMut` and decoded until it returns `None`.
//!
//! Throughput counts frames (elements) and the wire bytes of that case's own stream.
//!
//! After criterion, a `cargo bench` run (not `--list`, `--test`, `--profile-time`, nor
//! `cargo test --benches`) times the three cases again interleaved, for about 2 s per body size,
//! and prints best and median ratios against the targets: on a shared machine that is steadier
//! than comparing criterion's figures, which are measured one case after the other.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput};
use tether_core::codec::{encode_raw, Decoder};
use tether_core::crc32::Crc32;
use tether_core::wire::{Frame, FrameSpec, Kind, HEADER_LEN};
use tokio_util::codec::{Decoder as _, LengthDelimitedCodec};

/// Bytes handed to the decoder per call: one TCP segment on Ethernet.
const CHUNK: usize = 1460;
/// Approximate stream length per iteration, so per-iteration overhead vanishes.
const STREAM_LEN: usize = 1 << 20;
/// The largest body benchmarked; the decoder is sized for it (and used as is for small frames).
const MAX_BODY: usize = 16 * 1024;

/// The decoder's buffer size, and the block size of the memcpy+crc floor.
const BLOCK: usize = HEADER_LEN + MAX_BODY;

type FrameDecoder = Decoder<BLOCK>;

/// Appended to group names when `tether_core::crc32` is the table-driven back end.
const GROUP_SUFFIX: &str = if cfg!(feature = "std") { "" } else { "_crc-table" };

/// The same frame bodies, framed two ways.
struct Streams {
    body_len: usize,
    frames: usize,
    /// Tether frames: 24-byte header, no metadata, the body.
    tether: Vec<u8>,
    /// Classic framing: 4-byte big-endian length, the body.
    prefixed: Vec<u8>,
}

impl Streams {
    fn new(body_len: usize) -> Self {
        let frames = (STREAM_LEN / (HEADER_LEN + body_len)).max(1);
        let mut tether = Vec::with_capacity(frames * (HEADER_LEN + body_len));
        let mut prefixed = Vec::with_capacity(frames * (4 + body_len));
        let mut frame = vec![0u8; HEADER_LEN + body_len];
        let mut body = vec![0u8; body_len];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for id in 0..frames {
            for b in body.iter_mut() {
                // xorshift64: incompressible, deterministic bodies.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = (state >> 32) as u8;
            }
            let spec = FrameSpec::request(Kind::Echo, id as u32);
            let n = encode_raw(&mut frame, spec, &[], &body).expect("frame fits");
            tether.extend_from_slice(&frame[..n]);
            prefixed.extend_from_slice(&(body_len as u32).to_be_bytes());
            prefixed.extend_from_slice(&body);
        }
        Streams {
            body_len,
            frames,
            tether,
            prefixed,
        }
    }

    /// The bodies in order, read back from the length-prefixed stream.
    fn bodies(&self) -> impl Iterator<Item = &[u8]> {
        self.prefixed.chunks(4 + self.body_len).map(|framed| &framed[4..])
    }
}

/// Feeds `stream` to `dec` chunk by chunk, handing every frame to `on_frame`.
fn tether_decode(dec: &mut FrameDecoder, stream: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
    for chunk in stream.chunks(CHUNK) {
        let mut input = chunk;
        loop {
            let (used, item) = dec.decode(input);
            input = &input[used..];
            match item {
                Some(Ok(frame)) => on_frame(frame),
                Some(Err(e)) => panic!("decode error: {e}"),
                None => break,
            }
        }
    }
}

/// Copies `stream` chunk by chunk into a block as large as the decoder's buffer and checksums each
/// block once it is full: every byte copied once and checksummed once, in spans long enough for
/// the widest CRC kernel.
fn memcpy_crc(block: &mut [u8; BLOCK], stream: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    let mut fill = 0;
    for chunk in stream.chunks(CHUNK) {
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let n = chunk.len().min(BLOCK - fill);
            block[fill..fill + n].copy_from_slice(&chunk[..n]);
            fill += n;
            chunk = &chunk[n..];
            if fill == BLOCK {
                // Opaque, so the copy cannot be elided in favour of reading the input directly.
                crc.update(black_box(&block[..]));
                fill = 0;
            }
        }
    }
    crc.update(black_box(&block[..fill]));
    crc.finish()
}

/// Feeds `stream` to tokio-util's codec chunk by chunk, handing every frame to `on_frame`.
fn tokio_decode(
    codec: &mut LengthDelimitedCodec,
    buf: &mut BytesMut,
    stream: &[u8],
    mut on_frame: impl FnMut(BytesMut),
) {
    for chunk in stream.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(buf).expect("valid length prefix") {
            on_frame(frame);
        }
    }
}

/// Decodes every stream once outside the measurement and checks the frames, so that the
/// benchmarked loops are known to do the full work.
fn verify(s: &Streams, dec: &mut FrameDecoder, codec: &mut LengthDelimitedCodec, buf: &mut BytesMut) {
    let mut expected = s.bodies();
    let mut n = 0;
    tether_decode(dec, &s.tether, |frame| {
        assert_eq!(frame.kind(), Kind::Echo);
        assert_eq!(frame.request_id(), n as u32);
        assert!(frame.meta.is_empty());
        assert_eq!(Some(frame.body), expected.next(), "tether frame {n}");
        n += 1;
    });
    assert_eq!(n, s.frames, "tether frame count");
    assert!(dec.is_idle());

    let mut expected = s.bodies();
    let mut n = 0;
    tokio_decode(codec, buf, &s.prefixed, |frame| {
        assert_eq!(Some(&frame[..]), expected.next(), "tokio frame {n}");
        n += 1;
    });
    assert_eq!(n, s.frames, "tokio frame count");
    assert!(buf.is_empty());

    let mut block = Box::new([0u8; BLOCK]);
    assert_eq!(
        memcpy_crc(&mut block, &s.tether),
        tether_core::crc32::checksum(&s.tether)
    );
}

/// One body size: its streams and every case's reusable state.
struct Case {
    name: &'static str,
    /// The target: this much of the throughput of case `.0` of [`NAMES`].
    target: (usize, f64),
    s: Streams,
    dec: Box<FrameDecoder>,
    codec: LengthDelimitedCodec,
    buf: BytesMut,
    block: Box<[u8; BLOCK]>,
}

impl Case {
    fn new(name: &'static str, body_len: usize, target: (usize, f64)) -> Self {
        let mut case = Case {
            name,
            target,
            s: Streams::new(body_len),
            dec: Box::new(FrameDecoder::new()),
            codec: LengthDelimitedCodec::new(),
            buf: BytesMut::with_capacity(2 * (4 + body_len).max(CHUNK)),
            block: Box::new([0; BLOCK]),
        };
        verify(&case.s, &mut case.dec, &mut case.codec, &mut case.buf);
        case
    }

    fn tether(&mut self) -> usize {
        let mut n = 0usize;
        tether_decode(&mut self.dec, black_box(&self.s.tether), |frame| {
            black_box(frame.body);
            n += 1;
        });
        debug_assert_eq!(n, self.s.frames);
        n
    }

    fn memcpy_crc(&mut self) -> u32 {
        memcpy_crc(&mut self.block, black_box(&self.s.tether))
    }

    fn tokio(&mut self) -> usize {
        let mut n = 0usize;
        tokio_decode(&mut self.codec, &mut self.buf, black_box(&self.s.prefixed), |frame| {
            black_box(frame);
            n += 1;
        });
        debug_assert_eq!(n, self.s.frames);
        n
    }
}

fn bench_case(c: &mut Criterion, case: &mut Case) {
    let frames = case.s.frames as u64;
    let mut group = c.benchmark_group(format!("{}{GROUP_SUFFIX}", case.name));

    group.throughput(Throughput::ElementsAndBytes {
        elements: frames,
        bytes: case.s.tether.len() as u64,
    });
    group.bench_function("tether Decoder", |b| b.iter(|| case.tether()));
    group.bench_function("memcpy+crc", |b| b.iter(|| case.memcpy_crc()));

    group.throughput(Throughput::ElementsAndBytes {
        elements: frames,
        bytes: case.s.prefixed.len() as u64,
    });
    group.bench_function("tokio LengthDelimitedCodec", |b| b.iter(|| case.tokio()));

    group.finish();
}

/// The three cases, in the order the ratio summary times them.
const NAMES: [&str; 3] = ["tether Decoder", "memcpy+crc", "tokio LengthDelimitedCodec"];

/// Times the three cases of `case` interleaved, round after round for about `budget`, so that load
/// from other processes hits all of them alike; prints best and median figures and ratios.
fn ratio_summary(case: &mut Case, budget: Duration) {
    fn time<T>(f: impl FnOnce() -> T) -> Duration {
        let start = Instant::now();
        black_box(f());
        start.elapsed()
    }
    let round = |case: &mut Case| {
        [
            time(|| case.tether()),
            time(|| case.memcpy_crc()),
            time(|| case.tokio()),
        ]
    };
    let warm_up: Duration = round(case).iter().sum();
    let rounds = (budget.as_secs_f64() / warm_up.as_secs_f64()).clamp(51.0, 1001.0) as usize;
    let mut t: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        for (i, d) in round(case).into_iter().enumerate() {
            t[i].push(d.as_secs_f64());
        }
    }
    for v in &mut t {
        v.sort_by(f64::total_cmp);
    }
    // [best, median] seconds per stream.
    let secs = |i: usize| [t[i][0], t[i][rounds / 2]];
    let frames = case.s.frames as f64;
    let bytes = [case.s.tether.len(), case.s.tether.len(), case.s.prefixed.len()];

    println!(
        "{}{GROUP_SUFFIX}: interleaved, {rounds} rounds, best | median",
        case.name
    );
    for (i, name) in NAMES.iter().enumerate() {
        let [best, median] = secs(i);
        println!(
            "  {name:<27} {:>8.3} | {:>8.3} Mframes/s  {:>6.2} | {:>6.2} GB/s",
            frames / best / 1e6,
            frames / median / 1e6,
            bytes[i] as f64 / best / 1e9,
            bytes[i] as f64 / median / 1e9,
        );
    }
    // The two tether cases process the same bytes and all three the same frames, so time ratios
    // are throughput ratios.
    let tether = secs(0);
    for (other, what) in [(1, "bytes/s"), (2, "frames/s")] {
        let versus = secs(other);
        let ratio = [versus[0] / tether[0], versus[1] / tether[1]];
        let mut line = format!(
            "  tether / {:<26} {:>5.2} | {:>5.2} ({what})",
            NAMES[other], ratio[0], ratio[1]
        );
        if other == case.target.0 {
            let verdict = |r: f64| if r >= case.target.1 { "met" } else { "MISSED" };
            line += &format!(
                "   target >= {:.2}: {} | {}",
                case.target.1,
                verdict(ratio[0]),
                verdict(ratio[1])
            );
        }
        println!("{line}");
    }
}

fn main() {
    let backend = if cfg!(feature = "std") {
        "crc32fast (SIMD)"
    } else {
        "crc crate, 256-entry table"
    };
    eprintln!("tether_core::crc32 back end: {backend}; chunk {CHUNK} bytes");

    let mut cases = [
        // 64-byte frames should match the classic framing's frames/s, 16 KiB frames should reach
        // 70 % of the copy-and-checksum floor.
        Case::new("decode_64B", 64, (2, 1.0)),
        Case::new("decode_16KiB", 16 * 1024, (1, 0.7)),
    ];
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        // The table-driven CRC runs at a few hundred MB/s; fewer samples fit its 4 s.
        .sample_size(if cfg!(feature = "std") { 40 } else { 20 })
        .configure_from_args();
    for case in &mut cases {
        bench_case(&mut c, case);
    }
    c.final_summary();

    // Only for a real `cargo bench` run (see the top of the file).
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--bench") && !["--list", "--test", "--profile-time"].iter().any(|f| has(f)) {
        for case in &mut cases {
            ratio_summary(case, Duration::from_secs(2));
        }
    }
}
