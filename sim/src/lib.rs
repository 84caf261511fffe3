//! # tether-sim
//!
//! The Tether device on a PC: `tether-core`'s server on the real smoltcp stack, with the
//! simulator's command set and storage. The `sim` binary wires it to a network; this library
//! also offers the in-process [`inproc::Stack`] used by `sim selftest` and the tests.
#![forbid(unsafe_code)]

pub mod device;
pub mod firmware;
pub mod fleet;
pub mod gateway;
pub mod inproc;
pub mod link;
pub mod node;
pub mod selftest;
pub mod serial;
pub mod store;
pub mod uplink;
