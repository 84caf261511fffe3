//! # tether-host
//!
//! The PC side of Tether: a blocking [`Client`] that speaks the protocol over anything that
//! implements `embedded_io::{Read, Write}` — a TCP connection ([`net::connect`]), an in-process
//! device ([`loopback::Loopback`]), or a smoltcp socket in the simulator's self-test — and a
//! [`net::UdpClient`] for the datagram services. It reuses `tether-core`'s codec: there is one
//! implementation of the protocol. `host-cli` is built on it (docs/CLI.md).
//!
//! Every call returns a [`ClientError`] on failure, whose `Display` is a sentence for a person
//! and whose variant says what kind of failure it is (the device refused, the connection broke,
//! the peer is not a Tether device, a local problem).
//!
//! ## Connect
//!
//! ```no_run
//! use std::time::Duration;
//! use tether_host::net::connect;
//!
//! // A board or `sim` on its framed TCP port.
//! let mut device = connect("127.0.0.1:7070", Duration::from_secs(5))?;
//! let info = device.hello("my-tool")?;
//! println!("{} speaks protocol v{}, UDP on port {}", info.device, info.version, info.udp_port);
//! # Ok::<(), tether_host::ClientError>(())
//! ```
//!
//! (`tests/tests/e2e_cli_trust.rs` does the same through `host-cli` against a running `sim`.)
//! The examples below run for real, against a device in this process:
//!
//! ```
//! # fn device() -> tether_host::Client<tether_host::loopback::Loopback<'static, (), tether_core::service::ramstore::RamStore<'static, 8>>> {
//! #     use tether_core::service::{builtin, exec::Command, ramstore::RamStore, Device, DeviceConfig};
//! #     static COMMANDS: [Command<()>; 1] = [builtin::uptime_command()];
//! #     let mem: &'static mut [u8] = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
//! #     let config = DeviceConfig { name: "doc-device", window: 4 };
//! #     let d = Device::new(config, RamStore::<8>::new(mem), &COMMANDS, (), 4096, 1);
//! #     tether_host::Client::new(tether_host::loopback::Loopback::new(d))
//! # }
//! use std::io::Cursor;
//! use sha2::{Digest as _, Sha256};
//! use tether_host::client::sha256_of;
//!
//! let mut device = device(); // a Client; over TCP it comes from `net::connect`
//!
//! // Info: what the device is.
//! let info = device.hello("my-tool")?;
//! assert_eq!(info.device, "doc-device");
//! assert!(info.commands.iter().any(|c| c == "uptime"));
//!
//! // Put: the file becomes visible only once its size and SHA-256 match.
//! let data = b"hello, device".repeat(1000);
//! let (sha, size) = sha256_of(&data[..]).expect("hashing memory does not fail");
//! let put = device.put("greeting.txt", &mut Cursor::new(&data), size, sha, false, |_acked| {})?;
//! assert_eq!((put.size, put.resumed_from), (13_000, 0));
//!
//! // Get: from offset 0, into any writer; the digest is checked at the end.
//! let mut back = Vec::new();
//! device.get("greeting.txt", 0, &mut back, Sha256::new(), |_received| {})?;
//! assert_eq!(back, data);
//!
//! // Exec: a registered command (never a shell); output streams to the closure.
//! let mut out = Vec::new();
//! let status = device.exec("uptime", &[], |chunk| out.extend_from_slice(chunk))?;
//! assert_eq!(status, 0);
//! assert!(String::from_utf8_lossy(&out).starts_with("up "));
//!
//! // A refusal is a `ClientError::Device` with the protocol's error code.
//! let err = device.stat("missing.txt").unwrap_err();
//! assert_eq!(err.code(), Some(tether_core::wire::ErrorCode::NotFound));
//! # Ok::<(), tether_host::ClientError>(())
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod discover;
pub mod error;
pub mod firmware;
pub mod loopback;
pub mod net;
pub mod secure;
pub mod serial;
pub mod targets;
pub mod units;

pub use client::Client;
pub use error::{Cause, ClientError, Over};
