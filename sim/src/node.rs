//! The simulated device on a network interface: interface, PHY, sockets and server together.

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use tether_core::server::ServerConfig;

use tether_core::dhcp::{Change, Dhcp, DhcpConfig};
use tether_core::mdns::{Mdns, MESSAGE_MAX};

use crate::device::{after_poll, SimServer, Store};
use crate::inproc::{build_named_server, DEVICE_NAME};

/// A device node: the simulated microcontroller with its NIC.
pub struct Node<D: Device> {
    /// The interface.
    pub iface: Interface,
    /// The NIC.
    pub phy: D,
    /// The device's sockets.
    pub sockets: SocketSet<'static>,
    /// The device's server.
    pub server: Box<SimServer>,
    /// The DHCP client, when the device takes its address from DHCP ([`Node::use_dhcp`]).
    pub dhcp: Option<Dhcp>,
    /// Address changes DHCP made since the application last took them.
    pub dhcp_changes: Vec<Change>,
    /// The mDNS responder, when the device announces itself ([`Node::use_mdns`]).
    pub mdns: Option<Mdns>,
}

/// The buffer sizes of a node's sockets.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Receive and transmit buffer of every framed TCP socket.
    pub socket_buffer: usize,
    /// Upper-echo clients the plain services serve at once (0: no plain services).
    pub plain_clients: usize,
}

/// A locally administered MAC address derived from the last byte of an IP.
pub fn mac_for(ip: Ipv4Address) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([0x02, 0x54, 0x48, o[1], o[2], o[3]])
}

impl<D: Device> Node<D> {
    /// A node at `ip` (with prefix) whose default route is `gateway`; `plain_clients` is how
    /// many upper-echo clients the plain-socket services serve at once (0: no plain services).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        phy: D,
        ip: IpCidr,
        gateway: Option<Ipv4Address>,
        server: &ServerConfig,
        socket_buffer: usize,
        plain_clients: usize,
        store: Store,
        now: Instant,
    ) -> Self {
        let sizes = Sizes {
            socket_buffer,
            plain_clients,
        };
        Node::named(DEVICE_NAME, phy, ip, gateway, server, sizes, store, now)
    }

    /// [`Node::new`] for a device called `name`.
    #[allow(clippy::too_many_arguments)]
    pub fn named(
        name: &'static str,
        mut phy: D,
        ip: IpCidr,
        gateway: Option<Ipv4Address>,
        server: &ServerConfig,
        sizes: Sizes,
        store: Store,
        now: Instant,
    ) -> Self {
        let IpAddress::Ipv4(v4) = ip.address();
        let mut iface = Interface::new(Config::new(HardwareAddress::Ethernet(mac_for(v4))), &mut phy, now);
        iface.update_ip_addrs(|a| {
            let _ = a.push(ip);
        });
        if let Some(gw) = gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        let mut sockets = SocketSet::new(Vec::new());
        let server = build_named_server(name, server, sizes, store, &mut sockets);
        Node {
            iface,
            phy,
            sockets,
            server,
            dhcp: None,
            dhcp_changes: Vec::new(),
            mdns: None,
        }
    }

    /// From now on the device announces itself by mDNS (`_tether._tcp`, `_tether._udp`) and
    /// answers resolvers, naming `board` in its TXT record.
    pub fn use_mdns(&mut self, board: &str) {
        let buf = || {
            smoltcp::socket::udp::PacketBuffer::new(
                vec![smoltcp::socket::udp::PacketMetadata::EMPTY; 8],
                vec![0; 4 * MESSAGE_MAX],
            )
        };
        let socket = smoltcp::socket::udp::Socket::new(buf(), buf());
        self.mdns = Some(Mdns::new(board, socket, &mut self.sockets));
    }

    /// From now on the device takes its address from DHCP (the one it was built with is
    /// removed; `config.fallback` is applied if no lease comes in time). The link is up: the
    /// search starts at once.
    pub fn use_dhcp(&mut self, config: DhcpConfig, now: Instant) {
        self.iface.update_ip_addrs(|a| a.clear());
        self.iface.routes_mut().remove_default_ipv4_route();
        let mut dhcp = Dhcp::new(config, &mut self.sockets, now);
        dhcp.set_link(true, now, &mut self.sockets);
        self.dhcp = Some(dhcp);
    }

    /// Polls the interface and serves the sockets; returns whether anything happened.
    pub fn poll(&mut self, now: Instant) -> bool {
        let mut any = self.server.poll(now, &mut self.iface, &mut self.phy, &mut self.sockets);
        if let Some(dhcp) = &mut self.dhcp {
            if let Some(change) = self
                .server
                .poll_dhcp(dhcp, now, &mut self.iface, &mut self.phy, &mut self.sockets)
            {
                self.dhcp_changes.push(change);
                any = true;
            }
        }
        if let Some(mdns) = &mut self.mdns {
            any |= mdns.poll(now, &mut self.iface, &mut self.sockets, &self.server.device);
        }
        after_poll(&mut self.server, &mut self.sockets) | any
    }

    /// How long the node can sleep before its timers need a poll.
    pub fn delay(&mut self, now: Instant) -> Option<Duration> {
        let net = self.iface.poll_delay(now, &self.sockets);
        let dhcp = self.dhcp.as_ref().and_then(|d| d.delay(now));
        let mdns = self.mdns.as_ref().and_then(|m| m.delay(now));
        [net, dhcp, mdns].into_iter().flatten().min()
    }
}
