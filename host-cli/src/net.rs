//! Connecting to a device over the PC's own network stack.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use serde::Serialize;
use tether_core::codec::{encode, parse_datagram};
use tether_core::msg;
use tether_core::wire::{Flags, FrameSpec, Kind};

use crate::client::Client;
use crate::error::{ClientError, Result};

/// A TCP connection with buffered reads and writes (the codec flushes after each frame).
pub struct TcpLink {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Read for TcpLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for TcpLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// A client over TCP.
pub type TcpClient = Client<FromStd<TcpLink>>;

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| ClientError::Connection(format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| ClientError::Connection(format!("{addr} resolves to no address")))
}

fn explain(addr: SocketAddr, e: &io::Error) -> ClientError {
    let hint = match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            " — is `sim` running, or are all the device's sessions busy? (start it with `cargo run --release --bin sim`)"
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => " — the device did not answer in time (raise --timeout?)",
        _ => "",
    };
    ClientError::Connection(format!("{e} at {addr}{hint}"))
}

/// Opens a TCP connection to `addr` (host:port) with `timeout` for connecting and for every read
/// and write.
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpClient> {
    let sa = resolve(addr)?;
    let stream = TcpStream::connect_timeout(&sa, timeout).map_err(|e| explain(sa, &e))?;
    let setup = || -> io::Result<TcpLink> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(TcpLink {
            reader: BufReader::with_capacity(256 * 1024, stream.try_clone()?),
            writer: BufWriter::with_capacity(256 * 1024, stream),
        })
    };
    let link = setup().map_err(|e| explain(sa, &e))?;
    Ok(Client::new(FromStd::new(link)))
}

/// A response received over UDP, owned.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Kind of the response.
    pub kind: Kind,
    /// Its metadata bytes.
    pub meta: Vec<u8>,
    /// Its body.
    pub body: Vec<u8>,
}

/// A client for the framed UDP port: one frame per datagram, with a timeout and retries.
pub struct UdpClient {
    socket: UdpSocket,
    peer: SocketAddr,
    next_id: u32,
    buf: Vec<u8>,
}

impl UdpClient {
    /// A client talking to `addr` (host:port).
    pub fn new(addr: &str, timeout: Duration) -> Result<Self> {
        let peer = resolve(addr)?;
        let local: SocketAddr = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .expect("literal");
        let socket =
            UdpSocket::bind(local).map_err(|e| ClientError::Connection(format!("cannot open a UDP socket: {e}")))?;
        socket
            .set_read_timeout(Some(timeout))
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        Ok(UdpClient {
            socket,
            peer,
            next_id: 1,
            buf: vec![0; 65536],
        })
    }

    /// The local socket (to wait for pushed events).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Encodes a request padded with zeros to [`msg::MAX_DATAGRAM`] bytes: the device answers
    /// no datagram with a larger one (PROTOCOL.md §1), and no answer is larger than that.
    /// Returns the datagram and its request id.
    fn datagram<M: Serialize + ?Sized>(&mut self, kind: Kind, meta: &M, body: &[u8]) -> Result<(Vec<u8>, u32)> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut out = vec![0u8; msg::MAX_DATAGRAM.max(24 + 512 + body.len())];
        let n = encode(&mut out, FrameSpec::request(kind, id), meta, body)
            .map_err(|e| ClientError::Local(format!("cannot encode the request: {e}")))?;
        if n > msg::MAX_DATAGRAM {
            return Err(ClientError::Local(format!(
                "a {n}-byte request exceeds the {}-byte UDP datagram limit",
                msg::MAX_DATAGRAM
            )));
        }
        out.truncate(msg::MAX_DATAGRAM);
        Ok((out, id))
    }

    /// Sends a request without waiting for its answer (which arrives on [`UdpClient::socket`]);
    /// returns its request id.
    pub fn send<M: Serialize + ?Sized>(&mut self, kind: Kind, meta: &M, body: &[u8]) -> Result<u32> {
        let (out, id) = self.datagram(kind, meta, body)?;
        self.socket
            .send_to(&out, self.peer)
            .map_err(|e| explain(self.peer, &e))?;
        Ok(id)
    }

    /// Sends a request and waits for its response, resending up to `tries` times on timeout
    /// (datagrams get lost; every UDP service is idempotent or harmless to repeat).
    pub fn call<M: Serialize + ?Sized>(&mut self, kind: Kind, meta: &M, body: &[u8], tries: u32) -> Result<Datagram> {
        let (out, id) = self.datagram(kind, meta, body)?;
        for _ in 0..tries.max(1) {
            self.socket
                .send_to(&out, self.peer)
                .map_err(|e| explain(self.peer, &e))?;
            loop {
                let got = match self.socket.recv_from(&mut self.buf) {
                    Ok((got, from)) if from == self.peer => got,
                    Ok(_) => continue,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                    Err(e) => return Err(explain(self.peer, &e)),
                };
                let Ok(frame) = parse_datagram(&self.buf[..got], self.buf.len()) else {
                    continue;
                };
                if frame.request_id() != id || !frame.flags().contains(Flags::RESPONSE) {
                    continue;
                }
                if let Some(e) = frame.error() {
                    return Err(ClientError::Device {
                        code: e.code,
                        message: e.message.to_string(),
                    });
                }
                return Ok(Datagram {
                    kind: frame.kind(),
                    meta: frame.meta.to_vec(),
                    body: frame.body.to_vec(),
                });
            }
        }
        Err(ClientError::Connection(format!(
            "no answer from {} over UDP after {} tries — is `sim` running?",
            self.peer,
            tries.max(1)
        )))
    }
}
