//! Helpers shared by the in-process server tests (`use crate::common::*;` in each module).
#![allow(dead_code, unused_macros)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use embedded_io::{Read as _, Write as _};
use sha2::{Digest as _, Sha256};
use tether_core::codec::{parse_datagram, Decoder};
use tether_core::msg::{self, Digest};
use tether_core::wire::{ErrorCode, Flags, Frame, Header, Kind};
use tether_host::client::{sha256_of, Transfer};
use tether_host::{Client, ClientError};
use tether_sim::inproc::{Conn, Datagrams, Shared, Stack, StackConfig};

/// The simulated device's largest frame.
pub const MAX_FRAME: usize = tether_sim::device::MAX_FRAME;
/// Largest chunk body the simulated device takes (what `hello` reports as `max_chunk`).
pub const MAX_CHUNK: usize = MAX_FRAME - tether_core::wire::HEADER_LEN - tether_core::service::CHUNK_META_ROOM;
/// Largest echo body: a frame of exactly `MAX_FRAME` bytes with empty metadata.
pub const MAX_ECHO: usize = MAX_FRAME - tether_core::wire::HEADER_LEN;

/// Deterministic pseudo-random bytes (xorshift32).
pub fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// SHA-256 of a byte slice.
pub fn sha(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// The device error code of a failed client call; panics on success or a non-device error.
pub fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("not a device error: {e}")),
        Ok(v) => panic!("expected a device error, got {v:?}"),
    }
}

/// A fresh stack with default sizes.
pub fn stack() -> Shared {
    Stack::new(StackConfig::default())
}

/// A protocol client on a new connection.
pub fn client(stack: &Shared) -> Client<Conn> {
    Stack::client(stack).expect("connect to the framed port")
}

/// Uploads `bytes` as `name` with the client's own `put`.
pub fn put(c: &mut Client<Conn>, name: &str, bytes: &[u8], overwrite: bool) -> Result<Transfer, ClientError> {
    let (digest, size) = sha256_of(bytes).expect("hash");
    c.put(name, &mut Cursor::new(bytes), size, digest, overwrite, |_| {})
}

/// Sends `PutBegin` for `bytes` as `name` by hand: the device's `PutReady`, or its error code.
pub fn put_begin(c: &mut Client<Conn>, name: &str, bytes: &[u8], overwrite: bool) -> Result<msg::PutReady, ErrorCode> {
    let begin = msg::PutBegin {
        name,
        size: bytes.len() as u64,
        sha256: sha(bytes),
        overwrite,
    };
    let id = c.send(Kind::PutBegin, &begin, &[]).expect("send PutBegin");
    let f = c.receive(id).expect("a PutBegin response");
    match frame_error(&f) {
        Some(code) => Err(code),
        None => Ok(f.meta::<msg::PutReady>().expect("PutReady")),
    }
}

/// Downloads `name` whole with the client's own `get` (which checks the digest).
pub fn get(c: &mut Client<Conn>, name: &str) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.get(name, 0, &mut out, Sha256::new(), |_| {})?;
    Ok(out)
}

/// Names of the visible files.
pub fn names(c: &mut Client<Conn>) -> Vec<String> {
    c.list().expect("list").into_iter().map(|f| f.name).collect()
}

/// The error code of a response frame, if it is an error.
pub fn frame_error(f: &Frame<'_>) -> Option<ErrorCode> {
    f.error()
        .map(|e| ErrorCode::from_u16(e.code).unwrap_or_else(|| panic!("unknown code {}", e.code)))
}

/// Receives the response to `id` on a client and decodes its metadata as `$t` (an owned
/// message type), or gives the device's error code.
macro_rules! answer {
    ($c:expr, $id:expr, $t:ty) => {{
        let f = $c.receive($id).expect("a response frame");
        match $crate::common::frame_error(&f) {
            Some(code) => Err(code),
            None => Ok(f.meta::<$t>().expect(concat!("metadata of type ", stringify!($t)))),
        }
    }};
}

/// Sends `bytes[from..]` as `PutData` chunks of at most `MAX_CHUNK` bytes, one at a time,
/// checking every acknowledgement.
pub fn send_rest(c: &mut Client<Conn>, bytes: &[u8], from: usize) {
    let mut at = from;
    while at < bytes.len() {
        let end = (at + MAX_CHUNK).min(bytes.len());
        let id = c
            .send(Kind::PutData, &msg::PutData { offset: at as u64 }, &bytes[at..end])
            .expect("send PutData");
        let f = c.receive(id).expect("a PutData response");
        assert_eq!(frame_error(&f), None, "PutData at {at}");
        assert_eq!(f.meta::<msg::PutAck>().expect("PutAck").received, end as u64);
        at = end;
    }
}

/// The bytes of one request frame.
macro_rules! frame {
    ($kind:expr, $id:expr, $meta:expr, $body:expr) => {{
        let body: &[u8] = $body;
        let mut buf = vec![0u8; tether_core::wire::HEADER_LEN + tether_core::wire::MAX_META_LEN + body.len()];
        let spec = tether_core::wire::FrameSpec::request($kind, $id);
        let n = tether_core::codec::encode(&mut buf, spec, $meta, body).expect("encode a request");
        buf.truncate(n);
        buf
    }};
}

/// Reads the rest of a `Get` stream whose request `id` (from `offset`) was sent; returns the
/// bytes and the final `FileDone`, or the device's error code. Bounded by `max_frames`.
pub fn finish_get(
    c: &mut Client<Conn>,
    id: u32,
    offset: u64,
    max_frames: usize,
) -> Result<(Vec<u8>, msg::FileDone), ErrorCode> {
    let mut out = Vec::new();
    for _ in 0..max_frames {
        let f = c.receive(id).expect("a Get response frame");
        if let Some(code) = frame_error(&f) {
            return Err(code);
        }
        if f.flags().contains(Flags::MORE) {
            let d = f.meta::<msg::GetData>().expect("GetData");
            assert_eq!(d.offset, offset + out.len() as u64, "chunks come in order without gaps");
            out.extend_from_slice(f.body);
        } else {
            let done = f.meta::<msg::FileDone>().expect("FileDone");
            assert!(f.body.is_empty());
            return Ok((out, done));
        }
    }
    panic!("Get stream longer than {max_frames} frames");
}

/// A response frame read off a raw connection, owned.
#[derive(Debug, Clone)]
pub struct Reply {
    pub header: Header,
    pub meta: Vec<u8>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A borrowed view, to decode metadata with `Frame::meta`.
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            header: self.header,
            meta: &self.meta,
            body: &self.body,
        }
    }

    /// The error code, if this is an error response.
    pub fn error(&self) -> Option<ErrorCode> {
        frame_error(&self.frame())
    }

    /// The error message, if this is an error response.
    pub fn message(&self) -> String {
        self.frame().error().map(|e| e.message.to_string()).unwrap_or_default()
    }
}

/// A raw TCP connection to the device with a decoder for what comes back: for frames a
/// well-behaved client would never send.
pub struct Raw {
    pub conn: Conn,
    decoder: Box<Decoder<{ 64 * 1024 }>>,
}

impl Raw {
    /// Connects to the framed TCP port.
    pub fn connect(stack: &Shared) -> Raw {
        let port = stack.borrow().server.config().tcp_port;
        let conn = Stack::connect(stack, port).expect("connect to the framed port");
        Raw {
            conn,
            decoder: Box::new(Decoder::new()),
        }
    }

    /// Writes bytes as they are.
    pub fn write(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).expect("write to the device");
    }

    /// Reads the next frame the device sends.
    pub fn read(&mut self) -> Reply {
        match self.decoder.read_frame(&mut self.conn) {
            Ok(f) => Reply {
                header: f.header,
                meta: f.meta.to_vec(),
                body: f.body.to_vec(),
            },
            Err(e) => panic!("reading a frame from the device: {e}"),
        }
    }

    /// Reads until the device ends the connection (EOF or reset); returns the bytes that
    /// arrived before. Panics if the connection is still open after `limit`.
    pub fn read_to_close(&mut self, limit: Duration) -> Vec<u8> {
        self.conn.set_timeout(limit);
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            assert!(
                start.elapsed() <= limit + Duration::from_secs(1),
                "the device did not close the connection"
            );
            match self.conn.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    panic!("the device did not close the connection")
                }
                Err(_) => return got,
            }
        }
    }
}

/// A framed datagram exchange on the device's UDP port: sends `request` and returns the first
/// datagram that comes back from that port.
pub fn udp_exchange(d: &mut Datagrams, port: u16, request: &[u8]) -> Vec<u8> {
    d.send(port, request).expect("send a datagram");
    let (bytes, from) = d.recv(Duration::from_secs(5)).expect("a datagram in reply");
    assert_eq!(from, port, "reply from the port the request went to");
    bytes
}

/// `frame` followed by zeros up to [`tether_core::msg::MAX_DATAGRAM`] bytes: the padding a
/// UDP client adds so that the device may answer (it never answers with a larger datagram).
pub fn padded(frame: &[u8]) -> Vec<u8> {
    let mut d = frame.to_vec();
    d.resize(d.len().max(tether_core::msg::MAX_DATAGRAM), 0);
    d
}

/// [`udp_exchange`] of a framed request padded to the full datagram size ([`padded`]).
pub fn udp_call(d: &mut Datagrams, port: u16, frame: &[u8]) -> Vec<u8> {
    udp_exchange(d, port, &padded(frame))
}

/// Sends a datagram and asserts that nothing comes back within `wait` (bounded).
pub fn udp_silence(d: &mut Datagrams, port: u16, request: &[u8], wait: Duration) {
    d.send(port, request).expect("send a datagram");
    if let Some((bytes, from)) = d.recv(wait) {
        panic!(
            "expected no answer, got {} bytes from port {from}: {:?}",
            bytes.len(),
            parse_datagram(&bytes, bytes.len()).map(|f| (f.kind(), f.error()))
        );
    }
}

/// Parses one framed datagram into an owned reply.
pub fn parse(bytes: &[u8]) -> Reply {
    let f = parse_datagram(bytes, bytes.len()).unwrap_or_else(|e| panic!("bad datagram from the device: {e}"));
    Reply {
        header: f.header,
        meta: f.meta.to_vec(),
        body: f.body.to_vec(),
    }
}

/// Whether `kind`/`flags`/`id` are those of the final response to a request.
pub fn is_response(r: &Reply, kind: Kind, id: u32) -> bool {
    r.header.kind == kind && r.header.request_id == id && r.header.flags.contains(Flags::RESPONSE)
}
