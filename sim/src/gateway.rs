//! The rootless forwarder: PC sockets on 127.0.0.1 relayed into the virtual link by a second
//! smoltcp stack, the way QEMU's user-mode network forwards host ports to a guest.
//!
//! A PC program connects to `127.0.0.1:7070`; the gateway accepts it, opens its own smoltcp TCP
//! connection across the virtual link to the device's port 7070, and copies bytes both ways.
//! Each direction copies only what the other side can take at once, so TCP backpressure passes
//! through the gateway unchanged. UDP datagrams are relayed the same way, with one gateway UDP
//! socket per PC peer so that replies and pushed events find their way back.
//!
//! One gateway serves one device or many on a switch ([`Gateway::with_devices`]): each device
//! has its own PC addresses (the simulator gives device i its own loopback address), and the
//! gateway relays what arrives on them to that device.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress,
    IpAddress, IpCidr, IpEndpoint, Ipv4Address,
};

use crate::link::Port;
use crate::node::mac_for;

/// One forwarded port.
#[derive(Debug, Clone, Copy)]
pub struct Forward {
    /// Where PC programs connect.
    pub host: SocketAddr,
    /// The device's port behind it.
    pub device_port: u16,
}

/// One device behind the gateway and its forwarded ports.
#[derive(Debug, Clone)]
pub struct Forwards {
    /// The device's address on the link.
    pub device: Ipv4Address,
    /// Forwarded TCP ports.
    pub tcp: Vec<Forward>,
    /// Forwarded UDP ports.
    pub udp: Vec<Forward>,
}

struct Listener {
    os: TcpListener,
    device: Ipv4Address,
    device_port: u16,
    /// The PC socket may have connections waiting (reported by [`Gateway::wait`]).
    ready: bool,
}

struct Flow {
    os: TcpStream,
    handle: SocketHandle,
    device: Ipv4Address,
    os_eof: bool,
    os_shut: bool,
    dead: bool,
    device_port: u16,
    /// The device accepted the connection (it got past `SynSent`).
    connected: bool,
    /// A connection request to the device is out (the socket is in `SynSent`).
    asked: bool,
    /// When the PC connected: the order in which waiting connections are relayed.
    since: std::time::Instant,
    /// The PC peer has sent something while it waited (see [`Gateway::admit`]).
    spoke: bool,
}

/// The admission of waiting PC connections to one device port.
struct Admission {
    device: Ipv4Address,
    device_port: u16,
    /// No connection request before this.
    next: std::time::Instant,
    /// The pause after the device's last refusal (doubling up to [`KNOCK_EVERY`]).
    backoff: std::time::Duration,
}

struct Peer {
    addr: SocketAddr,
    handle: SocketHandle,
    used: std::time::Instant,
}

struct UdpForward {
    os: UdpSocket,
    device: Ipv4Address,
    device_port: u16,
    peers: Vec<Peer>,
    /// The PC socket may have datagrams waiting (reported by [`Gateway::wait`]).
    ready: bool,
}

/// Most UDP peers remembered per forwarded port (the least recently used is forgotten).
const UDP_PEERS: usize = 64;
const LISTENER_BASE: usize = 0;
const UDP_BASE: usize = 1 << 20;
const FLOW_BASE: usize = 2 << 20;
/// How often the gateway asks each of several devices for its MAC address itself (see
/// [`Gateway::prime_neighbors`]): well within smoltcp's 60 s neighbor lifetime.
const PRIME_EVERY: std::time::Duration = std::time::Duration::from_secs(20);
/// The token the Ctrl-C waker uses.
pub const WAKE: Token = Token(usize::MAX);
/// How long a PC connection waits for a free device session (the device refuses connections
/// while all its sessions are busy), as a connection in a listen backlog would.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest pause between connection requests while the device refuses them. The first
/// pause after a refusal is [`KNOCK_FIRST`], and a session ending on the device (seen as its
/// relay closing) ends the pause at once.
const KNOCK_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
const KNOCK_FIRST: std::time::Duration = std::time::Duration::from_millis(1);

/// The PC-side stack.
pub struct Gateway {
    /// The gateway's interface on the virtual link.
    pub iface: Interface,
    /// Its end of the link.
    pub phy: Port,
    sockets: SocketSet<'static>,
    /// The devices behind the gateway.
    devices: Vec<Ipv4Address>,
    /// When the gateway last asked every device for its MAC address (several devices only).
    primed: Option<std::time::Instant>,
    /// The waker fired since the last [`Gateway::wait`].
    woken: bool,
    poll: Poll,
    events: Events,
    listeners: Vec<Listener>,
    udps: Vec<UdpForward>,
    flows: Vec<Option<Flow>>,
    admissions: Vec<Admission>,
    socket_buffer: usize,
    scratch: Vec<u8>,
    next_port: u16,
    /// Bit flips in relayed TCP payload bytes, above TCP (see [`Gateway::corrupt_stream`]).
    stream_faults: Option<StreamFaults>,
}

/// Flips single bits in the TCP byte stream the forwarder relays, in both directions, after the
/// PC's kernel and smoltcp have checked their checksums: unlike link `--corrupt`, which TCP's
/// checksum catches, these damaged bytes reach Tether's own CRCs.
#[derive(Clone)]
struct StreamFaults {
    /// Probability that a relayed byte gets one bit flipped.
    per_byte: f64,
    rng: u64,
    /// Bytes to relay untouched before the next flip.
    gap: u64,
    /// Bits flipped so far.
    flipped: u64,
}

impl StreamFaults {
    fn new(per_byte: f64, seed: u64) -> Self {
        let mut f = StreamFaults {
            per_byte,
            rng: seed.max(1),
            gap: 0,
            flipped: 0,
        };
        f.gap = f.draw_gap();
        f
    }

    fn random(&mut self) -> u64 {
        // xorshift64*, as the link uses.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A geometric gap with mean 1/p: bytes until the next flip.
    fn draw_gap(&mut self) -> u64 {
        let u = ((self.random() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (u.ln() / (1.0 - self.per_byte).ln()).min(u64::MAX as f64 / 2.0) as u64
    }

    /// Damages `bytes` as the next `bytes.len()` bytes of the stream. The same state applied to a
    /// prefix flips the same bits in it, which is how the device-to-PC side damages exactly the
    /// bytes the PC took.
    fn apply(&mut self, bytes: &mut [u8]) {
        let mut at = 0u64;
        let len = bytes.len() as u64;
        while self.gap < len - at {
            at += self.gap;
            let bit = self.random() % 8;
            bytes[at as usize] ^= 1 << bit;
            self.flipped += 1;
            at += 1;
            self.gap = self.draw_gap();
        }
        self.gap -= len - at;
    }
}

fn gw_tcp(size: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size]),
        tcp::SocketBuffer::new(vec![0; size]),
    );
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    s
}

fn gw_udp() -> udp::Socket<'static> {
    let buf = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 128 * 1024]);
    udp::Socket::new(buf(), buf())
}

impl Gateway {
    /// A gateway at `ip` on the link, forwarding `tcp` and `udp` ports to the device at `device`.
    pub fn new(
        phy: Port,
        ip: IpCidr,
        device: Ipv4Address,
        tcp: &[Forward],
        udp: &[Forward],
        socket_buffer: usize,
        now: Instant,
    ) -> io::Result<Self> {
        let one = Forwards {
            device,
            tcp: tcp.to_vec(),
            udp: udp.to_vec(),
        };
        Gateway::with_devices(phy, ip, &[one], socket_buffer, now)
    }

    /// A gateway at `ip` on the link, forwarding each device's ports to it. With several devices
    /// the gateway also keeps their MAC addresses known ([`Gateway::prime_neighbors`]).
    pub fn with_devices(
        mut phy: Port,
        ip: IpCidr,
        devices: &[Forwards],
        socket_buffer: usize,
        now: Instant,
    ) -> io::Result<Self> {
        let IpAddress::Ipv4(v4) = ip.address();
        let mut iface = Interface::new(Config::new(HardwareAddress::Ethernet(mac_for(v4))), &mut phy, now);
        iface.update_ip_addrs(|a| {
            let _ = a.push(ip);
        });
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        let mut udps = Vec::new();
        for d in devices {
            for f in &d.tcp {
                let os = TcpListener::bind(f.host).map_err(|e| annotate(e, "TCP", f.host))?;
                let os = watched(&poll, os, LISTENER_BASE + listeners.len())?;
                let (device, device_port) = (d.device, f.device_port);
                listeners.push(Listener {
                    os,
                    device,
                    device_port,
                    ready: true,
                });
            }
            for f in &d.udp {
                let os = UdpSocket::bind(f.host).map_err(|e| annotate(e, "UDP", f.host))?;
                let os = watched(&poll, os, UDP_BASE + udps.len())?;
                udps.push(UdpForward {
                    os,
                    device: d.device,
                    device_port: f.device_port,
                    peers: Vec::new(),
                    ready: true,
                });
            }
        }
        Ok(Gateway {
            iface,
            phy,
            sockets: SocketSet::new(Vec::new()),
            devices: devices.iter().map(|d| d.device).collect(),
            primed: None,
            woken: false,
            poll,
            events: Events::with_capacity(256),
            listeners,
            udps,
            flows: Vec::new(),
            admissions: Vec::new(),
            socket_buffer,
            scratch: vec![0; socket_buffer.max(64 * 1024)],
            next_port: 49152,
            stream_faults: None,
        })
    }

    /// Flips a bit in each relayed TCP payload byte with probability `per_byte` (seeded), in both
    /// directions, above TCP: the fault that reaches Tether's CRCs.
    pub fn corrupt_stream(&mut self, per_byte: f64, seed: u64) {
        self.stream_faults = (per_byte > 0.0).then(|| StreamFaults::new(per_byte, seed));
    }

    /// Bits flipped in relayed streams so far.
    pub fn stream_flips(&self) -> u64 {
        self.stream_faults.as_ref().map_or(0, |f| f.flipped)
    }

    /// A waker that interrupts [`Gateway::wait`] (for Ctrl-C).
    pub fn waker(&self) -> io::Result<mio::Waker> {
        mio::Waker::new(self.poll.registry(), WAKE)
    }

    /// The local addresses PC programs connect to (useful with port 0).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.os.local_addr().ok()).collect()
    }

    /// The local UDP addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udps.iter().filter_map(|u| u.os.local_addr().ok()).collect()
    }

    /// Open TCP relays.
    pub fn flows(&self) -> usize {
        self.flows.iter().flatten().count()
    }

    fn port(&mut self) -> u16 {
        self.next_port = if self.next_port >= 65_000 {
            49152
        } else {
            self.next_port + 1
        };
        self.next_port
    }

    /// Blocks until a PC socket is ready or `timeout` passes; returns whether the waker (Ctrl-C)
    /// woke it.
    pub fn wait(&mut self, timeout: Option<std::time::Duration>) -> io::Result<bool> {
        if !self.woken {
            self.note(timeout)?;
        }
        Ok(std::mem::take(&mut self.woken))
    }

    /// Waits up to `timeout` for the PC sockets and notes which listening sockets have something
    /// for [`Gateway::pump`] (the others are not read), and whether the waker fired.
    fn note(&mut self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {
                for e in self.events.iter() {
                    let t = e.token().0;
                    if e.token() == WAKE {
                        self.woken = true;
                    } else if t >= FLOW_BASE {
                        continue;
                    } else if t >= UDP_BASE {
                        if let Some(u) = self.udps.get_mut(t - UDP_BASE) {
                            u.ready = true;
                        }
                    } else if let Some(l) = self.listeners.get_mut(t - LISTENER_BASE) {
                        l.ready = true;
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Relays what can be relayed and polls the gateway interface; returns whether anything moved.
    pub fn pump(&mut self, now: Instant) -> bool {
        // What arrived on the PC sockets since the last look (a busy relay may pump many times
        // between waits).
        if let Err(e) = self.note(Some(std::time::Duration::ZERO)) {
            log::warn!("cannot watch the PC sockets: {e}");
        }
        self.prime_neighbors(now);
        let mut moved = self.accept();
        moved |= self.admit();
        for i in 0..self.flows.len() {
            moved |= self.relay(i);
        }
        moved |= self.relay_udp();
        let ingress = self.iface.poll(now, &mut self.phy, &mut self.sockets);
        moved | (ingress == smoltcp::iface::PollResult::SocketStateChanged)
    }

    /// How long the gateway's timers allow sleeping.
    pub fn delay(&mut self, now: Instant) -> Option<Duration> {
        let until = |at: std::time::Instant| {
            let wait = at.saturating_duration_since(std::time::Instant::now());
            Duration::from_micros(wait.as_micros() as u64)
        };
        let knock = self.next_knock().map(until);
        let prime = self.primed.map(|at| until(at + PRIME_EVERY));
        [self.iface.poll_delay(now, &self.sockets), knock, prime]
            .into_iter()
            .flatten()
            .min()
    }

    /// With several devices on the link, asks each of them for its MAC address with an ARP
    /// request of the gateway's own making (unicast to the device), at once and every
    /// [`PRIME_EVERY`]: each device learns the gateway's address from it and answers with its
    /// own, which fills the gateway's neighbor cache. smoltcp sends at most one ARP request a
    /// second per interface, so a gateway that waited for its own requests would reach a fleet
    /// of devices one a second; a host does the same with static entries (`arp -s`).
    pub fn prime_neighbors(&mut self, now: Instant) {
        if self.devices.len() < 2 || self.primed.is_some_and(|at| at.elapsed() < PRIME_EVERY) {
            return;
        }
        self.primed = Some(std::time::Instant::now());
        let Some(IpAddress::Ipv4(gw)) = self.iface.ip_addrs().first().map(|c| c.address()) else {
            return;
        };
        // The gateway's MAC address is derived from its IP, as every node's on this link.
        let own = mac_for(gw);
        for &device in &self.devices {
            let arp = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: own,
                source_protocol_addr: gw,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: device,
            };
            let eth = EthernetRepr {
                src_addr: own,
                dst_addr: mac_for(device),
                ethertype: EthernetProtocol::Arp,
            };
            let Some(tx) = smoltcp::phy::Device::transmit(&mut self.phy, now) else {
                return;
            };
            let len = eth.buffer_len() + arp.buffer_len();
            smoltcp::phy::TxToken::consume(tx, len, |buf| {
                let mut frame = EthernetFrame::new_unchecked(buf);
                eth.emit(&mut frame);
                arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
            });
        }
    }

    fn accept(&mut self) -> bool {
        let mut any = false;
        for li in 0..self.listeners.len() {
            if !self.listeners[li].ready {
                continue;
            }
            loop {
                let (mut os, from) = match self.listeners[li].os.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.listeners[li].ready = false;
                        break;
                    }
                    Err(e) => {
                        log::warn!("accept failed: {e}");
                        break;
                    }
                };
                let _ = os.set_nodelay(true);
                let (device, device_port) = (self.listeners[li].device, self.listeners[li].device_port);
                // Relayed in the order PC connections arrive, once the device takes them
                // ([`Gateway::admit`]).
                let sock = gw_tcp(self.socket_buffer);
                let handle = self.sockets.add(sock);
                let slot = self.flows.iter().position(Option::is_none).unwrap_or_else(|| {
                    self.flows.push(None);
                    self.flows.len() - 1
                });
                if let Err(e) = self.poll.registry().register(
                    &mut os,
                    Token(FLOW_BASE + slot),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    log::warn!("cannot watch {from}: {e}");
                    self.sockets.remove(handle);
                    continue;
                }
                log::info!("relay {from} -> {device}:{device_port}");
                self.flows[slot] = Some(Flow {
                    os,
                    handle,
                    device,
                    os_eof: false,
                    os_shut: false,
                    dead: false,
                    device_port,
                    connected: false,
                    asked: false,
                    since: std::time::Instant::now(),
                    spoke: false,
                });
                any = true;
            }
        }
        any
    }

    /// The admission state of `device_port` on `device`.
    fn admission(&mut self, device: Ipv4Address, device_port: u16) -> &mut Admission {
        let at = match self
            .admissions
            .iter()
            .position(|a| a.device == device && a.device_port == device_port)
        {
            Some(at) => at,
            None => {
                self.admissions.push(Admission {
                    device,
                    device_port,
                    next: std::time::Instant::now(),
                    backoff: KNOCK_FIRST,
                });
                self.admissions.len() - 1
            }
        };
        &mut self.admissions[at]
    }

    /// When the next waiting connection may be offered to the device.
    fn next_knock(&self) -> Option<std::time::Instant> {
        let waiting = |a: &Admission| {
            self.flows
                .iter()
                .flatten()
                .any(|f| f.device == a.device && f.device_port == a.device_port && !f.connected && !f.dead)
        };
        self.admissions.iter().filter(|a| waiting(a)).map(|a| a.next).min()
    }

    /// Offers waiting PC connections to the device the way a listen backlog hands them to a
    /// server: one connection request at a time per port, the oldest waiting connection first, as
    /// soon as the device has room. A refused request (smoltcp answers a SYN with a reset while no
    /// socket listens) keeps its place and is asked again after a short pause, or at once when a
    /// session on that port ends. Asking for every waiting connection at once instead would
    /// answer a burst of connections in random order and hold some for good.
    ///
    /// Connections whose peer has already sent something go before those that have said nothing,
    /// as with a deferred accept (Linux's `TCP_DEFER_ACCEPT`, FreeBSD's `accf_data`): a Tether
    /// client speaks first, and silent connections, arriving faster than the device lets them go,
    /// held a key holder's message 1 behind them in line until it gave up
    /// (docs/SECURITY.md, "Denial of service").
    fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        let mut moved = false;
        // Only ports with a waiting connection: a fleet has many listeners and few flows.
        let mut ports: Vec<(Ipv4Address, u16)> = self
            .flows
            .iter()
            .flatten()
            .filter(|f| !f.connected && !f.dead)
            .map(|f| (f.device, f.device_port))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        for (device, port) in ports {
            let here = |f: &Flow| f.device == device && f.device_port == port;
            let asking = self
                .flows
                .iter()
                .flatten()
                .any(|f| here(f) && f.asked && !f.connected && !f.dead);
            if asking || self.admission(device, port).next > now {
                continue;
            }
            let oldest = (0..self.flows.len())
                .filter(|&i| {
                    self.flows[i]
                        .as_ref()
                        .is_some_and(|f| here(f) && !f.connected && !f.asked && !f.dead)
                })
                .min_by_key(|&i| self.flows[i].as_ref().map(|f| (!f.spoke, f.since)));
            let Some(i) = oldest else { continue };
            let local = self.port();
            let remote = IpEndpoint::new(IpAddress::Ipv4(device), port);
            let Some(flow) = self.flows[i].as_mut() else { continue };
            let sock = self.sockets.get_mut::<tcp::Socket>(flow.handle);
            match sock.connect(self.iface.context(), remote, local) {
                Ok(()) => flow.asked = true,
                Err(e) => {
                    log::warn!("cannot relay: {e}");
                    flow.dead = true;
                }
            }
            moved = true;
        }
        moved
    }

    /// Follows a connection that the device has not accepted yet. Returns `Some(moved)` while it
    /// waits, `None` to relay it as usual (accepted, or given up and to be closed).
    fn knock(&mut self, i: usize) -> Option<bool> {
        let flow = self.flows[i].as_mut()?;
        if flow.connected || flow.dead {
            return None;
        }
        let sock = self.sockets.get_mut::<tcp::Socket>(flow.handle);
        if flow.asked {
            match sock.state() {
                tcp::State::SynSent => return Some(false),
                tcp::State::Closed => {
                    // Refused: back in line, in its place, after a pause.
                    flow.asked = false;
                    let (device, port) = (flow.device, flow.device_port);
                    let admission = self.admission(device, port);
                    admission.next = std::time::Instant::now() + admission.backoff;
                    admission.backoff = (admission.backoff * 2).min(KNOCK_EVERY);
                    log::debug!("device busy; {device}:{port} asked again shortly");
                    return Some(true);
                }
                _ => {
                    flow.connected = true;
                    let (device, port) = (flow.device, flow.device_port);
                    self.admission(device, port).backoff = KNOCK_FIRST;
                    return None;
                }
            }
        }
        if flow.since.elapsed() > BACKLOG_WAIT {
            log::debug!("the device stayed busy; relay given up");
            flow.dead = true;
            return None;
        }
        // A PC peer that closed or reset meanwhile is not worth a session.
        let mut probe = [0u8; 1];
        match flow.os.peek(&mut probe) {
            Ok(0) => flow.dead = true,
            Ok(_) => {
                flow.spoke = true;
                return Some(false);
            }
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => flow.dead = true,
            _ => return Some(false),
        }
        None
    }

    fn relay(&mut self, i: usize) -> bool {
        if let Some(moved) = self.knock(i) {
            return moved;
        }
        let Some(flow) = self.flows[i].as_mut() else {
            return false;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(flow.handle);
        let mut moved = false;
        // PC -> device: read only what the gateway socket can queue right now.
        if !flow.os_eof && !flow.dead && sock.may_send() {
            let room = (sock.send_capacity() - sock.send_queue()).min(self.scratch.len());
            if room > 0 {
                match flow.os.read(&mut self.scratch[..room]) {
                    Ok(0) => {
                        flow.os_eof = true;
                        sock.close();
                        moved = true;
                    }
                    Ok(n) => {
                        if let Some(f) = self.stream_faults.as_mut() {
                            f.apply(&mut self.scratch[..n]);
                        }
                        let _ = sock.send_slice(&self.scratch[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        sock.abort();
                        flow.dead = true;
                        moved = true;
                    }
                }
            }
        }
        // Device -> PC: write straight from the socket buffer, take only what the PC accepted.
        if !flow.dead && sock.can_recv() {
            let os = &mut flow.os;
            let mut failed = false;
            let (faults, scratch) = (&mut self.stream_faults, &mut self.scratch);
            let n = sock
                .recv(|data| {
                    let wrote = match faults.as_mut() {
                        // Only what the PC took is damaged, so every byte is damaged at most once.
                        Some(f) => {
                            let take = data.len().min(scratch.len());
                            scratch[..take].copy_from_slice(&data[..take]);
                            let mut probe = f.clone();
                            probe.apply(&mut scratch[..take]);
                            let r = os.write(&scratch[..take]);
                            if let Ok(n) = r {
                                f.apply(&mut data[..n]);
                            }
                            r
                        }
                        None => os.write(data),
                    };
                    match wrote {
                        Ok(n) => (n, n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, 0),
                        Err(_) => {
                            failed = true;
                            (0, 0)
                        }
                    }
                })
                .unwrap_or(0);
            moved |= n > 0;
            if failed {
                sock.abort();
                flow.dead = true;
                moved = true;
            }
        }
        if !flow.os_shut && !sock.may_recv() && sock.recv_queue() == 0 && sock.state() != tcp::State::SynSent {
            // The device finished sending: pass the FIN on.
            let _ = flow.os.shutdown(Shutdown::Write);
            flow.os_shut = true;
            moved = true;
        }
        let finished = !sock.is_active() && (flow.os_shut || flow.dead || sock.state() == tcp::State::Closed);
        if finished {
            let mut flow = self.flows[i].take().expect("checked above");
            let _ = self.poll.registry().deregister(&mut flow.os);
            self.sockets.remove(flow.handle);
            log::debug!("relay closed");
            if flow.connected {
                // A session on the device ended: it has room for the next waiting connection.
                let admission = self.admission(flow.device, flow.device_port);
                admission.next = std::time::Instant::now();
                admission.backoff = KNOCK_FIRST;
            }
            moved = true;
        }
        moved
    }

    fn relay_udp(&mut self) -> bool {
        let mut moved = false;
        for fi in 0..self.udps.len() {
            // PC -> device, from a socket `wait` found readable, until it is drained.
            while self.udps[fi].ready {
                let (n, from) = match self.udps[fi].os.recv_from(&mut self.scratch) {
                    Ok(got) => got,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.udps[fi].ready = false;
                        break;
                    }
                    // Tried again on the next pump.
                    Err(_) => break,
                };
                moved = true;
                let handle = match self.udps[fi].peers.iter().position(|p| p.addr == from) {
                    Some(p) => {
                        self.udps[fi].peers[p].used = std::time::Instant::now();
                        self.udps[fi].peers[p].handle
                    }
                    None => {
                        if self.udps[fi].peers.len() >= UDP_PEERS {
                            let oldest = (0..self.udps[fi].peers.len())
                                .min_by_key(|&p| self.udps[fi].peers[p].used)
                                .unwrap_or(0);
                            let gone = self.udps[fi].peers.swap_remove(oldest);
                            self.sockets.remove(gone.handle);
                        }
                        let port = self.port();
                        let mut s = gw_udp();
                        if s.bind(port).is_err() {
                            continue;
                        }
                        let handle = self.sockets.add(s);
                        self.udps[fi].peers.push(Peer {
                            addr: from,
                            handle,
                            used: std::time::Instant::now(),
                        });
                        handle
                    }
                };
                let to = IpEndpoint::new(IpAddress::Ipv4(self.udps[fi].device), self.udps[fi].device_port);
                let sock = self.sockets.get_mut::<udp::Socket>(handle);
                if sock.send_slice(&self.scratch[..n], to).is_err() {
                    log::debug!("UDP relay queue full; datagram from {from} dropped");
                }
            }
            // Device -> PC.
            let fwd = &mut self.udps[fi];
            for peer in &fwd.peers {
                let sock = self.sockets.get_mut::<udp::Socket>(peer.handle);
                while let Ok((data, _)) = sock.recv() {
                    let _ = fwd.os.send_to(data, peer.addr);
                    moved = true;
                }
            }
        }
        moved
    }
}

/// `source`, watched by `poll` for reading under `token`.
fn watched<S: mio::event::Source>(poll: &Poll, mut source: S, token: usize) -> io::Result<S> {
    poll.registry()
        .register(&mut source, Token(token), Interest::READABLE)?;
    Ok(source)
}

fn annotate(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    let hint = if e.kind() == io::ErrorKind::AddrInUse {
        " (is another sim running? pick other ports: --tcp-port, --udp-port, the --plain-*-port flags, or --no-plain; `sim --help` lists them)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("cannot listen on {proto} {addr}: {e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::{annotate, StreamFaults};

    #[test]
    fn a_port_in_use_names_the_flags_that_move_it() {
        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let text = annotate(e, "tcp", ([127, 0, 0, 1], 7070).into()).to_string();
        assert!(text.starts_with("cannot listen on tcp 127.0.0.1:7070"), "{text}");
        for flag in ["--tcp-port", "--udp-port", "--no-plain"] {
            assert!(text.contains(flag), "{flag} in {text}");
        }
    }

    #[test]
    fn stream_faults_flip_at_the_given_rate_and_prefixes_agree() {
        let mut f = StreamFaults::new(1e-3, 7);
        let mut data = vec![0u8; 1_000_000];
        for chunk in data.chunks_mut(1460) {
            f.apply(chunk);
        }
        let flipped: u32 = data.iter().map(|b| b.count_ones()).sum();
        assert_eq!(u64::from(flipped), f.flipped);
        assert!((800..1200).contains(&flipped), "{flipped} flips in 1 MB at 1e-3");

        // Damaging a prefix with a copy of the state flips the same bits as the real state.
        let mut a = StreamFaults::new(0.01, 3);
        let mut whole = vec![0u8; 5000];
        a.clone().apply(&mut whole);
        let mut part = vec![0u8; 2000];
        a.apply(&mut part);
        assert_eq!(&whole[..2000], &part[..]);
    }
}
