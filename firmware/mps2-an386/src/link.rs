//! What the Tether serial port (UART0) serves, and the `uart` command that reports on it.
//!
//! Normally Tether. `exec uart echo` (over the network) turns the port into a raw byte echo:
//! every byte received is sent back unchanged, through the same rings and handlers. That is the
//! honest baseline for serial throughput (`scripts/firmware.sh bench` compares `put`/`get` over
//! the UART with it) and a wiring check when porting; `exec uart tether` turns it back.

use tether_core::outln;
use tether_core::service::exec::{Call, Status};

use crate::app::FwCtx;
use crate::uart::{Counters, Serial};

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
    mode: Mode,
}

impl Link {
    /// The port, serving Tether.
    pub fn new(serial: Serial) -> Self {
        Link {
            serial,
            mode: Mode::Tether,
        }
    }

    /// Moves whatever can move now; returns whether anything did.
    pub fn serve(&mut self, control: &mut Control) -> bool {
        self.mode = control.mode;
        let progress = match self.mode {
            Mode::Echo => self.echo(),
            Mode::Tether => false,
        };
        control.counters = self.serial.counters();
        progress
    }

    /// Whether a pass would move something (checked with interrupts masked, before sleeping).
    pub fn has_work(&self) -> bool {
        match self.mode {
            Mode::Echo => self.serial.readable() > 0 && self.serial.writable() > 0,
            Mode::Tether => false,
        }
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
