//! # tether-core
//!
//! The device side of Tether: a framed-message protocol over TCP and UDP for microcontrollers.
//! `no_std`, no allocator, no `unsafe`.
//!
//! - [`wire`]: what the bytes mean — the 24-byte frame header, metadata messages, error codes.
//! - [`codec`]: a streaming [`codec::Decoder`] that finds frame boundaries in any split or merge of
//!   the byte stream, and encoders into buffers or onto `embedded_io::Write`.
//! - [`crc32`]: the frame checksum, table-driven on a microcontroller and SIMD on a host (`std`).
//! - [`hooks`]: a board's CRC unit, SHA-256, ChaCha20-Poly1305 and RNG engines in place of the
//!   software.
//! - [`session`]: the transport-independent session engine; [`serial`] drives it over a UART,
//!   `server` (feature `smoltcp`, on by default) over smoltcp's TCP and UDP.
//! - `secure` (feature `secure`): the Noise handshake and sealed frames of secure sessions.
//! - `dhcp` (feature `dhcp`): the device's address from DHCPv4, with a static fallback.
//! - `mdns` (feature `mdns`): the device's DNS-SD announcements and answers.
//! - `update` (feature `update`): signed firmware images, the A/B slot state machine and the
//!   update service's kinds.
//!
//! The byte-exact specification is `docs/PROTOCOL.md` in the repository.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

#[macro_use]
mod logging;

pub mod codec;
pub mod crc32;
#[cfg(feature = "dhcp")]
pub mod dhcp;
pub mod hooks;
#[cfg(feature = "mdns")]
pub mod mdns;
#[cfg(feature = "secure")]
pub mod secure;
pub mod wire;

pub use wire::msg;
pub mod serial;
#[cfg(feature = "smoltcp")]
pub mod server;
pub mod service;
pub mod session;
#[cfg(feature = "update")]
pub mod update;
