//! What the Tether serial port (UART0) serves, and the `uart` command that reports on it.
//!
//! Normally Tether: tether-core's [`tether_core::serial::Serial`] driver (COBS packets around one
//! session engine) over the interrupt-driven port of [`crate::uart`], sharing the network
//! server's `Device` (same store, commands and counters). `exec uart echo` (over the network) turns the port into a raw byte echo:
//! every byte received is sent back unchanged, through the same rings and handlers. That is the
//! honest baseline for serial throughput (`scripts/firmware.sh bench` compares `put`/`get` over
//! the UART with it) and a wiring check when porting; `exec uart tether` turns it back.

use static_cell::StaticCell;
use tether_core::outln;
use tether_core::serial::Serial as SerialDriver;
use tether_core::service::exec::{Call, Status};
use tether_core::session::Limits;

use crate::app::{FwCtx, FwDevice, MAX_FRAME};
use crate::uart::{Counters, Serial};

/// The serial driver: its session (2 x MAX_FRAME), unframer (MAX_FRAME) and I/O buffers.
static DRIVER: StaticCell<SerialDriver<MAX_FRAME>> = StaticCell::new();

/// What UART0 serves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tether frames (the default).
    #[default]
    Tether,
    /// A raw byte echo.
    Echo,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Tether => "tether",
            Mode::Echo => "echo",
        }
    }
}

/// The part of the command context that concerns the serial port.
#[derive(Debug, Default, Clone, Copy)]
pub struct Control {
    /// The mode asked for (by the `uart` command); the link follows it on its next pass.
    pub mode: Mode,
    /// The port's counters, copied after every pass.
    pub counters: Counters,
}

/// UART0 and what it serves.
pub struct Link {
    serial: Serial,
    driver: &'static mut SerialDriver<MAX_FRAME>,
    /// The last pass moved something, so the next may too.
    busy: bool,
}

impl Link {
    /// The port, serving Tether under `limits` (the network sessions' rules). Not inlined: the
    /// driver is built on the stack before it moves into its static, and that temporary belongs
    /// in a frame of its own, not in start-up's (see `app::start`).
    #[inline(never)]
    pub fn new(serial: Serial, limits: Limits) -> Self {
        Link {
            serial,
            driver: DRIVER.init(SerialDriver::new(limits)),
            busy: false,
        }
    }

    /// Moves whatever can move now, in the mode `device.ctx.uart` asks for; returns whether
    /// anything did.
    pub fn serve(&mut self, now_ms: u64, device: &mut FwDevice) -> bool {
        // Taken before serving: an interrupt from here on is seen by `has_work`.
        self.serial.take_event();
        self.busy = match device.ctx.uart.mode {
            Mode::Echo => self.echo(),
            Mode::Tether => match self.driver.poll(now_ms, &mut self.serial, device) {
                Ok(progress) => progress,
                Err(never) => match never {},
            },
        };
        device.ctx.uart.counters = self.serial.counters();
        self.busy
    }

    /// Whether a pass is due although nothing raised the port's event: in raw echo mode whenever
    /// bytes wait (a tail short of half a ring raises none), in Tether mode when the session has
    /// a deadline due (frame, idle, handshake: `Serial::deadline`).
    pub fn due(&self, now_ms: u64, device: &FwDevice) -> bool {
        match device.ctx.uart.mode {
            Mode::Echo => self.serial.readable() > 0,
            Mode::Tether => self.driver.deadline().is_some_and(|at| now_ms >= at),
        }
    }

    /// Whether another pass may move something now: the last one did, or an interrupt of the
    /// port raised its event since (checked with interrupts masked, right before sleeping): a
    /// packet ended, or a ring needs the loop (`uart::Serial::take_event`). Otherwise only an
    /// interrupt (the port's, the network's, the tick's) can change that, so sleeping is safe;
    /// the session's timers are checked on the tick.
    pub fn has_work(&self) -> bool {
        self.busy || self.serial.has_event()
    }

    /// Echoes what was received, never more than the TX ring takes (so nothing is dropped: the
    /// rest waits in the RX ring, and QEMU back-pressures the sender).
    fn echo(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        loop {
            let room = self.serial.writable().min(buf.len());
            let n = self.serial.take(&mut buf[..room]);
            if n == 0 {
                return any;
            }
            let sent = self.serial.give(&buf[..n]);
            debug_assert_eq!(sent, n);
            any = true;
        }
    }
}

/// `uart [status|echo|tether]`: the port's mode and counters, or a new mode.
pub fn command(ctx: &mut FwCtx, call: &mut Call<'_>) -> Status {
    let control = &mut ctx.uart;
    match call.args {
        ["echo"] => control.mode = Mode::Echo,
        ["tether"] => control.mode = Mode::Tether,
        ["status"] | [] => {}
        _ => {
            outln!(call.out, "usage: uart status|echo|tether");
            return Status::Done(2);
        }
    }
    let c = &control.counters;
    outln!(call.out, "uart0 {}", control.mode.name());
    outln!(
        call.out,
        "rx bytes {}  tx bytes {}  rx stalls {}  overruns {}",
        c.rx_bytes,
        c.tx_bytes,
        c.rx_stalls,
        c.overruns
    );
    Status::Done(0)
}
