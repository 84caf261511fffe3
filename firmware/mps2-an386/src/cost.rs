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

    /// The figures since the reset; the pass running now so far counts as work.
    #[cfg(feature = "cost")]
    fn figures(&self) -> crate::floor::Figures {
        let running = u64::from(lan9118::ticks().wrapping_sub(self.top));
        crate::floor::Figures {
            work: (self.work_ticks + running, self.work_passes + 1),
            housekeeping: (self.housekeeping_ticks, self.housekeeping_passes),
            idle: self.idle_ticks,
        }
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
    use tether_core::outln;
    use tether_core::service::exec::{Call, Command, Status};

    use crate::app::{FwCtx, MAX_FRAME};
    use crate::floor;
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
                floor::report(call, &ctx.cost.figures());
                Status::Done(0)
            }
            ["reset"] => {
                ctx.cost.reset();
                outln!(call.out, "cost reset");
                Status::Done(0)
            }
            ["floor", args @ ..] => {
                let args: &[&str] = args;
                let len = match floor::bytes(call, args, floor::chunk(MAX_FRAME), MAX_FRAME) {
                    Ok(len) => len,
                    Err(status) => return status,
                };
                // Two whole chunks: the primitives take each chunk in one piece.
                let mut buf = [0u8; 2 * MAX_FRAME + 8];
                floor::primitives(call, len, &mut buf, lan9118::ticks);
                #[cfg(feature = "secure")]
                floor::aead(call, &mut buf[..len], lan9118::ticks);
                outln!(
                    call.out,
                    "ticks: LAN9118 FREE_RUN, 25 MHz; x 40 = instructions under -icount shift=0"
                );
                Status::Done(0)
            }
            _ => {
                outln!(call.out, "usage: cost [reset|floor [BYTES]]");
                Status::Done(2)
            }
        }
    }
}
