//! Stack high-water mark, shared by the serial probe and the MPS2 firmware (each includes this
//! file as its `stack` module): the stack's region is painted with a pattern at boot, and the
//! `stack` command reports how deep the stack has reached since (the lowest word no longer holding
//! the pattern). With the statics in the ELF's sections, this is what says how much RAM a device
//! needs.
//!
//! The region is cortex-m-rt's `_stack_end` .. `_stack_start`: on the probe a region of its own
//! below the statics (its build.rs), on the MPS2 firmware everything between the end of `.bss`
//! and the top of RAM.
//!
//! It is a lower bound: a frame's words that are reserved but never written keep the pattern.
//! What bounds the stack for sure is its region: overflowing it faults (on the probe; on the
//! firmware it would run into `.bss`).
#![allow(unsafe_code)]

use core::ptr::{addr_of, read_volatile, write_volatile};

use tether_core::outln;
use tether_core::service::exec::{Call, Command, Status};

const PAINT: u32 = 0x5EED_F00D;

extern "C" {
    // cortex-m-rt's stack symbols (the probe's memory.x sets them, the firmware takes link.x's):
    // the bottom and the top of the stack's region.
    static _stack_end: u32;
    static _stack_start: u32;
}

fn bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their contents (safe code).
    (addr_of!(_stack_end) as usize, addr_of!(_stack_start) as usize)
}

/// Paints the free RAM below the current stack pointer (less a margin for this function's own
/// frame). Call first thing in `main`; `stack reset` calls it again.
pub fn paint() {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut a = bottom;
    while a + 64 < sp {
        // SAFETY: [bottom, sp - 64) is RAM that no Rust object occupies: the unused part of the
        // stack's region (this frame and its callers' are above sp; the statics are elsewhere).
        unsafe { write_volatile(a as *mut u32, PAINT) };
        a += 4;
    }
}

/// Bytes of stack used at most since [`paint`], and bytes the stack has in all.
pub fn high_water() -> (usize, usize) {
    let (bottom, top) = bounds();
    let mut a = bottom;
    // SAFETY: as in `paint`; a word the stack has used is read only while the stack is above it
    // (this frame is the lowest live one, and it stops at the first used word).
    while a < top && unsafe { read_volatile(a as *const u32) } == PAINT {
        a += 4;
    }
    (top - a, top - bottom)
}

/// `stack [reset]`: the deepest the stack has been since boot (or since the last `reset`), of how
/// much. `reset` paints the free stack again, below this command's own frames, so that a run of
/// chosen requests measures their depth apart from the boot's (whose start-up may go deeper than
/// anything after it): the mark then counts at least the depth of the call that reset it.
pub fn command<C>(_: &mut C, call: &mut Call<'_>) -> Status {
    match call.args {
        [] => {}
        ["reset"] => paint(),
        _ => {
            outln!(call.out, "usage: stack [reset]");
            return Status::Done(2);
        }
    }
    let (used, room) = high_water();
    outln!(call.out, "stack used {used} of {room} B");
    Status::Done(0)
}

/// The `stack` command for a command table.
pub const fn stack_command<C>() -> Command<C> {
    Command {
        name: "stack",
        help: "[reset]: the deepest the stack has been since boot (or the last reset), of how much room",
        run: command::<C>,
    }
}
