//! Firmware update on this board (feature `update`): the update service over the two slots and
//! the state record in the file-backed PSRAM (firmware/shared/psram_slots.rs), which the boot
//! stage (firmware/mps2-boot) reads to pick the image; the reset after `Reset`; the watchdog the
//! boot stage starts for a trial image, fed from the main loop; and the application's own
//! confirmation of a trial image once its self-test passed.

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, Ordering};

use tether_core::service::update::UpdateConfig;
use tether_core::update::{Board, BoardId, Boot, ImageKey, Slot, SlotState, Slots};

use crate::mmio::WATCHDOG;
use crate::psram_slots::{wdog, PsramSlots};
use crate::uart::Console;

mod key {
    include!(concat!(env!("OUT_DIR"), "/fw_key.rs"));
}

/// The board id images must name (or name any board).
pub const BOARD: &str = "mps2-an386";
/// How long a trial image serves before it confirms itself: it has outlived a watchdog period
/// and its main loop kept turning (its self-test). A host's `fw confirm` may come first.
pub const SELF_TEST_MS: u64 = 3000;
/// How long after a `Reset` request the reset happens: time for the answer to leave (a TCP
/// segment and its acknowledgement, or a few dozen bytes on the serial line).
pub const RESET_DELAY_MS: u64 = 100;

/// Set by `Board::schedule_reset` (the `Reset` request), taken by the main loop.
static RESET: AtomicBool = AtomicBool::new(false);

impl Board for PsramSlots {
    fn schedule_reset(&mut self) {
        RESET.store(true, Ordering::Release);
    }

    /// The boot stage starts the watchdog for a trial image (it is the one that runs
    /// `update::boot`); the application only feeds it.
    fn start_watchdog(&mut self) {}
}

/// Whether a `Reset` was asked for since the last call.
pub fn take_reset() -> bool {
    RESET.swap(false, Ordering::AcqRel)
}

/// Feeds the watchdog (harmless while it does not run). The boot stage locked its registers, so
/// they are unlocked for the feed and locked again.
pub fn feed_watchdog() {
    WATCHDOG.write(wdog::LOCK, wdog::UNLOCK);
    WATCHDOG.write(wdog::INTCLR, 1);
    WATCHDOG.write(wdog::LOCK, 0);
}

/// How this board takes updates.
pub fn config() -> UpdateConfig {
    UpdateConfig {
        key: ImageKey::from_bytes(&key::FW_KEY)
            .unwrap_or_else(|_| panic!("the built-in image key is not an Ed25519 key")),
        board: BoardId::new(BOARD).unwrap_or_else(|| panic!("board id")),
        allow_downgrade: false,
    }
}

/// The image running: the slot this build is linked for, on trial if the boot stage marked it so.
/// Prints it on the console.
pub fn running(slots: &mut PsramSlots, con: &mut Console) -> Boot {
    let slot = Slot::from_index(crate::config::SLOT).unwrap_or(Slot::A);
    let entry = Slots::open(slots).map(|s| *s.record().slot(slot)).ok();
    let trial = entry.is_some_and(|e| e.state == SlotState::Trial);
    match entry {
        Some(e) => {
            let _ = writeln!(
                con,
                "firmware: slot {}, version {}, {}",
                slot.index(),
                e.version,
                if trial {
                    "on trial: confirms itself after its self-test"
                } else {
                    e.state.name()
                }
            );
        }
        None => {
            let _ = writeln!(con, "firmware: slot {}, no valid state record", slot.index());
        }
    }
    Boot { slot, trial }
}

/// Test build (feature `hang`): stops here, before the main loop ever feeds the watchdog.
#[cfg(feature = "hang")]
pub fn hang(con: &mut Console) {
    let _ = writeln!(con, "hang: this test build stops here");
    // `black_box`: a loop the compiler cannot prove endless, so the code after the call stays
    // (this build is the real firmware with a hang at start, not a different program).
    while core::hint::black_box(true) {
        cortex_m::asm::nop();
    }
}

/// The test hook's power cut (feature `cut`): ends the emulator right after the first `n` bytes of
/// a record copy were written, as a power cut at that instant would.
#[cfg(feature = "cut")]
pub fn cut_power(n: usize) -> ! {
    let _ = writeln!(Console, "\nfwcut: power cut after {n} bytes of a record write");
    crate::rt::halt(0)
}

/// `fwcut N` arms the cut of the application's next record write after N bytes; `fwcut boot N`
/// the boot stage's next one (through the hook cell in the PSRAM).
#[cfg(feature = "cut")]
pub const CUT_COMMAND: tether_core::service::exec::Command<crate::app::FwCtx> = tether_core::service::exec::Command {
    name: "fwcut",
    help: "[boot] N: test hook: cut the power after N bytes of the next record write",
    run: cut_command,
};

#[cfg(feature = "cut")]
fn cut_command(
    ctx: &mut crate::app::FwCtx,
    call: &mut tether_core::service::exec::Call<'_>,
) -> tether_core::service::exec::Status {
    use tether_core::outln;
    use tether_core::service::exec::Status;
    let mut args = call.args.iter();
    let (boot, n) = match (args.next(), args.next()) {
        (Some(&"boot"), Some(n)) => (true, n.parse::<u32>()),
        (Some(n), None) => (false, n.parse::<u32>()),
        _ => (false, "".parse::<u32>()),
    };
    let Ok(n) = n else {
        outln!(call.out, "usage: fwcut [boot] N");
        return Status::Done(2);
    };
    if boot {
        PsramSlots::arm_cut_cell(n);
        outln!(call.out, "the boot stage's next record write stops after {n} bytes");
    } else {
        ctx.slots.cut = Some(n as usize);
        outln!(call.out, "the next record write stops after {n} bytes");
    }
    Status::Done(0)
}
