//! Tether firmware for the Arm MPS2 AN386 board: Cortex-M4, SMSC LAN9118 Ethernet.
//!
//! The tether-core server (framed TCP and UDP, plain upper-echo and time ports, a RAM file
//! store, commands `uptime`, `stats`, `led`, `net`, `uart`) on smoltcp, on a LAN9118 driver of
//! its own, and Tether on a serial port (UART0, driven from its interrupts; the console is
//! UART1). Proven in QEMU (`-M mps2-an386`) by `scripts/firmware.sh test`.
//!
//! With feature `update` it serves firmware updates and runs from a slot of the PSRAM, started by
//! the boot stage (firmware/mps2-boot; [`update`]).
//!
//! `unsafe` lives in small modules only: [`mmio`] (volatile register access behind a safe
//! API), [`rt`] (start-up, exception and interrupt glue), `stack` (painting the free RAM the
//! stack may grow into, at boot, for the `stack` command's high-water mark; shared with the serial
//! probe, firmware/shared/stack.rs) and, with `update`, the PSRAM access of `psram_slots`
//! (shared with the boot stage). Everything else denies it.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod app;
mod clock;
mod cost;
#[cfg(feature = "secure")]
mod entropy;
#[cfg(feature = "cost")]
#[path = "../../shared/floor.rs"]
mod floor;
mod lan9118;
mod link;
mod mmio;
#[cfg(feature = "secure")]
mod noise;
#[cfg(feature = "update")]
#[path = "../../shared/psram_slots.rs"]
mod psram_slots;
mod rt;
#[path = "../../shared/stack.rs"]
mod stack;
mod uart;
#[cfg(feature = "update")]
mod update;
#[cfg(feature = "cut")]
use update::cut_power;

mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
