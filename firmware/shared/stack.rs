//! Stack high-water mark: the stack's region (below the statics, see build.rs) is painted with a
//! pattern at boot, and the `stack` command reports how deep the stack has reached since (the
//! lowest word no longer holding the pattern). With the statics in the ELF's sections, this is
//! what says how much of a 16 KiB part a serial-only Tether needs.
//!
//! It is a lower bound: a frame's words that are reserved but never written keep the pattern.
//! What bounds the stack for sure is its region: overflowing it faults.
#![allow(unsafe_code)]

use core::ptr::{addr_of, read_volatile, write_volatile};

use tether_core::outln;
use tether_core::service::exec::{Call, Command, Status};

const PAINT: u32 = 0x5EED_F00D;

extern "C" {
    // cortex-m-rt's stack symbols, set by build.rs's memory.x: the bottom and the top of the
    // stack's region.
    static _stack_end: u32;
    static _stack_start: u32;
}

fn bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their contents (safe code).
    (addr_of!(_stack_end) as usize, addr_of!(_stack_start) as usize)
}

/// Paints the free RAM below the current stack pointer (less a margin for this function's own
/// frame). Call first thing in `main`.
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

/// `stack`: the deepest the stack has been, of how much.
pub fn command<C>(_: &mut C, call: &mut Call<'_>) -> Status {
    let (used, room) = high_water();
    outln!(call.out, "stack used {used} of {room} B");
    Status::Done(0)
}

/// The `stack` command for a command table.
pub const fn stack_command<C>() -> Command<C> {
    Command {
        name: "stack",
        help: "the deepest the stack has been since boot, of how much room",
        run: command::<C>,
    }
}
