//! # tether-host
//!
//! The PC side of Tether: a blocking [`client::Client`] that speaks the protocol over anything
//! that implements `embedded_io::{Read, Write}` — a std `TcpStream` through
//! `embedded-io-adapters`, or an in-process smoltcp socket in the simulator's self-test — and a
//! datagram client for the UDP services. It reuses `tether-core`'s codec: there is one
//! implementation of the protocol.
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod net;
pub mod serial;
pub mod units;

pub use client::Client;
pub use error::ClientError;
