//! What the firmware's work costs: the instruction meter and the `cost` command.
//!
//! Busy time is the LAN9118's free-running 25 MHz counter (`FREE_RUN`) between two passes of the
//! main loop, less the time asleep in WFI (`rt::take_idle_ticks`). It is split in two:
//!
//! - **work**: what moving frames and UART bytes costs: every pass that moved a frame or a byte
//!   or was woken by something other than the 1 kHz tick alone, with the interrupt handlers that
//!   ran in it (the UART's run between two WFIs of one sleep, `rt::sleep_unless`, and count with
//!   the pass that follows);
//! - **housekeeping**: what time alone costs: the passes the tick woke that moved nothing, the
//!   smoltcp poll of a pass that moved no frame (a tick that came while the UART was busy), the
//!   mixing of the entropy pool (every 100 ms). How many of those fall into a measurement depends
//!   on how long the host takes, not on the work, so they are counted apart.
//!
//! Under QEMU with `-icount shift=0` the virtual clock advances exactly 1 ns per instruction
//! executed, so `FREE_RUN` ticks x 40 are instructions: the same on every run.
//! `scripts/firmware.sh cost` resets the meter, runs a case, reads the meter and divides;
//! docs/BENCHMARKS.md, "What a byte costs on the device".
//!
//! The `cost` command is feature `cost` (`scripts/firmware.sh cost` builds with it): a product does
//! not need it, and its 2.5 KB of flash do not fit the open build's budget. The meter itself is
//! always there (`net` reports busy time from it). `cost floor` measures, in the same image, the
//! work a byte cannot avoid (SHA-256, CRC-32, copies, and with feature `secure`
//! ChaCha20-Poly1305) over buffers of the transfers' chunk size.

use crate::lan9118;
use crate::rt;

/// Busy and idle time since the last reset.
#[derive(Debug, Default, Clone, Copy)]
pub struct Meter {
    /// `FREE_RUN` at the top of the current pass.
    top: u32,
    /// The I/O signature (frames and UART bytes moved, summed) at the top of the current pass.
    io: u64,
    /// The current pass was woken by the tick alone.
    tick_only: bool,
    /// Housekeeping segments of the current pass so far (ticks).
    housekeeping_in_pass: u32,
    /// Work and housekeeping ticks since the reset; passes counted as work and as housekeeping.
    work_ticks: u64,
    work_passes: u32,
    housekeeping_ticks: u64,
    housekeeping_passes: u32,
    /// Ticks asleep in WFI since the reset.
    idle_ticks: u64,
    /// Ticks asleep in WFI since boot (the `net` command's busy figure).
    pub idle_since_boot: u64,
}

/// The start of a part of a pass that may turn out to be housekeeping ([`Meter::housekeeping`]).
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    start: u32,
}

impl Meter {
    /// Closes the pass that began at the last call: `io` is the I/O signature now (any number
    /// that changes whenever a frame or a UART byte moves). Call at the top of every pass.
    pub fn pass(&mut self, io: u64) {
        let now = lan9118::ticks();
        let idle = rt::take_idle_ticks();
        let busy = now.wrapping_sub(self.top).saturating_sub(idle);
        let rest = busy.saturating_sub(self.housekeeping_in_pass);
        self.housekeeping_ticks += u64::from(self.housekeeping_in_pass.min(busy));
        if io != self.io || !self.tick_only {
            self.work_ticks += u64::from(rest);
            self.work_passes += 1;
        } else {
            self.housekeeping_ticks += u64::from(rest);
            self.housekeeping_passes += 1;
        }
        self.idle_ticks += u64::from(idle);
        self.idle_since_boot += u64::from(idle);
        self.top = now;
        self.io = io;
        self.housekeeping_in_pass = 0;
        self.tick_only = false;
    }

    /// Says what woke the current pass: `tick_only` when the tick alone did.
    pub fn woke(&mut self, tick_only: bool) {
        self.tick_only = tick_only;
    }

    /// Starts a part of the pass that may be housekeeping.
    pub fn segment(&self) -> Segment {
        Segment {
            start: lan9118::ticks(),
        }
    }

    /// Counts the part begun at `segment` as housekeeping. (A UART handler that happens to run in
    /// it is counted with it: rare, as the tick's poll is short, and small.)
    pub fn housekeeping(&mut self, segment: Segment) {
        let took = lan9118::ticks().wrapping_sub(segment.start);
        self.housekeeping_in_pass = self.housekeeping_in_pass.saturating_add(took);
    }

    /// Starts a new measurement now (mid-pass: the rest of this pass is its first work).
    #[cfg(feature = "cost")]
    fn reset(&mut self) {
        self.idle_since_boot += u64::from(rt::take_idle_ticks());
        *self = Meter {
            top: lan9118::ticks(),
            io: self.io,
            idle_since_boot: self.idle_since_boot,
            ..Meter::default()
        };
    }
}

#[cfg(feature = "cost")]
pub use command::COMMAND;

#[cfg(feature = "cost")]
mod command {
    use core::hint::black_box;

    use sha2::{Digest as _, Sha256};
    use tether_core::outln;
    use tether_core::service::exec::{Call, Command, Status};
    use tether_core::service::CHUNK_META_ROOM;
    use tether_core::wire::HEADER_LEN;

    use crate::app::{FwCtx, MAX_FRAME};
    use crate::lan9118;

    /// The command table entry.
    pub const COMMAND: Command<FwCtx> = Command {
        name: "cost",
        help: "[reset|floor [BYTES]]: busy FREE_RUN ticks since the last reset (x 40 = instructions under -icount shift=0); floor: SHA-256, CRC-32, copies (and the AEAD) over BYTES",
        run: cost,
    };

    fn cost(ctx: &mut FwCtx, call: &mut Call<'_>) -> Status {
        match call.args {
            [] => {
                let m = &ctx.cost;
                // The pass running this command so far counts as work.
                let running = u64::from(lan9118::ticks().wrapping_sub(m.top));
                outln!(
                    call.out,
                    "cost work_ticks={} work_passes={} housekeeping_ticks={} housekeeping_passes={} idle_ticks={}",
                    m.work_ticks + running,
                    m.work_passes + 1,
                    m.housekeeping_ticks,
                    m.housekeeping_passes,
                    m.idle_ticks
                );
                Status::Done(0)
            }
            ["reset"] => {
                ctx.cost.reset();
                outln!(call.out, "cost reset");
                Status::Done(0)
            }
            ["floor"] => floor(call, chunk()),
            ["floor", bytes] => match bytes.parse::<usize>() {
                Ok(n) if (1..=MAX_FRAME).contains(&n) => floor(call, n),
                _ => {
                    outln!(call.out, "floor: BYTES is 1..={MAX_FRAME}");
                    Status::Done(2)
                }
            },
            _ => {
                outln!(call.out, "usage: cost [reset|floor [BYTES]]");
                Status::Done(2)
            }
        }
    }

    /// The largest data chunk of a transfer on this build (`Device::max_chunk`): a frame less its
    /// header and the chunk metadata's room, less sealing on a keyed board.
    fn chunk() -> usize {
        #[cfg(feature = "secure")]
        let frame = MAX_FRAME - tether_core::secure::SEAL_OVERHEAD;
        #[cfg(not(feature = "secure"))]
        let frame = MAX_FRAME;
        frame - HEADER_LEN - CHUNK_META_ROOM
    }

    /// Rounds of each floor measurement: about 92 KiB at the default chunk, enough that the counter's
    /// 40-instruction step and the 1 kHz tick's handler (~30 instructions a millisecond) vanish.
    const ROUNDS: u32 = 64;

    /// Ticks `f` takes for [`ROUNDS`] calls.
    fn timed(mut f: impl FnMut()) -> u32 {
        let start = lan9118::ticks();
        for _ in 0..ROUNDS {
            f();
        }
        lan9118::ticks().wrapping_sub(start)
    }

    /// Offset of a chunk's body in a received frame: header and a few bytes of metadata (the body of
    /// a `PutData` frame starts at 24 + 5 here), so copies out of a frame are misaligned.
    const BODY_OFFSET: usize = HEADER_LEN + 5;

    /// `cost floor [BYTES]`: each primitive over [`ROUNDS`] buffers of `len` bytes.
    fn floor(call: &mut Call<'_>, len: usize) -> Status {
        let mut src = [0u8; MAX_FRAME + 8];
        let mut dst = [0u8; MAX_FRAME + 8];
        for (i, b) in src.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        let mut hasher = Sha256::new();
        let sha = timed(|| hasher.update(black_box(&src[..len])));
        black_box(hasher.finalize());
        let crc = timed(|| {
            black_box(tether_core::crc32::checksum(black_box(&src[..len])));
        });
        let copy = timed(|| {
            dst[..len].copy_from_slice(black_box(&src[..len]));
            black_box(&mut dst);
        });
        // Out of a frame (misaligned source) into an aligned buffer, as the store's copy is.
        let copy_frame = timed(|| {
            dst[..len].copy_from_slice(black_box(&src[BODY_OFFSET..BODY_OFFSET + len]));
            black_box(&mut dst);
        });
        outln!(
            call.out,
            "floor bytes={len} rounds={ROUNDS} sha256_ticks={sha} crc32_ticks={crc} memcpy_ticks={copy} memcpy_unaligned_ticks={copy_frame}"
        );
        #[cfg(feature = "secure")]
        {
            let (seal, open) = aead(&mut src[..len]);
            outln!(call.out, "floor aead_seal_ticks={seal} aead_open_ticks={open}");
        }
        outln!(
            call.out,
            "ticks: LAN9118 FREE_RUN, 25 MHz; x 40 = instructions under -icount shift=0"
        );
        Status::Done(0)
    }

    /// ChaCha20-Poly1305 alone (RustCrypto's, as the sessions use it) sealing and opening `buf` in
    /// place [`ROUNDS`] times, with 16 bytes of associated data as a sealed frame has.
    #[cfg(feature = "secure")]
    fn aead(buf: &mut [u8]) -> (u32, u32) {
        use chacha20poly1305::aead::AeadInOut as _;
        use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _, Nonce, Tag};

        let cipher = ChaCha20Poly1305::new(&[0x42; 32].into());
        let ad = [0x17u8; 16];
        let mut tags = [[0u8; 16]; ROUNDS as usize];
        let mut n = 0usize;
        let seal = timed(|| {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(n as u64).to_le_bytes());
            let tag = cipher
                .encrypt_inout_detached(&Nonce::from(nonce), &ad, (&mut *buf).into())
                .unwrap_or_default();
            tags[n] = tag.into();
            n += 1;
        });
        // Open in reverse order, so each opens the layer its seal put on last.
        let open = timed(|| {
            n -= 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(n as u64).to_le_bytes());
            let ok = cipher
                .decrypt_inout_detached(&Nonce::from(nonce), &ad, (&mut *buf).into(), &Tag::from(tags[n]))
                .is_ok();
            black_box(ok);
        });
        (seal, open)
    }
}
