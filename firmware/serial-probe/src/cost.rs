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
//! of 256 bytes: the stack has no room for a whole chunk), and with `secure` the AEAD, in this
//! image (firmware/shared/floor.rs); `scripts/serial-probe.sh cost` and docs/BENCHMARKS.md, "What a byte costs on
//! the device".

use core::cell::RefCell;

use cortex_m::interrupt::Mutex;
use tether_core::outln;
use tether_core::service::exec::{Call, Command, Status};

use crate::{clock, floor, MAX_FRAME};

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

impl Meter {
    /// The figures since the reset at `now`; the pass running now so far counts as work.
    fn figures(&self, now: u64) -> floor::Figures {
        let running = now.wrapping_sub(self.top).saturating_sub(self.idle_in_pass);
        floor::Figures {
            work: (self.work_ticks + running, self.work_passes + 1),
            housekeeping: (self.housekeeping_ticks, self.housekeeping_passes),
            idle: self.idle_ticks,
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
            let figures = with(|m| m.figures(clock::ticks()));
            floor::report(call, &figures);
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
        ["floor", args @ ..] => {
            let args: &[&str] = args;
            match floor::bytes(call, args, floor::chunk(MAX_FRAME), MAX_FRAME) {
                Ok(len) => floors(call, len),
                Err(status) => status,
            }
        }
        _ => {
            outln!(call.out, "usage: cost [reset|floor [BYTES]]");
            Status::Done(2)
        }
    }
}

/// `cost floor [BYTES]`: the primitives, then (feature `secure`) the AEAD, one after the other so
/// that their buffers never share the stack.
fn floors(call: &mut Call<'_>, len: usize) -> Status {
    primitives(call, len);
    #[cfg(feature = "secure")]
    aead(call, len);
    outln!(
        call.out,
        "ticks: SysTick, core clock; instructions under -icount shift=0: x 62.5 (nRF51, 16 MHz), x 40 (AN386, 25 MHz)"
    );
    Status::Done(0)
}

/// The primitives, fed in pieces of 256 bytes: the micro:bit's 6 KiB stack has no room for a
/// chunk-sized buffer beside the command's callers (a 1 KiB one took it to 5.9 KiB).
#[inline(never)]
fn primitives(call: &mut Call<'_>, len: usize) {
    let mut buf = [0u8; 2 * 256 + 4];
    floor::primitives(call, len, &mut buf, ticks32);
}

/// The AEAD's whole chunk, in a frame of its own (called after `primitives` has returned): with
/// the command's callers it takes the sealed micro:bit's stack to about 6.6 KiB of its 7 KiB.
#[cfg(feature = "secure")]
#[inline(never)]
fn aead(call: &mut Call<'_>, len: usize) {
    let mut buf = [0x5au8; 960];
    let len = len.min(buf.len());
    floor::aead(call, &mut buf[..len], ticks32);
}

/// The clock's low 32 bits (the floor's counter wraps at 32 bits).
fn ticks32() -> u32 {
    clock::ticks() as u32
}
