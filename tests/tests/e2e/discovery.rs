//! `Discover` (docs/PROTOCOL.md §19) against the simulated device in process: what a probe gets on
//! the framed UDP port, open and keyed, by size, and by broadcast on a switch of several devices.

use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr};
use tether_core::codec::{encode, parse_datagram};
use tether_core::msg::{self, Presence};
use tether_core::secure::{Lock, Psk};
use tether_core::server::ServerConfig;
use tether_core::wire::{ErrorCode, FrameSpec, Kind};
use tether_sim::fleet::{self, Fleet, Member};
use tether_sim::inproc::{ram_store, Stack, StackConfig, FIRMWARE};
use tether_sim::link::{Faults, Link};
use tether_sim::node::{mac_for, Node, Sizes};

/// A `Discover` probe with request id `id`, padded with zeros to `size` bytes.
fn probe(id: u32, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size.max(64)];
    let n = encode(&mut out, FrameSpec::request(Kind::Discover, id), &(), &[]).expect("encode");
    out.truncate(size.max(n));
    out
}

/// The `Presence` in an answer datagram, owned as (name, firmware, rest).
fn presence(datagram: &[u8]) -> (String, String, Presence<'static>) {
    let f = parse_datagram(datagram, 2048).expect("a frame");
    assert_eq!(f.kind(), Kind::Discover);
    assert!(f.error().is_none(), "an error: {:?}", f.error());
    let p = f.meta::<Presence<'_>>().expect("Presence");
    let owned = Presence {
        name: "",
        firmware: "",
        addresses: p.addresses.clone(),
        ..p
    };
    (p.name.to_string(), p.firmware.to_string(), owned)
}

/// Sends `datagram` to the framed UDP port and waits for the answer.
fn ask(udp: &mut tether_sim::inproc::Datagrams, datagram: &[u8]) -> Vec<u8> {
    udp.send(7071, datagram).expect("send");
    udp.recv(Duration::from_secs(5)).expect("an answer").0
}

#[test]
fn a_padded_probe_gets_the_presence_of_the_device() {
    let stack = Stack::new(StackConfig::default());
    let answer = ask(&mut Stack::udp(&stack), &probe(3, msg::MAX_PRESENCE_FRAME));
    assert!(answer.len() <= msg::MAX_PRESENCE_FRAME);
    let (name, firmware, p) = presence(&answer);
    assert_eq!((name.as_str(), firmware.as_str()), ("tether-sim", FIRMWARE));
    assert_eq!(p.version, tether_core::wire::VERSION);
    // The in-process stack's interface: MAC 02:00:00:00:00:01 at 127.0.0.1.
    assert_eq!(p.id, 0x0200_0000_0001);
    assert_eq!(p.addresses.as_slice(), &[[127, 0, 0, 1]]);
    assert_eq!((p.tcp_port, p.udp_port, p.key_required), (7070, 7071, false));
}

#[test]
fn no_answer_is_larger_than_its_probe() {
    let stack = Stack::new(StackConfig::default());
    let mut udp = Stack::udp(&stack);
    let full = ask(&mut udp, &probe(1, msg::MAX_DATAGRAM));
    // Exactly the answer's size: answered. One byte less: `PadRequest`, naming the size.
    assert_eq!(ask(&mut udp, &probe(2, full.len())).len(), full.len());
    let pad = ask(&mut udp, &probe(3, full.len() - 1));
    assert!(pad.len() < full.len());
    let f = parse_datagram(&pad, 2048).expect("a frame");
    let e = f.error().expect("an error");
    assert_eq!(e.code, ErrorCode::PadRequest as u16);
    assert!(e.message.contains(&format!("to {} bytes", full.len())), "{}", e.message);
    // The bare 24-byte frame: not even the error fits, so nothing, counted as dropped.
    let dropped = stack.borrow().server.device.stats.udp_dropped;
    udp.send(7071, &probe(4, 0)).expect("send");
    assert!(udp.recv(Duration::from_millis(200)).is_none());
    assert_eq!(stack.borrow().server.device.stats.udp_dropped, dropped + 1);
    // A probe with a body is refused.
    let mut with_body = vec![0u8; msg::MAX_DATAGRAM];
    let n = encode(&mut with_body, FrameSpec::request(Kind::Discover, 5), &(), b"x").expect("encode");
    with_body.truncate(n.max(msg::MAX_DATAGRAM));
    let refused = ask(&mut udp, &with_body);
    let f = parse_datagram(&refused, 2048).expect("a frame");
    assert_eq!(f.error().map(|e| e.code), Some(ErrorCode::InvalidArgument as u16));
}

#[test]
fn a_device_with_a_key_answers_probes_over_udp() {
    let stack = Stack::new(StackConfig::default());
    stack
        .borrow_mut()
        .server
        .device
        .require_key(Lock::new(Psk::from_bytes([9; 32]), [1; 32]));
    let answer = ask(&mut Stack::udp(&stack), &probe(5, msg::MAX_DATAGRAM));
    let (name, _, p) = presence(&answer);
    assert_eq!(name, "tether-sim");
    assert!(p.key_required);
}

/// A peer on the switch's last port: an interface with one UDP socket.
struct Peer {
    iface: Interface,
    phy: tether_sim::link::Port,
    sockets: SocketSet<'static>,
    handle: smoltcp::iface::SocketHandle,
}

impl Peer {
    fn new(phy: tether_sim::link::Port, ip: Ipv4Cidr) -> Peer {
        let mut phy = phy;
        let hw = HardwareAddress::Ethernet(mac_for(ip.address()));
        let mut iface = Interface::new(Config::new(hw), &mut phy, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(ip));
        });
        let buf = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]);
        let mut socket = udp::Socket::new(buf(), buf());
        socket.bind(40_000).expect("bind");
        let mut sockets = SocketSet::new(Vec::new());
        let handle = sockets.add(socket);
        Peer {
            iface,
            phy,
            sockets,
            handle,
        }
    }

    fn socket(&mut self) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(self.handle)
    }
}

#[test]
fn a_broadcast_probe_on_the_switch_is_answered_by_every_device() {
    const N: usize = 5;
    let link = Link::switch(Faults::default(), N + 1);
    let mut fleet = Fleet::new(link.clone());
    let first = Ipv4Address::new(169, 254, 70, 2);
    let sizes = Sizes {
        socket_buffer: 4096,
        plain_clients: 0,
    };
    for i in 0..N {
        let ip = IpCidr::Ipv4(Ipv4Cidr::new(fleet::nth(first, i).expect("room"), 16));
        let name: &'static str = Box::leak(fleet::name(i).into_boxed_str());
        let store = ram_store(4096);
        let node = Node::named(
            name,
            link.port(i),
            ip,
            None,
            &ServerConfig::default(),
            sizes,
            store,
            now(),
        );
        fleet.members.push(Member::new(node));
    }
    let mut peer = Peer::new(link.port(N), Ipv4Cidr::new(Ipv4Address::new(169, 254, 70, 1), 16));
    // The local segment's broadcast, then the subnet's: each device answers each once.
    for (id, to) in [(1, Ipv4Address::BROADCAST), (2, Ipv4Address::new(169, 254, 255, 255))] {
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(to), 7071);
        peer.socket()
            .send_slice(&probe(id, msg::MAX_DATAGRAM), endpoint)
            .expect("queue the probe");
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.len() < N && Instant::now() < deadline {
            let t = now();
            peer.iface.poll(t, &mut peer.phy, &mut peer.sockets);
            fleet.poll(t);
            while let Ok((data, meta)) = peer.socket().recv() {
                let (name, _, p) = presence(data);
                // From the device's own address, which it lists.
                let IpAddress::Ipv4(from) = meta.endpoint.addr;
                assert_eq!(p.addresses.as_slice(), &[from.octets()]);
                assert_eq!(p.id, mac_id(from));
                seen.push(name);
            }
        }
        seen.sort();
        let names: Vec<String> = (0..N).map(fleet::name).collect();
        assert_eq!(seen, names, "probe to {to}");
    }
}

/// The id of the device at `ip` on the switch: its MAC address.
fn mac_id(ip: Ipv4Address) -> u64 {
    mac_for(ip).0.iter().fold(0, |id, b| id << 8 | u64::from(*b))
}

fn now() -> smoltcp::time::Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    smoltcp::time::Instant::from_micros(epoch.elapsed().as_micros() as i64)
}
