//! The boot stage of the MPS2 AN386 firmware: the `-kernel` image at the reset vector, never
//! updated. It reads the state record in the PSRAM, lets `tether_core::update::boot` pick the slot
//! (a trial image that was reset before it confirmed is reverted; an image on its trial boot gets
//! the watchdog), and runs the chosen image in place: VTOR, MSP and a jump to its reset vector.
//! Each image is linked for its slot's address (docs/PORTING.md §8 says why in place).
//!
//! It says on the console which slot and version it boots, and why (a revert, a trial). `unsafe`
//! lives in [`hw`] and in the PSRAM access of `psram_slots` only.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod hw;
#[path = "../../shared/psram_slots.rs"]
mod psram_slots;

use cortex_m_rt::entry;
use psram_slots::{body_at, PsramSlots, SLOT_SIZE};
use tether_core::update::image::HEADER_LEN;
use tether_core::update::{
    self, Board, Header, Record, Semver, Slot, SlotState, SlotStore, Slots, UpdateError, RECORD_LEN,
};

/// Data SRAM (SSRAM2/3), where every image's stack must start.
const RAM: core::ops::Range<u32> = 0x2000_0000..0x2040_0000;

impl Board for PsramSlots {
    /// `update::boot` never asks for a reset; should anything here, it happens at once.
    fn schedule_reset(&mut self) {
        cortex_m::peripheral::SCB::sys_reset();
    }

    fn start_watchdog(&mut self) {
        hw::start_watchdog();
    }
}

/// The test hook's power cut (feature `cut`): ends the emulator right after the first `n` bytes
/// of a record copy were written.
#[cfg(feature = "cut")]
fn cut_power(n: usize) -> ! {
    say("tether-boot: test hook: power cut after ");
    num(n as u32);
    say(" bytes of a record write\n");
    #[cfg(feature = "qemu")]
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_SUCCESS);
    hw::halt()
}

pub(crate) fn say(s: &str) {
    for b in s.bytes() {
        if b == b'\n' {
            hw::put(b'\r');
        }
        hw::put(b);
    }
}

/// A decimal number, without `core::fmt` (which would take a quarter of the 8 KiB).
fn num(mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        hw::put(d);
    }
}

fn version(v: Semver) {
    num(v.major.into());
    hw::put(b'.');
    num(v.minor.into());
    hw::put(b'.');
    num(v.patch.into());
}

fn slot_name(slot: Slot) {
    say("slot ");
    num(slot.index() as u32);
}

/// A board whose record copies are both unreadable was never provisioned: if slot 0 holds an image
/// (put there by the flashing step, `dd` into the PSRAM file under QEMU), it becomes the active
/// image, as `Slots::provision` would record it; `update::boot` then checks its hash before it runs.
fn provision(store: &mut PsramSlots) -> Result<(), UpdateError> {
    let mut buf = [0u8; HEADER_LEN];
    store.read(Slot::A, 0, &mut buf)?;
    let header = Header::parse(&buf).map_err(UpdateError::Image)?;
    if header.image_len() > u64::from(SLOT_SIZE) {
        return Err(UpdateError::NothingBootable);
    }
    store.write_record(1, &[0; RECORD_LEN])?;
    store.write_record(0, &Record::factory(Slot::A, &header).to_bytes())?;
    say("tether-boot: no record: factory image ");
    version(header.version);
    say(" in slot 0 made active\n");
    Ok(())
}

/// Why a slot's state changed during this boot, from the record before and after it.
fn report_changes(before: &Record, after: &Record) {
    for slot in Slot::BOTH {
        let (was, now) = (before.slot(slot), after.slot(slot));
        if was.state == now.state {
            continue;
        }
        say("tether-boot: ");
        slot_name(slot);
        say(" (");
        version(now.version);
        say(") ");
        say(match (was.state, now.state) {
            (SlotState::Trial, SlotState::Reverted) => "reverted: reset on its trial before it confirmed\n",
            (SlotState::Test, SlotState::Trial) => "starts its trial\n",
            (_, SlotState::Active) => "active again: the active image's hash is bad\n",
            _ => "dropped: its hash is bad\n",
        });
    }
}

/// The image's first two vector-table words make sense: a stack top in data SRAM and a Thumb
/// reset vector inside the body.
fn runnable(at: u32, body_len: u32) -> bool {
    let (sp, reset) = (hw::word(at), hw::word(at + 4));
    RAM.contains(&sp.wrapping_sub(1)) && reset & 1 == 1 && (at..at + body_len).contains(&(reset & !1))
}

fn failed(what: &str) -> ! {
    say("tether-boot: ");
    say(what);
    say(": nothing to run\n");
    hw::halt()
}

#[entry]
fn main() -> ! {
    hw::console_init();
    let mut store = PsramSlots::default();
    #[cfg(feature = "cut")]
    {
        store.cut = PsramSlots::take_cut_cell();
        if let Some(n) = store.cut {
            say("tether-boot: test hook armed: the next record write stops after ");
            num(n as u32);
            say(" bytes\n");
        }
    }
    let before = match Slots::open(&mut store) {
        Ok(s) => *s.record(),
        Err(UpdateError::NoRecord) => {
            if provision(&mut store).is_err() {
                failed("no record, no image in slot 0");
            }
            match Slots::open(&mut store) {
                Ok(s) => *s.record(),
                Err(_) => failed("record write"),
            }
        }
        Err(_) => failed("storage"),
    };
    let chosen = match update::boot(&mut store) {
        Ok(b) => b,
        Err(_) => failed("no image whose hash checks"),
    };
    let Ok(slots) = Slots::open(&mut store) else {
        failed("record read")
    };
    let after = *slots.record();
    report_changes(&before, &after);
    let entry = after.slot(chosen.slot);
    let mut header = [0u8; HEADER_LEN];
    let at = body_at(chosen.slot);
    if store.read(chosen.slot, 0, &mut header).is_err() {
        failed("slot read");
    }
    let Ok(header) = Header::parse(&header) else {
        failed("bad header")
    };
    if header.load_address != at || !runnable(at, header.body_len) {
        say("tether-boot: ");
        slot_name(chosen.slot);
        failed(": image linked for another address");
    }
    say("tether-boot: booting ");
    slot_name(chosen.slot);
    say(", version ");
    version(entry.version);
    say(if chosen.trial {
        ", on trial (watchdog on)\n"
    } else {
        ", active\n"
    });
    hw::jump(at)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // No message: formatting it would link `core::fmt`.
    say("\ntether-boot: PANIC\n");
    hw::halt()
}
