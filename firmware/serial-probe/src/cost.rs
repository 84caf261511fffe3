//! What the probe's work costs: an instruction meter and the `cost` command, as the MPS2
//! firmware's (firmware/mps2-an386/src/cost.rs).
//!
//! The clock is SysTick: the millisecond count its handler keeps and its current value, in core
//! clock cycles (16 MHz on the nRF51, 25 MHz on the AN386). Under QEMU with `-icount shift=0` the
//! virtual clock advances 1 ns per instruction, so a tick is 62.5 instructions on the micro:bit
//! (40 on the AN386). Busy time is everything outside WFI ([`crate::sleep`]). A pass of the main
//! loop counts as **work** unless the tick alone woke it and it moved nothing: those passes
//! (the session's timers) are **housekeeping**, counted apart, as their number depends on how long
//! the host takes, not on the work.
//!
//! `cost floor` measures SHA-256, CRC-32 and a copy over the transfers' chunk size (fed in pieces
//! of 256 bytes: the stack has no room for a whole chunk), in this image; `scripts/serial-probe.sh cost` and docs/BENCHMARKS.md, "What a byte costs on
//! the device".

use core::cell::RefCell;
use core::hint::black_box;

use cortex_m::interrupt::Mutex;
use sha2::{Digest as _, Sha256};
use tether_core::outln;
use tether_core::service::exec::{Call, Command, Status};
use tether_core::service::CHUNK_META_ROOM;
use tether_core::wire::HEADER_LEN;

use crate::{clock, MAX_FRAME};

/// Busy and idle time since the last reset.
#[derive(Debug, Default, Clone, Copy)]
pub struct Meter {
    /// Clock ticks at the top of the current pass.
    top: u64,
    /// Bytes moved (in and out) at the top of the current pass.
    io: u64,
    /// The current pass was woken by the tick alone.
    tick_only: bool,
    /// Ticks asleep during the current pass.
    idle_in_pass: u64,
    work_ticks: u64,
    work_passes: u32,
    housekeeping_ticks: u64,
    housekeeping_passes: u32,
    idle_ticks: u64,
}

impl Meter {
    const fn new() -> Meter {
        Meter {
            top: 0,
            io: 0,
            tick_only: false,
            idle_in_pass: 0,
            work_ticks: 0,
            work_passes: 0,
            housekeeping_ticks: 0,
            housekeeping_passes: 0,
            idle_ticks: 0,
        }
    }
}

/// The meter, shared by the main loop and the `cost` command.
static METER: Mutex<RefCell<Meter>> = Mutex::new(RefCell::new(Meter::new()));

fn with<R>(f: impl FnOnce(&mut Meter) -> R) -> R {
    cortex_m::interrupt::free(|cs| f(&mut METER.borrow(cs).borrow_mut()))
}

/// Closes the pass begun at the last call; `io` counts the bytes moved so far. Call at the top of
/// every pass.
pub fn pass(io: u64) {
    let now = clock::ticks();
    with(|m| {
        let busy = now.wrapping_sub(m.top).saturating_sub(m.idle_in_pass);
        if io != m.io || !m.tick_only {
            m.work_ticks += busy;
            m.work_passes += 1;
        } else {
            m.housekeeping_ticks += busy;
            m.housekeeping_passes += 1;
        }
        m.idle_ticks += m.idle_in_pass;
        *m = Meter {
            top: now,
            io,
            tick_only: false,
            idle_in_pass: 0,
            ..*m
        };
    });
}

/// A sleep of `ticks` ended; `tick_only` when the tick alone ended it.
pub fn slept(ticks: u64, tick_only: bool) {
    with(|m| {
        m.idle_in_pass += ticks;
        m.tick_only = tick_only;
    });
}

/// The `cost` command.
pub const fn command<C>() -> Command<C> {
    Command {
        name: "cost",
        help: "[reset|floor [BYTES]]: busy clock ticks since the last reset (instructions under -icount shift=0: x 62.5 on the micro:bit, x 40 on the AN386); floor: SHA-256, CRC-32, a copy over BYTES",
        run: cost::<C>,
    }
}

fn cost<C>(_: &mut C, call: &mut Call<'_>) -> Status {
    match call.args {
        [] => {
            let now = clock::ticks();
            let m = with(|m| *m);
            // The pass running this command so far counts as work.
            outln!(
                call.out,
                "cost work_ticks={} work_passes={} housekeeping_ticks={} housekeeping_passes={} idle_ticks={}",
                m.work_ticks + now.wrapping_sub(m.top).saturating_sub(m.idle_in_pass),
                m.work_passes + 1,
                m.housekeeping_ticks,
                m.housekeeping_passes,
                m.idle_ticks
            );
            Status::Done(0)
        }
        ["reset"] => {
            let now = clock::ticks();
            with(|m| {
                *m = Meter {
                    top: now,
                    io: m.io,
                    ..Meter::new()
                }
            });
            outln!(call.out, "cost reset");
            Status::Done(0)
        }
        ["floor"] => floor(call, chunk()),
        ["floor", bytes] => match bytes.parse::<usize>() {
            Ok(n) if (1..=FLOOR_MAX).contains(&n) => floor(call, n),
            _ => {
                outln!(call.out, "floor: BYTES is 1..={FLOOR_MAX}");
                Status::Done(2)
            }
        },
        _ => {
            outln!(call.out, "usage: cost [reset|floor [BYTES]]");
            Status::Done(2)
        }
    }
}

/// The largest data chunk of a transfer (`Device::max_chunk`).
fn chunk() -> usize {
    MAX_FRAME - HEADER_LEN - CHUNK_META_ROOM
}

/// The floor's buffer, on the stack: the micro:bit's 6 KiB stack has no room for a chunk-sized
/// one beside the command's callers (a 1 KiB buffer took its high-water mark to 5.9 KiB), so each
/// chunk is fed to SHA-256 and CRC-32, and copied, in pieces of [`PIECE`] bytes.
const PIECE: usize = 256;
/// The most bytes a floor measurement takes as its chunk.
const FLOOR_MAX: usize = 4096;
/// Rounds of each floor measurement.
const ROUNDS: u32 = 32;

fn timed(mut f: impl FnMut()) -> u64 {
    let start = clock::ticks();
    for _ in 0..ROUNDS {
        f();
    }
    clock::ticks().wrapping_sub(start)
}

/// Calls `f` with the lengths of the pieces of a `len`-byte chunk.
fn pieces(len: usize, mut f: impl FnMut(usize)) {
    let mut left = len;
    while left > 0 {
        let n = left.min(PIECE);
        f(n);
        left -= n;
    }
}

/// `cost floor [BYTES]`: each primitive over [`ROUNDS`] chunks of `len` bytes (in pieces); the
/// copies move a piece from one half of the buffer to the other, aligned and then one byte off.
fn floor(call: &mut Call<'_>, len: usize) -> Status {
    let mut buf = [0u8; 2 * PIECE + 4];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let mut hasher = Sha256::new();
    let sha = timed(|| pieces(len, |n| hasher.update(black_box(&buf[..n]))));
    black_box(hasher.finalize());
    let crc = timed(|| {
        pieces(len, |n| {
            black_box(tether_core::crc32::checksum(black_box(&buf[..n])));
        })
    });
    let copy = timed(|| {
        pieces(len, |n| {
            buf.copy_within(..n, PIECE + 4);
            black_box(&mut buf);
        })
    });
    let copy_off = timed(|| {
        pieces(len, |n| {
            buf.copy_within(1..n + 1, PIECE + 4);
            black_box(&mut buf);
        })
    });
    outln!(
        call.out,
        "floor bytes={len} rounds={ROUNDS} sha256_ticks={sha} crc32_ticks={crc} memcpy_ticks={copy} memcpy_unaligned_ticks={copy_off}"
    );
    outln!(call.out, "ticks: SysTick, core clock; instructions under -icount shift=0: x 62.5 (nRF51, 16 MHz), x 40 (AN386, 25 MHz); pieces of {PIECE} B");
    Status::Done(0)
}
