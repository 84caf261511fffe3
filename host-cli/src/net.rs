//! Connecting to a device over the PC's own network stack.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use serde::Serialize;
use tether_core::codec::{encode, parse_datagram};
use tether_core::wire::{Flags, FrameSpec, Kind};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::serial::SerialLink;

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
    Ok(Client::new(FromStd::new(tcp_link(addr, timeout)?)))
}

/// Either transport a session runs over.
pub enum AnyLink {
    /// A TCP connection.
    Tcp(TcpLink),
    /// A serial line.
    Serial(Box<SerialLink<serial2::SerialPort>>),
}

impl Read for AnyLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            AnyLink::Tcp(l) => l.read(buf),
            AnyLink::Serial(l) => l.read(buf),
        }
    }
}

impl Write for AnyLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            AnyLink::Tcp(l) => l.write(buf),
            AnyLink::Serial(l) => l.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            AnyLink::Tcp(l) => l.flush(),
            AnyLink::Serial(l) => l.flush(),
        }
    }
}

/// A client over either transport.
pub type AnyClient = Client<FromStd<AnyLink>>;

/// A session to `to`: `serial:PATH[@BAUD]` opens a serial line (a lossy client, see
/// [`Client::lossy`]), anything else is the TCP address `tcp_addr`.
pub fn open(to: &str, tcp_addr: &str, timeout: Duration) -> Result<AnyClient> {
    match crate::serial::parse_addr(to) {
        Some(addr) => {
            let addr = addr.map_err(ClientError::Local)?;
            let link = crate::serial::link(&addr, timeout)?;
            Ok(Client::lossy(FromStd::new(AnyLink::Serial(Box::new(link)))))
        }
        None => Ok(Client::new(FromStd::new(AnyLink::Tcp(tcp_link(tcp_addr, timeout)?)))),
    }
}

/// Whether `to` names a serial line.
pub fn is_serial(to: &str) -> bool {
    crate::serial::parse_addr(to).is_some()
}

fn tcp_link(addr: &str, timeout: Duration) -> Result<TcpLink> {
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
    setup().map_err(|e| explain(sa, &e))
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

    /// Sends a request and waits for its response, resending up to `tries` times on timeout
    /// (datagrams get lost; every UDP service is idempotent or harmless to repeat).
    pub fn call<M: Serialize + ?Sized>(&mut self, kind: Kind, meta: &M, body: &[u8], tries: u32) -> Result<Datagram> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut out = vec![0u8; 24 + 512 + body.len()];
        let n = encode(&mut out, FrameSpec::request(kind, id), meta, body)
            .map_err(|e| ClientError::Local(format!("cannot encode the request: {e}")))?;
        for _ in 0..tries.max(1) {
            self.socket
                .send_to(&out[..n], self.peer)
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
