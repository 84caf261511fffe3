//! The rootless forwarder: PC sockets on 127.0.0.1 relayed into the virtual link by a second
//! smoltcp stack, the way QEMU's user-mode network forwards host ports to a guest.
//!
//! A PC program connects to `127.0.0.1:7070`; the gateway accepts it, opens its own smoltcp TCP
//! connection across the virtual link to the device's port 7070, and copies bytes both ways.
//! Each direction copies only what the other side can take at once, so TCP backpressure passes
//! through the gateway unchanged. UDP datagrams are relayed the same way, with one gateway UDP
//! socket per PC peer so that replies and pushed events find their way back.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

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

struct Flow {
    os: TcpStream,
    handle: SocketHandle,
    os_eof: bool,
    os_shut: bool,
    dead: bool,
    device_port: u16,
    /// The device accepted the connection (it got past `SynSent`).
    connected: bool,
    /// When the PC connected, and when to knock on the device again while it refuses.
    since: std::time::Instant,
    knock_at: std::time::Instant,
}

struct Peer {
    addr: SocketAddr,
    handle: SocketHandle,
    used: std::time::Instant,
}

struct UdpForward {
    os: UdpSocket,
    device_port: u16,
    peers: Vec<Peer>,
}

/// Most UDP peers remembered per forwarded port (the least recently used is forgotten).
const UDP_PEERS: usize = 64;
const LISTENER_BASE: usize = 0;
const UDP_BASE: usize = 1_000;
const FLOW_BASE: usize = 10_000;
/// The token the Ctrl-C waker uses.
pub const WAKE: Token = Token(usize::MAX);
/// How long a PC connection waits for a free device session (the device refuses connections
/// while all its sessions are busy), as a connection in a listen backlog would.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often a waiting connection knocks on the device again.
const KNOCK_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// The PC-side stack.
pub struct Gateway {
    /// The gateway's interface on the virtual link.
    pub iface: Interface,
    /// Its end of the link.
    pub phy: Port,
    sockets: SocketSet<'static>,
    device: Ipv4Address,
    poll: Poll,
    events: Events,
    listeners: Vec<(TcpListener, u16)>,
    udps: Vec<UdpForward>,
    flows: Vec<Option<Flow>>,
    socket_buffer: usize,
    scratch: Vec<u8>,
    next_port: u16,
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
        mut phy: Port,
        ip: IpCidr,
        device: Ipv4Address,
        tcp: &[Forward],
        udp: &[Forward],
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
        for (i, f) in tcp.iter().enumerate() {
            let mut l = TcpListener::bind(f.host).map_err(|e| annotate(e, "TCP", f.host))?;
            poll.registry()
                .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            listeners.push((l, f.device_port));
        }
        let mut udps = Vec::new();
        for (i, f) in udp.iter().enumerate() {
            let mut s = UdpSocket::bind(f.host).map_err(|e| annotate(e, "UDP", f.host))?;
            poll.registry()
                .register(&mut s, Token(UDP_BASE + i), Interest::READABLE)?;
            udps.push(UdpForward {
                os: s,
                device_port: f.device_port,
                peers: Vec::new(),
            });
        }
        Ok(Gateway {
            iface,
            phy,
            sockets: SocketSet::new(Vec::new()),
            device,
            poll,
            events: Events::with_capacity(256),
            listeners,
            udps,
            flows: Vec::new(),
            socket_buffer,
            scratch: vec![0; socket_buffer.max(64 * 1024)],
            next_port: 49152,
        })
    }

    /// A waker that interrupts [`Gateway::wait`] (for Ctrl-C).
    pub fn waker(&self) -> io::Result<mio::Waker> {
        mio::Waker::new(self.poll.registry(), WAKE)
    }

    /// The local addresses PC programs connect to (useful with port 0).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|(l, _)| l.local_addr().ok()).collect()
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

    /// Blocks until a PC socket is ready or `timeout` passes.
    pub fn wait(&mut self, timeout: Option<std::time::Duration>) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(self.events.iter().any(|e| e.token() == WAKE)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Relays what can be relayed and polls the gateway interface; returns whether anything moved.
    pub fn pump(&mut self, now: Instant) -> bool {
        let mut moved = self.accept();
        for i in 0..self.flows.len() {
            moved |= self.relay(i);
        }
        moved |= self.relay_udp();
        let ingress = self.iface.poll(now, &mut self.phy, &mut self.sockets);
        moved | (ingress == smoltcp::iface::PollResult::SocketStateChanged)
    }

    /// How long the gateway's timers allow sleeping.
    pub fn delay(&mut self, now: Instant) -> Option<Duration> {
        self.iface.poll_delay(now, &self.sockets)
    }

    fn accept(&mut self) -> bool {
        let mut any = false;
        for li in 0..self.listeners.len() {
            loop {
                let (mut os, from) = match self.listeners[li].0.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        log::warn!("accept failed: {e}");
                        break;
                    }
                };
                let _ = os.set_nodelay(true);
                let device_port = self.listeners[li].1;
                let local = self.port();
                let mut sock = gw_tcp(self.socket_buffer);
                let remote = IpEndpoint::new(IpAddress::Ipv4(self.device), device_port);
                if let Err(e) = sock.connect(self.iface.context(), remote, local) {
                    log::warn!("cannot relay {from}: {e}");
                    continue;
                }
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
                log::info!("relay {from} -> device:{device_port}");
                let since = std::time::Instant::now();
                self.flows[slot] = Some(Flow {
                    os,
                    handle,
                    os_eof: false,
                    os_shut: false,
                    dead: false,
                    device_port,
                    connected: false,
                    since,
                    knock_at: since,
                });
                any = true;
            }
        }
        any
    }

    /// A PC connection the device refused — smoltcp answers a SYN with a reset while every
    /// session is busy — is held and connected again shortly, the way a listen backlog holds a
    /// connection until the server accepts it, rather than closed at once: the PC already saw
    /// it accepted. Returns `Some(moved)` while the flow waits, `None` to relay it as usual.
    fn knock(&mut self, i: usize) -> Option<bool> {
        let flow = self.flows[i].as_mut()?;
        if flow.connected || flow.dead {
            return None;
        }
        let sock = self.sockets.get_mut::<tcp::Socket>(flow.handle);
        match sock.state() {
            tcp::State::SynSent => return None,
            tcp::State::Closed => {}
            _ => {
                flow.connected = true;
                return None;
            }
        }
        let now = std::time::Instant::now();
        if now.duration_since(flow.since) > BACKLOG_WAIT {
            log::debug!("the device stayed busy; relay given up");
            return None;
        }
        // A PC peer that closed or reset meanwhile is not worth a session.
        let mut probe = [0u8; 1];
        match flow.os.peek(&mut probe) {
            Ok(0) => return None,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return None,
            _ => {}
        }
        if now < flow.knock_at {
            return Some(false);
        }
        flow.knock_at = now + KNOCK_EVERY;
        let (handle, device_port) = (flow.handle, flow.device_port);
        let local = self.port();
        let remote = IpEndpoint::new(IpAddress::Ipv4(self.device), device_port);
        let sock = self.sockets.get_mut::<tcp::Socket>(handle);
        match sock.connect(self.iface.context(), remote, local) {
            Ok(()) => {
                log::debug!("device busy; knocking again for device:{device_port}");
                Some(true)
            }
            Err(e) => {
                log::warn!("cannot relay again: {e}");
                None
            }
        }
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
            let n = sock
                .recv(|data| match os.write(data) {
                    Ok(n) => (n, n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, 0),
                    Err(_) => {
                        failed = true;
                        (0, 0)
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
            moved = true;
        }
        moved
    }

    fn relay_udp(&mut self) -> bool {
        let mut moved = false;
        for fi in 0..self.udps.len() {
            // PC -> device.
            while let Ok((n, from)) = self.udps[fi].os.recv_from(&mut self.scratch) {
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
                let to = IpEndpoint::new(IpAddress::Ipv4(self.device), self.udps[fi].device_port);
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

fn annotate(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    let hint = if e.kind() == io::ErrorKind::AddrInUse {
        " (is another sim running? pick other ports with the port flags)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("cannot listen on {proto} {addr}: {e}{hint}"))
}
