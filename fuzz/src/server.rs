//! The `server` target: the whole request path of the simulated device.
//!
//! Each iteration builds the simulator's server ([`tether_sim::inproc::build_server`], the sim's
//! command table, a small RAM store) on its own smoltcp loopback interface with a virtual clock,
//! connects two TCP peers (A and B) to the framed port and opens a UDP socket, then carries out
//! the operations the input spells (bytes or frames to A or B, datagrams to the framed or the
//! plain UDP port, time passing, FIN, RST, reconnecting, a peer that stops reading), pumping the
//! stack after each one.
//!
//! Checked throughout: no panic; what the device sends on a TCP session is a clean frame stream
//! (it decodes without a single fault), every frame is a response (flag `RESPONSE`) to a request
//! id the peer sent (or 0, for faults without a trusted header), error responses carry readable
//! `ErrorInfo` with a known code; every datagram from the framed UDP port is exactly one frame
//! of at most [`DATAGRAM_MAX`] bytes: a response to an id sent, or an event; the device closes a
//! connection (FIN) only between frames; `stats.sessions_active` is the number of connected
//! sessions. At the end, with A and B reset, a fresh session must still get a valid `Hello`
//! answer and the UDP port must still answer `TimeGet`.
//!
//! With a key (mode bit 1) the device requires the secure-session handshake, and the fuzzer does
//! not hold the key: then additionally no session is ever answered anything but `Hello` or an
//! error, no datagram anything but `Hello`, `Echo`, `Upper`, `TimeGet` or an error, no event is
//! ever sent, and at the end nothing was uploaded, removed, run or set (PROTOCOL.md §16.3).
//!
//! Input layout: byte 0 picks the socket buffer size (bit 0: 2 KiB, or 40 KiB so that stream
//! frames are built in the transmit buffer) and whether the device has a key (bit 1); then
//! operations, each an op byte (low 4 bits: the
//! operation, bit 4: peer A or B, bit 5: a variant) and its arguments; see [`Op`].

use std::collections::HashSet;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use tether_core::codec::{encode, encode_raw, parse_datagram, Decoder};
use tether_core::msg;
use tether_core::server::{ServerConfig, DATAGRAM_MAX};
use tether_core::session::Limits;
use tether_core::service::ramstore::RamStore;
use tether_core::wire::{ErrorCode, Flags, Frame, FrameSpec, Kind, HEADER_LEN, VERSION};
use tether_sim::device::{after_poll, SimServer, MAX_FRAME, SESSIONS};
use tether_sim::inproc::build_server;
use tether_sim::store::SimStore;

/// Most operations carried out per input.
pub const MAX_OPS: usize = 48;
/// Largest filled body an operation asks for (a little over the device's frame limit).
pub const MAX_FILL: usize = MAX_FRAME + 2048;
/// Bytes of the device's RAM store.
pub const STORE: usize = 16 * 1024;

const DEVICE_IP: Ipv4Address = Ipv4Address::new(127, 0, 0, 1);
const HELLO_ID: u32 = 0x00FE_ED00;
const TIME_ID: u32 = 0x00BE_EF00;

/// The device's configuration: default ports, short timeouts so that time ops reach them.
pub fn config() -> ServerConfig {
    ServerConfig {
        limits: Limits {
            idle_ms: 10_000,
            garbage: 1024,
            ..Limits::DEFAULT
        },
        ..ServerConfig::default()
    }
}

/// One operation of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Raw bytes to a peer's connection. Encoding: `0x00|peer`, u16 length, bytes.
    Send { peer: usize, bytes: Vec<u8> },
    /// A frame with valid CRCs to a peer. Encoding: `0x01|peer`, kind, flags, u16 request id,
    /// u8 metadata length, metadata, then u16 body length and the body, or (variant bit) u16
    /// length and one fill byte.
    Frame { peer: usize, frame: FrameOp },
    /// A raw datagram. Encoding: `0x02|variant` (variant: the plain UDP port instead of the
    /// framed one), u16 length, bytes.
    Datagram { plain: bool, bytes: Vec<u8> },
    /// A frame with valid CRCs in one datagram to the framed port. Encoding: `0x03`, then as
    /// [`Op::Frame`].
    DatagramFrame { frame: FrameOp },
    /// Time passes. Encoding: `0x04`, u16 milliseconds (times 16 with the variant bit).
    Advance { ms: u32 },
    /// The peer closes its sending side (FIN). Encoding: `0x05|peer`.
    Close { peer: usize },
    /// The peer resets its connection (RST). Encoding: `0x06|peer`.
    Abort { peer: usize },
    /// The peer drops its connection (reset) and connects anew. Encoding: `0x07|peer`.
    Reconnect { peer: usize },
    /// The peer stops (or starts again) reading what the device sends. Encoding: `0x08|peer`.
    ToggleRead { peer: usize },
}

/// A frame an operation sends; its CRCs are computed by the encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameOp {
    /// Kind byte.
    pub kind: u8,
    /// Flags byte.
    pub flags: u8,
    /// Request id (16 bits in the input).
    pub request_id: u16,
    /// Metadata bytes (at most 255).
    pub meta: Vec<u8>,
    /// The body.
    pub body: Body,
}

/// A frame body: given bytes, or one byte repeated (for large frames from short inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `len` times `byte`.
    Fill { len: u16, byte: u8 },
}

const PEER: u8 = 0x10;
const VARIANT: u8 = 0x20;

impl FrameOp {
    /// A request with typed metadata and a body.
    pub fn request<M: serde::Serialize + ?Sized>(kind: Kind, request_id: u16, meta: &M, body: &[u8]) -> FrameOp {
        let mut buf = [0u8; 256];
        let n = tether_core::codec::encode_meta(meta, &mut buf).expect("seed metadata fits 255 bytes");
        FrameOp {
            kind: kind.into(),
            flags: 0,
            request_id,
            meta: buf[..n].to_vec(),
            body: Body::Bytes(body.to_vec()),
        }
    }

    fn body(&self) -> Vec<u8> {
        match &self.body {
            Body::Bytes(b) => b.clone(),
            Body::Fill { len, byte } => vec![*byte; (*len as usize).min(MAX_FILL)],
        }
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let body = self.body();
        let mut out = vec![0u8; HEADER_LEN + self.meta.len() + body.len()];
        let spec = FrameSpec {
            kind: Kind::from(self.kind),
            flags: Flags(self.flags),
            request_id: self.request_id as u32,
        };
        let n = encode_raw(&mut out, spec, &self.meta, &body).expect("metadata of at most 255 bytes");
        out.truncate(n);
        out
    }

    fn encode(&self, op: u8, out: &mut Vec<u8>) {
        let fill = matches!(self.body, Body::Fill { .. });
        out.push(op | if fill { VARIANT } else { 0 });
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.push(self.meta.len() as u8);
        out.extend_from_slice(&self.meta);
        match &self.body {
            Body::Bytes(b) => {
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
            Body::Fill { len, byte } => {
                out.extend_from_slice(&len.to_le_bytes());
                out.push(*byte);
            }
        }
    }

    fn parse(op: u8, r: &mut Input<'_>) -> Option<FrameOp> {
        let kind = r.byte()?;
        let flags = r.byte()?;
        let request_id = r.u16()?;
        let meta_len = r.byte()? as usize;
        let meta = r.bytes(meta_len).to_vec();
        let body = if op & VARIANT != 0 {
            Body::Fill {
                len: r.u16()?,
                byte: r.byte()?,
            }
        } else {
            let len = r.u16()? as usize;
            Body::Bytes(r.bytes(len).to_vec())
        };
        Some(FrameOp {
            kind,
            flags,
            request_id,
            meta,
            body,
        })
    }
}

impl Op {
    /// Appends the operation's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let peer = |p: usize| if p == 0 { 0 } else { PEER };
        match self {
            Op::Send { peer: p, bytes } => {
                out.push(peer(*p));
                out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Op::Frame { peer: p, frame } => frame.encode(0x01 | peer(*p), out),
            Op::Datagram { plain, bytes } => {
                out.push(0x02 | if *plain { VARIANT } else { 0 });
                out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Op::DatagramFrame { frame } => frame.encode(0x03, out),
            Op::Advance { ms } => {
                let (variant, units) = if *ms > u16::MAX as u32 {
                    (VARIANT, ms / 16)
                } else {
                    (0, *ms)
                };
                out.push(0x04 | variant);
                out.extend_from_slice(&(units.min(u16::MAX as u32) as u16).to_le_bytes());
            }
            Op::Close { peer: p } => out.push(0x05 | peer(*p)),
            Op::Abort { peer: p } => out.push(0x06 | peer(*p)),
            Op::Reconnect { peer: p } => out.push(0x07 | peer(*p)),
            Op::ToggleRead { peer: p } => out.push(0x08 | peer(*p)),
        }
    }

    fn parse(r: &mut Input<'_>) -> Option<Op> {
        let op = r.byte()?;
        let peer = usize::from(op & PEER != 0);
        Some(match op & 0x0F {
            0x00 => {
                let len = r.u16()? as usize;
                Op::Send {
                    peer,
                    bytes: r.bytes(len).to_vec(),
                }
            }
            0x01 => Op::Frame {
                peer,
                frame: FrameOp::parse(op, r)?,
            },
            0x02 => {
                let len = r.u16()? as usize;
                Op::Datagram {
                    plain: op & VARIANT != 0,
                    bytes: r.bytes(len).to_vec(),
                }
            }
            0x03 => Op::DatagramFrame {
                frame: FrameOp::parse(op, r)?,
            },
            0x04 => {
                let units = r.u16()? as u32;
                Op::Advance {
                    ms: if op & VARIANT != 0 { units * 16 } else { units },
                }
            }
            0x05 => Op::Close { peer },
            0x06 => Op::Abort { peer },
            0x07 => Op::Reconnect { peer },
            0x08 => Op::ToggleRead { peer },
            _ => return None,
        })
    }
}

/// Builds a server input from its parts (for seeds).
pub fn input(big_buffers: bool, ops: &[Op]) -> Vec<u8> {
    mode_input(u8::from(big_buffers), ops)
}

/// The input for `ops` against a device with a key the fuzzer does not hold (small buffers).
pub fn keyed_input(ops: &[Op]) -> Vec<u8> {
    mode_input(2, ops)
}

fn mode_input(mode: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![mode];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    /// Up to `n` bytes: fewer where the input ends.
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// What the device sent during an iteration (before the final check), for the seed tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Frames received on the TCP sessions.
    pub frames: usize,
    /// Of those, error responses.
    pub errors: usize,
    /// Frames received from the framed UDP port (responses and events).
    pub datagrams: usize,
    /// Of those, events.
    pub events: usize,
}

/// One fuzz iteration.
pub fn run(data: &[u8]) {
    run_report(data);
}

/// One fuzz iteration; tells what the device sent.
pub fn run_report(data: &[u8]) -> Report {
    let mut input = Input(data);
    let Some(mode) = input.byte() else {
        return Report::default();
    };
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        match Op::parse(&mut input) {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    let keyed = mode & 2 != 0;
    let mut world = World::new(if mode & 1 != 0 { 40 * 1024 } else { 2048 }, keyed);
    for op in &ops {
        world.apply(op);
    }
    let report = world.report;
    world.still_serves();
    if keyed {
        world.nothing_changed();
    }
    report
}

// ---------------------------------------------------------------------------------------------
// The world: device, interface, peers
// ---------------------------------------------------------------------------------------------

/// The memory of the device's RAM store, reused by every iteration.
static mut STORE_MEM: [u8; STORE] = [0; STORE];
/// Held while a server borrows `STORE_MEM` (tests run harnesses on several threads).
static STORE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The store memory, lent to one server at a time; given back when the lease is dropped.
struct Lease {
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl Lease {
    fn take() -> (Lease, &'static mut [u8]) {
        // A panic in an earlier iteration (in a test) dropped its server before the lock.
        let guard = STORE_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: the lock makes this the only live reference to STORE_MEM: it is held until the
        // `Lease` is dropped, which `World` does after dropping the server holding the reference
        // (field order).
        let mem: &'static mut [u8] = unsafe { &mut *std::ptr::addr_of_mut!(STORE_MEM) };
        mem.fill(0);
        (Lease { _guard: guard }, mem)
    }
}

/// A TCP peer of the device.
struct Peer {
    socket: Option<SocketHandle>,
    /// Bytes queued but not yet in the socket's transmit buffer.
    outbox: Vec<u8>,
    /// Decodes what the device sends.
    inbox: Box<Decoder<MAX_FRAME>>,
    /// Decodes what this peer sends, as the device does: which request ids it may answer.
    mirror: Box<Decoder<MAX_FRAME>>,
    ids: HashSet<u32>,
    reading: bool,
    /// Whether the `Hello` of the final check was answered.
    hello_answered: bool,
    /// The device has a key this peer does not hold.
    locked_out: bool,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            socket: None,
            outbox: Vec::new(),
            inbox: Box::new(Decoder::new()),
            mirror: Box::new(Decoder::new()),
            ids: HashSet::from([0]),
            reading: true,
            hello_answered: false,
            locked_out: false,
        }
    }

    /// Queues bytes; notes the request ids (of frames and of faults with a trusted header).
    fn queue(&mut self, bytes: &[u8]) {
        self.outbox.extend_from_slice(bytes);
        note_ids(&mut self.mirror, bytes, &mut self.ids);
    }

    /// Checks one frame from the device.
    fn received(&mut self, frame: &Frame<'_>) {
        if frame.kind() == Kind::Event && frame.flags() == Flags::NONE && frame.request_id() == 0 && !self.locked_out {
            // Pushed into a session that subscribed.
            frame.meta::<msg::Event<'_>>().expect("Event metadata");
            return;
        }
        assert!(
            !self.locked_out || frame.kind() == Kind::Hello || frame.flags().contains(Flags::ERROR),
            "a session without the key was served: {:?}",
            frame.header
        );
        assert!(
            frame.flags().contains(Flags::RESPONSE),
            "the device sent a TCP frame that is not a response: {:?}",
            frame.header
        );
        assert!(
            self.ids.contains(&frame.request_id()),
            "the device answered request id {} that was never sent: {:?}",
            frame.request_id(),
            frame.header
        );
        check_error_info(frame);
        if frame.kind() == Kind::Hello && frame.request_id() == HELLO_ID && !frame.flags().contains(Flags::ERROR) {
            let info: msg::Info<'_> = frame.meta().expect("Info metadata");
            assert_eq!(info.version, VERSION);
            assert_eq!(info.max_frame as usize, MAX_FRAME);
            assert_eq!(info.sessions as usize, SESSIONS);
            assert_eq!(info.storage_capacity, STORE as u64);
            assert!(info.commands.contains(&"led"), "{info:?}");
            self.hello_answered = true;
        }
    }
}

/// Feeds `bytes` to `decoder` and notes the request ids it finds: of frames, and of faults with
/// a trusted header (the device answers those too).
fn note_ids(decoder: &mut Decoder<MAX_FRAME>, bytes: &[u8], ids: &mut HashSet<u32>) {
    let mut rest = bytes;
    loop {
        let (used, item) = decoder.decode(rest);
        rest = &rest[used..];
        match item {
            Some(Ok(frame)) => {
                ids.insert(frame.request_id());
            }
            Some(Err(e)) => {
                if let Some((_, id)) = e.request() {
                    ids.insert(id);
                }
            }
            None => break,
        }
    }
}

/// An error response carries `ErrorInfo` with a known code.
fn check_error_info(frame: &Frame<'_>) {
    if frame.flags().contains(Flags::ERROR) {
        let info: msg::ErrorInfo<'_> = frame
            .meta()
            .unwrap_or_else(|_| panic!("unreadable ErrorInfo in {:?}", frame.header));
        assert!(
            ErrorCode::from_u16(info.code).is_some(),
            "unknown error code {} in {:?}",
            info.code,
            frame.header
        );
    }
}

fn tcp_socket(size: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size]),
        tcp::SocketBuffer::new(vec![0; size]),
    );
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    s
}

struct World {
    iface: Interface,
    phy: Loopback,
    sockets: SocketSet<'static>,
    server: Box<SimServer>,
    now_ms: i64,
    buffer: usize,
    peers: [Peer; 2],
    udp: SocketHandle,
    udp_ids: HashSet<u32>,
    udp_time_answered: bool,
    /// The device has a key (the fuzzer does not).
    keyed: bool,
    next_port: u16,
    report: Report,
    // Dropped last: after `server`, which borrows the store memory.
    _lease: Lease,
}

impl World {
    /// After a run without the key: no file, command, clock or message got through.
    fn nothing_changed(&self) {
        use tether_core::service::files::Storage;
        let device = &self.server.device;
        assert_eq!(device.storage.used(), 0, "a file was stored without the key");
        assert_eq!(device.stats.uploads, 0);
        assert!(!device.ctx.led, "a command ran without the key");
        assert!(device.ctx.inbox.is_empty(), "a message got in without the key");
        assert!(!device.clock.synced() || device.ctx.rtc, "the clock was set without the key");
    }

    /// A world whose device has a key nobody in it holds when `keyed`.
    fn new(buffer: usize, keyed: bool) -> World {
        let (lease, mem) = Lease::take();
        let store = SimStore::Ram(Box::new(RamStore::new(mem)));
        let mut phy = Loopback::new(Medium::Ethernet);
        let hw = HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 1]));
        let mut iface = Interface::new(Config::new(hw), &mut phy, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(DEVICE_IP), 8));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut server = build_server(&config(), buffer, tether_sim::device::SESSIONS, store, &mut sockets);
        if keyed {
            use tether_core::secure::{Lock, Psk};
            server.device.require_key(Lock::new(Psk::from_bytes([0x5a; 32]), [1; 32]));
        }
        let mut udp = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 64 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 24 * 1024]),
        );
        udp.bind(40000).expect("bind the peer's UDP socket");
        let udp = sockets.add(udp);
        let mut world = World {
            iface,
            phy,
            sockets,
            server,
            now_ms: 0,
            buffer,
            peers: [Peer::new(), Peer::new()],
            udp,
            udp_ids: HashSet::from([0]),
            udp_time_answered: false,
            keyed,
            next_port: 49152,
            report: Report::default(),
            _lease: lease,
        };
        for p in 0..2 {
            world.connect(p);
        }
        // The first packets wait for ARP, which smoltcp asks again only after a second.
        for _ in 0..5 {
            world.pump();
            if world.established(0) && world.established(1) {
                return world;
            }
            world.now_ms += 1000;
        }
        panic!("the peers could not connect");
    }

    fn established(&self, p: usize) -> bool {
        self.peers[p]
            .socket
            .is_some_and(|h| self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Established)
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.now_ms)
    }

    /// Replaces peer `p`'s connection (resetting the old one) with a new one, not yet established.
    fn connect(&mut self, p: usize) {
        self.drop_socket(p);
        self.next_port = if self.next_port == u16::MAX {
            49152
        } else {
            self.next_port + 1
        };
        let mut socket = tcp_socket(self.buffer);
        let remote = IpEndpoint::new(IpAddress::Ipv4(DEVICE_IP), config().tcp_port);
        socket
            .connect(self.iface.context(), remote, self.next_port)
            .expect("connect");
        self.peers[p] = Peer::new();
        self.peers[p].locked_out = self.keyed;
        self.peers[p].socket = Some(self.sockets.add(socket));
    }

    fn drop_socket(&mut self, p: usize) {
        if let Some(h) = self.peers[p].socket.take() {
            self.sockets.get_mut::<tcp::Socket>(h).abort();
            self.pump();
            self.sockets.remove(h);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Send { peer, bytes } => self.peers[*peer].queue(bytes),
            Op::Frame { peer, frame } => self.peers[*peer].queue(&frame.bytes()),
            Op::Datagram { plain: true, bytes } => self.datagram(config().plain_udp_port, bytes),
            Op::Datagram { plain: false, bytes } => self.datagram(config().udp_port, bytes),
            Op::DatagramFrame { frame } => {
                // Padded as real clients pad (PROTOCOL.md §1), so the answer is allowed back.
                let mut bytes = frame.bytes();
                bytes.resize(bytes.len().max(msg::MAX_DATAGRAM), 0);
                self.datagram(config().udp_port, &bytes)
            }
            Op::Advance { ms } => self.now_ms += *ms as i64,
            Op::Close { peer } => {
                if let Some(h) = self.peers[*peer].socket {
                    self.sockets.get_mut::<tcp::Socket>(h).close();
                }
            }
            Op::Abort { peer } => {
                if let Some(h) = self.peers[*peer].socket {
                    self.sockets.get_mut::<tcp::Socket>(h).abort();
                }
            }
            Op::Reconnect { peer } => self.connect(*peer),
            Op::ToggleRead { peer } => self.peers[*peer].reading ^= true,
        }
        self.pump();
    }

    fn datagram(&mut self, port: u16, bytes: &[u8]) {
        if port == config().udp_port {
            note_ids(&mut Decoder::new(), bytes, &mut self.udp_ids);
        }
        // The device reads datagrams into a 16 KiB buffer: larger ones cannot be sent at all.
        let to = IpEndpoint::new(IpAddress::Ipv4(DEVICE_IP), port);
        let _ = self.sockets.get_mut::<udp::Socket>(self.udp).send_slice(bytes, to);
    }

    /// Runs the stack until nothing moves (bounded), checking what the peers receive.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut any = self.push_outboxes();
            let now = self.now();
            any |= self.server.poll(now, &mut self.iface, &mut self.phy, &mut self.sockets);
            any |= after_poll(&mut self.server, &mut self.sockets);
            let active = self.server.device.stats.sessions_active as usize;
            assert_eq!(active, self.server.connected(), "stats.sessions_active is off");
            assert!(active <= SESSIONS);
            any |= self.read_peers();
            any |= self.read_udp();
            if !any {
                break;
            }
        }
    }

    fn push_outboxes(&mut self) -> bool {
        let mut any = false;
        for peer in &mut self.peers {
            let Some(h) = peer.socket else { continue };
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if peer.outbox.is_empty() || !s.can_send() {
                continue;
            }
            if let Ok(n) = s.send_slice(&peer.outbox) {
                peer.outbox.drain(..n);
                any |= n > 0;
            }
        }
        any
    }

    fn read_peers(&mut self) -> bool {
        let mut any = false;
        for (p, peer) in self.peers.iter_mut().enumerate() {
            let Some(h) = peer.socket else { continue };
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if !peer.reading {
                continue;
            }
            let mut buf = [0u8; 4096];
            while s.can_recv() {
                let Ok(n) = s.recv_slice(&mut buf) else { break };
                if n == 0 {
                    break;
                }
                any = true;
                let mut rest = &buf[..n];
                loop {
                    let (used, item) = peer.inbox.decode(rest);
                    rest = &rest[used..];
                    let frame = match item {
                        Some(Ok(frame)) => frame,
                        Some(Err(e)) => panic!("peer {p}: the device sent bytes that do not decode: {e:?}"),
                        None => break,
                    };
                    // `received` needs `peer` mutably while `frame` borrows its inbox: copy the
                    // frame's parts out first.
                    let header = frame.header;
                    let meta = frame.meta.to_vec();
                    let body = frame.body.to_vec();
                    self.report.frames += 1;
                    self.report.errors += usize::from(header.flags.contains(Flags::ERROR));
                    peer.received(&Frame {
                        header,
                        meta: &meta,
                        body: &body,
                    });
                }
            }
            // The device closes (FIN) only once everything asked for is answered: never inside
            // a frame. (A reset may cut a frame; that state is `Closed`.)
            let fin = matches!(
                s.state(),
                tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait
            );
            if fin && !s.can_recv() {
                assert!(
                    peer.inbox.is_idle(),
                    "peer {p}: the device closed its side inside a frame ({} bytes of it received)",
                    peer.inbox.buffered()
                );
            }
        }
        any
    }

    fn read_udp(&mut self) -> bool {
        let mut any = false;
        let udp = self.sockets.get_mut::<udp::Socket>(self.udp);
        while let Ok((data, meta)) = udp.recv() {
            any = true;
            if meta.endpoint.port != config().udp_port {
                continue; // the plain time service answers in text
            }
            assert!(data.len() <= DATAGRAM_MAX, "a datagram of {} bytes", data.len());
            let frame = parse_datagram(data, DATAGRAM_MAX)
                .unwrap_or_else(|e| panic!("the device sent a datagram that is not one frame: {e:?}"));
            self.report.datagrams += 1;
            if !frame.flags().contains(Flags::RESPONSE) {
                // Not a response: it must be a pushed event (an error answer to a peer's
                // request of kind Event is a response like any other).
                self.report.events += 1;
                assert!(!self.keyed, "a device with a key pushed an event to a datagram subscriber");
                assert_eq!(
                    (frame.kind(), frame.flags(), frame.request_id()),
                    (Kind::Event, Flags::NONE, 0),
                    "a datagram that is neither event nor response"
                );
                frame.meta::<msg::Event<'_>>().expect("Event metadata");
                continue;
            }
            assert!(
                self.udp_ids.contains(&frame.request_id()),
                "the device answered datagram request id {} that was never sent",
                frame.request_id()
            );
            assert!(
                !self.keyed
                    || frame.flags().contains(Flags::ERROR)
                    || tether_core::service::policy::rule(frame.kind()).udp_with_key,
                "a datagram to a device with a key was served: {:?}",
                frame.header
            );
            check_error_info(&frame);
            if frame.request_id() == TIME_ID && frame.kind() == Kind::TimeGet && !frame.flags().contains(Flags::ERROR) {
                frame.meta::<msg::Time>().expect("Time metadata");
                self.udp_time_answered = true;
            }
        }
        any
    }

    /// The device keeps serving: a fresh session gets a `Hello` answered, UDP a `TimeGet`.
    fn still_serves(&mut self) {
        for p in 0..2 {
            self.drop_socket(p);
        }
        let hello = {
            let mut out = [0u8; 128];
            let n = encode(
                &mut out,
                FrameSpec::request(Kind::Hello, HELLO_ID),
                &msg::Hello { client: "fuzz" },
                &[],
            )
            .unwrap();
            out[..n].to_vec()
        };
        let time = {
            let mut out = [0u8; 128];
            let n = encode(
                &mut out,
                FrameSpec::request(Kind::TimeGet, TIME_ID),
                &msg::TimeGet { format: "" },
                &[],
            )
            .unwrap();
            let mut padded = out[..n].to_vec();
            padded.resize(msg::MAX_DATAGRAM, 0);
            padded
        };
        self.udp_ids.insert(TIME_ID);
        // Sessions held by closing connections free up within the idle timeout: allow twice it.
        let rounds = 2 * config().limits.idle_ms as i64 / 250;
        for _ in 0..rounds {
            let open = self.peers[0]
                .socket
                .is_some_and(|h| self.sockets.get::<tcp::Socket>(h).is_open());
            if !open {
                self.connect(0);
                self.peers[0].queue(&hello);
            }
            if !self.udp_time_answered {
                self.datagram(config().udp_port, &time);
            }
            self.pump();
            if self.peers[0].hello_answered && self.udp_time_answered {
                return;
            }
            self.now_ms += 250;
        }
        assert!(self.peers[0].hello_answered, "a fresh session got no answer to Hello");
        assert!(self.udp_time_answered, "the UDP port no longer answers TimeGet");
    }
}
