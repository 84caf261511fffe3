//! The `cost` command's report line and its floor, shared by the MPS2 firmware and the serial
//! probe (each includes this file as its `floor` module). The floor: what a byte costs that no
//! implementation can avoid,
//! timed in the same image as the transfers it is compared with. SHA-256, CRC-32 and a copy, and
//! with feature `secure` ChaCha20-Poly1305, each over [`ROUNDS`] chunks of the transfers' chunk
//! size; `scripts/cost-report.py` divides by the bytes. docs/BENCHMARKS.md, "What a byte costs on
//! the device".
//!
//! The caller lends the buffer and the clock (its board's counter, as ticks that wrap at 32 bits):
//! a board with little stack (the micro:bit) lends a small buffer, and the chunk is then fed in
//! pieces of half of it; the AEAD needs a whole chunk in one piece (sealing in pieces would count
//! its per-call setup several times).

use core::hint::black_box;

use sha2::{Digest as _, Sha256};
use tether_core::outln;
use tether_core::service::exec::{Call, Status};
use tether_core::service::CHUNK_META_ROOM;
use tether_core::wire::HEADER_LEN;

/// What a meter reports: ticks and passes of work and of housekeeping, ticks asleep.
pub struct Figures {
    /// Busy ticks of work and how many passes.
    pub work: (u64, u32),
    /// Busy ticks of housekeeping and how many passes.
    pub housekeeping: (u64, u32),
    /// Ticks asleep.
    pub idle: u64,
}

/// The `cost` line: the meter's figures since its reset (ticks of the board's counter).
pub fn report(call: &mut Call<'_>, f: &Figures) {
    outln!(
        call.out,
        "cost work_ticks={} work_passes={} housekeeping_ticks={} housekeeping_passes={} idle_ticks={}",
        f.work.0,
        f.work.1,
        f.housekeeping.0,
        f.housekeeping.1,
        f.idle
    );
}

/// Rounds of each measurement: 30 KiB and more at the chunk sizes used, so that the counters' step
/// (40 and 62.5 instructions) and the tick's handler vanish in the total.
pub const ROUNDS: u32 = 32;

/// The largest data chunk of a transfer with frames of `max_frame` bytes (`Device::max_chunk`):
/// a frame less its header and the chunk metadata's room, less sealing with feature `secure`.
pub fn chunk(max_frame: usize) -> usize {
    #[cfg(feature = "secure")]
    let frame = max_frame - tether_core::secure::SEAL_OVERHEAD;
    #[cfg(not(feature = "secure"))]
    let frame = max_frame;
    frame - HEADER_LEN - CHUNK_META_ROOM
}

/// The chunk size `cost floor [BYTES]` asks for (`chunk` without BYTES), or the usage answer.
pub fn bytes(call: &mut Call<'_>, args: &[&str], chunk: usize, max: usize) -> Result<usize, Status> {
    match args {
        [] => Ok(chunk),
        [n] => match n.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => {
                outln!(call.out, "floor: BYTES is 1..={max}");
                Err(Status::Done(2))
            }
        },
        _ => {
            outln!(call.out, "usage: cost floor [BYTES]");
            Err(Status::Done(2))
        }
    }
}

/// Ticks `f` takes for [`ROUNDS`] calls.
fn timed(now: fn() -> u32, mut f: impl FnMut()) -> u32 {
    let start = now();
    for _ in 0..ROUNDS {
        f();
    }
    now().wrapping_sub(start)
}

/// Calls `f` with the lengths of the pieces of a `len`-byte chunk.
fn pieces(len: usize, piece: usize, mut f: impl FnMut(usize)) {
    let mut left = len;
    while left > 0 {
        let n = left.min(piece);
        f(n);
        left -= n;
    }
}

/// SHA-256, CRC-32 and the copies over [`ROUNDS`] chunks of `len` bytes, fed from `buf` in pieces
/// of half of it (all of `len` at once when it holds two chunks); the copies move a piece from one
/// half to the other, aligned, then one byte off. Prints the `floor` line.
pub fn primitives(call: &mut Call<'_>, len: usize, buf: &mut [u8], now: fn() -> u32) {
    let piece = (buf.len() - 4) / 2 & !3;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let mut hasher = Sha256::new();
    let sha = timed(now, || pieces(len, piece, |n| hasher.update(black_box(&buf[..n]))));
    black_box(hasher.finalize());
    let crc = timed(now, || {
        pieces(len, piece, |n| {
            black_box(tether_core::crc32::checksum(black_box(&buf[..n])));
        })
    });
    let copy = timed(now, || {
        pieces(len, piece, |n| {
            buf.copy_within(..n, piece + 4);
            black_box(&mut *buf);
        })
    });
    let copy_off = timed(now, || {
        pieces(len, piece, |n| {
            buf.copy_within(1..n + 1, piece + 4);
            black_box(&mut *buf);
        })
    });
    outln!(
        call.out,
        "floor bytes={len} rounds={ROUNDS} piece={} sha256_ticks={sha} crc32_ticks={crc} memcpy_ticks={copy} memcpy_unaligned_ticks={copy_off}",
        piece.min(len)
    );
}

/// ChaCha20-Poly1305 alone (RustCrypto's, as the sessions use it) over `buf` in place, [`ROUNDS`]
/// times, with 16 bytes of associated data as a sealed frame has: the ticks of the seals, and of
/// the opens (timed as seal-and-open pairs less the seals, so that each open checks a right tag
/// and decrypts). Prints the `floor aead` line.
#[cfg(feature = "secure")]
pub fn aead(call: &mut Call<'_>, buf: &mut [u8], now: fn() -> u32) {
    use chacha20poly1305::aead::AeadInOut as _;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _, Nonce};

    let cipher = ChaCha20Poly1305::new(&[0x42; 32].into());
    let ad = [0x17u8; 16];
    let nonce = Nonce::from([7u8; 12]);
    let seal = timed(now, || {
        black_box(cipher.encrypt_inout_detached(&nonce, &ad, (&mut *buf).into()).is_ok());
    });
    let pairs = timed(now, || {
        let tag = cipher
            .encrypt_inout_detached(&nonce, &ad, (&mut *buf).into())
            .unwrap_or_default();
        black_box(
            cipher
                .decrypt_inout_detached(&nonce, &ad, (&mut *buf).into(), &tag)
                .is_ok(),
        );
    });
    let open = pairs.wrapping_sub(seal);
    outln!(call.out, "floor aead_seal_ticks={seal} aead_open_ticks={open}");
}
