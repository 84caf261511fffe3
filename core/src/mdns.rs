//! mDNS / DNS-SD (feature `mdns`): the device announces `_tether._tcp` and `_tether._udp` on its
//! link, and answers the queries of resolvers (avahi, Bonjour, `mdns-sd`) for them.
//!
//! The records are built and the queries answered by `edge-mdns` (no_std, no allocation, on the
//! `domain` crate's DNS wire format; `docs/ARCHITECTURE.md` says why this one); this module is
//! its binding to a smoltcp UDP socket on port 5353, joined to the group 224.0.0.251, and what the
//! records say: the instance `NAME-XXXXXX` (the device's name and the last three bytes of its id,
//! so that devices sharing a name stay apart), the host `NAME-XXXXXX.local` at the interface's
//! IPv4 address, SRV records to the framed TCP and UDP ports, and TXT keys
//!
//! | key | value |
//! | --- | --- |
//! | `name` | the device's name |
//! | `id` | its id, 12 hex digits (the MAC address unless the application set one) |
//! | `protocol` | the Tether protocol version it speaks |
//! | `firmware` | its firmware's version |
//! | `board` | the board, as the application names it |
//! | `key` | `1` when it requires its pre-shared key, `0` when it is open |
//!
//! — the facts of a `Discover` answer ([`crate::service::Device::presence`]), so both ways of
//! finding a device say the same. The device announces itself twice, a second apart (RFC 6762
//! §8.3), once it has an address and again whenever the address changes (DHCP), so resolvers
//! replace the old address without waiting for their caches to expire.
//!
//! Not done: probing for name conflicts (RFC 6762 §8.1; the id in the name makes one unlikely),
//! goodbye packets, IPv6.

use core::fmt::Write as _;
use core::net::Ipv4Addr;

use edge_mdns::domain::base::Ttl;
use edge_mdns::host::{Host, Service, ServiceAnswers};
use edge_mdns::{HostAnswersMdnsHandler, MdnsHandler, MdnsRequest, MdnsResponse, NoHostAnswers};
use heapless::String;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use crate::service::files::Storage;
use crate::service::{Context, Device};

/// The mDNS port.
pub const PORT: u16 = 5353;
/// The mDNS IPv4 group.
pub const GROUP: Ipv4Address = Ipv4Address::new(224, 0, 0, 251);
/// The DNS-SD service type, without its protocol label.
pub const SERVICE: &str = "_tether";
/// Largest mDNS message the device sends (an announcement of both services is about 400 bytes).
pub const MESSAGE_MAX: usize = 1024;
/// Announcements after an address appears or changes, a second apart (RFC 6762 §8.3: at least 2).
const ANNOUNCEMENTS: u8 = 2;
/// How long resolvers keep the records (RFC 6762 §10 suggests 120 s for records with a host name).
const TTL_SECS: u32 = 120;

/// The device's mDNS responder.
pub struct Mdns {
    handle: SocketHandle,
    board: String<32>,
    joined: bool,
    /// The address announced (or to announce).
    address: Option<Ipv4Address>,
    announcements_left: u8,
    next_announcement: Instant,
    scratch: [u8; MESSAGE_MAX],
}

/// The labels and TXT values of the records, built from the device's presence for one message.
struct Records {
    instance: String<48>,
    id: String<12>,
    protocol: String<3>,
    key: &'static str,
}

impl Mdns {
    /// The responder on `socket` (its buffers must hold [`MESSAGE_MAX`]-byte messages), added to
    /// `sockets` and bound to port 5353; `board` is the TXT record's `board` (cut to 32 bytes).
    pub fn new<'b>(board: &str, mut socket: udp::Socket<'b>, sockets: &mut SocketSet<'b>) -> Self {
        let _ = socket.bind(PORT);
        // RFC 6762 §11: mDNS messages go out with IP TTL 255 (receivers may check it).
        socket.set_hop_limit(Some(255));
        let mut b = String::new();
        for c in board.chars() {
            if b.push(c).is_err() {
                break;
            }
        }
        Mdns {
            handle: sockets.add(socket),
            board: b,
            joined: false,
            address: None,
            announcements_left: 0,
            next_announcement: Instant::ZERO,
            scratch: [0; MESSAGE_MAX],
        }
    }

    /// After the interface's poll: joins the group (once), answers the queries received, and
    /// announces when due (a new address schedules two announcements). Returns whether it sent
    /// anything.
    pub fn poll<C: Context, S: Storage>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        device: &Device<'_, C, S>,
    ) -> bool {
        if !self.joined {
            // Fails only when the group table is full (smoltcp's `iface-max-multicast-group-count`).
            self.joined = iface.join_multicast_group(GROUP).is_ok();
        }
        let address = iface.ipv4_addr();
        if address != self.address {
            self.address = address;
            self.announcements_left = if address.is_some() { ANNOUNCEMENTS } else { 0 };
            self.next_announcement = now;
        }
        let Some(address) = self.address else {
            // Nothing to say without an address; queries wait in the socket or are dropped.
            return false;
        };
        let presence = device.presence();
        let records = Records::of(&presence);
        let host = Host {
            hostname: &records.instance,
            ipv4: Ipv4Addr::from(address.octets()),
            ipv6: core::net::Ipv6Addr::UNSPECIFIED,
            ttl: Ttl::from_secs(TTL_SECS),
        };
        let txt = [
            ("name", presence.name),
            ("id", records.id.as_str()),
            ("protocol", records.protocol.as_str()),
            ("firmware", presence.firmware),
            ("board", self.board.as_str()),
            ("key", records.key),
        ];
        let service = |protocol, port| Service {
            name: &records.instance,
            priority: 0,
            weight: 0,
            service: SERVICE,
            protocol,
            port,
            service_subtypes: &[],
            txt_kvs: &txt,
        };
        let (tcp, udp) = (service("_tcp", presence.tcp_port), service("_udp", presence.udp_port));
        let answers = NoHostAnswers
            .chain(ServiceAnswers::new(&host, &tcp))
            .chain(ServiceAnswers::new(&host, &udp));
        let mut handler = HostAnswersMdnsHandler::new(answers);
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        let mut sent = false;
        let group = IpEndpoint::new(IpAddress::Ipv4(GROUP), PORT);
        // Queries first; each answered once (a full socket leaves the rest for the next poll).
        while socket.can_send() {
            let Ok((data, meta)) = socket.recv() else { break };
            // A query from a port other than 5353 is a "legacy" one-shot query: answered to
            // its sender, with its id and question (RFC 6762 §6.7).
            let legacy = meta.endpoint.port != PORT;
            let multicast = meta.local_address.is_none_or(|a| a == IpAddress::Ipv4(GROUP));
            let request = MdnsRequest::Request {
                legacy,
                multicast,
                data,
            };
            if let Ok(MdnsResponse::Reply { data, .. }) = handler.handle(request, &mut self.scratch) {
                let to = if legacy { meta.endpoint } else { group };
                sent |= socket.send_slice(data, to).is_ok();
            }
        }
        if self.announcements_left > 0 && now >= self.next_announcement && socket.can_send() {
            if let Ok(MdnsResponse::Reply { data, .. }) = handler.handle(MdnsRequest::None, &mut self.scratch) {
                if socket.send_slice(data, group).is_ok() {
                    sent = true;
                    self.announcements_left -= 1;
                    self.next_announcement = now + Duration::from_secs(1);
                }
            }
        }
        sent
    }

    /// How long until the next announcement is due (combine with the interface's `poll_delay`).
    pub fn delay(&self, now: Instant) -> Option<Duration> {
        (self.announcements_left > 0 && self.address.is_some()).then(|| {
            if self.next_announcement > now {
                self.next_announcement - now
            } else {
                Duration::ZERO
            }
        })
    }
}

impl Records {
    fn of(p: &crate::msg::Presence<'_>) -> Records {
        let mut instance = String::new();
        // A DNS label holds 63 bytes; the name is at most `msg::MAX_DEVICE_LEN` (32), and a label
        // needs no escaping for the names devices take (letters, digits, `-`); anything else is
        // made `-` so the label stays one the resolvers take.
        for c in p.name.chars().take(40) {
            let c = if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' };
            let _ = instance.push(c);
        }
        let _ = write!(instance, "-{:06x}", p.id & 0xff_ffff);
        let mut id = String::new();
        let _ = write!(id, "{:012x}", p.id & 0xffff_ffff_ffff);
        let mut protocol = String::new();
        let _ = write!(protocol, "{}", p.version);
        Records {
            instance,
            id,
            protocol,
            key: if p.key_required { "1" } else { "0" },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_the_device_by_name_and_id() {
        let p = crate::msg::Presence {
            version: 1,
            id: 0x0254_48fe_4602,
            name: "sim 001",
            firmware: "0.1.0",
            tcp_port: 7070,
            udp_port: 7071,
            key_required: true,
            addresses: heapless::Vec::new(),
        };
        let r = Records::of(&p);
        assert_eq!(r.instance.as_str(), "sim-001-fe4602");
        assert_eq!(r.id.as_str(), "025448fe4602");
        assert_eq!((r.protocol.as_str(), r.key), ("1", "1"));
    }
}
