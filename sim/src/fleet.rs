//! Many simulated devices in one process on one virtual Ethernet switch (`sim --devices N`).
//!
//! Each device is a whole [`Node`]: its own interface, MAC and IP address, sockets, server,
//! store and clock, on its own port of a [`Link::switch`]. The [`Fleet`] polls a device only when
//! something is due for it — frames waiting on its port, a deadline of its TCP/IP stack, or work
//! in progress (an open connection, a reboot, events to publish) — so an idle device costs
//! nothing between frames, and the process sleeps until the next deadline of any device.

use smoltcp::socket::tcp;
use smoltcp::socket::Socket;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Address;

use crate::link::{Link, Port};
use crate::node::Node;

/// Most devices one fleet holds (`sim --devices` at most).
pub const MAX_DEVICES: usize = 256;

/// How often a device with work in progress is polled at least: a waiting command (`sleep`), a
/// reboot or a session's deadlines need the time to pass, not a frame.
pub const BUSY_TICK: Duration = Duration::from_millis(20);

/// The name of device `i` (from 0) of a fleet: `sim-001`, `sim-002`, …
pub fn name(i: usize) -> String {
    format!("sim-{:03}", i + 1)
}

/// The address `i` places after `first` (`first` itself for 0), if there is one.
pub fn nth(first: Ipv4Address, i: usize) -> Option<Ipv4Address> {
    let i = u32::try_from(i).ok()?;
    u32::from(first).checked_add(i).map(Ipv4Address::from)
}

/// One device of a fleet.
pub struct Member {
    /// The device and its NIC (on the switch port of the same index).
    pub node: Node<Port>,
    /// When it must be polled without a frame arriving (`None`: only a frame wakes it).
    wake: Option<Instant>,
}

impl Member {
    /// A member polled at once (its server starts its uptime at its first poll).
    pub fn new(node: Node<Port>) -> Self {
        Member {
            node,
            wake: Some(Instant::ZERO),
        }
    }

    /// Whether the device has work in progress that needs time to pass: a TCP connection on
    /// any of its sockets, a requested reboot, events to publish.
    pub fn busy(&self) -> bool {
        let ctx = &self.node.server.device.ctx;
        ctx.reboot_requested
            || !ctx.events.is_empty()
            || self.node.sockets.iter().any(|(_, s)| match s {
                Socket::Tcp(t) => !matches!(t.state(), tcp::State::Listen | tcp::State::Closed),
                _ => false,
            })
    }

    /// Polls the device once and sets when it must be polled next; returns whether anything
    /// happened.
    fn poll(&mut self, now: Instant) -> bool {
        let moved = self.node.poll(now);
        let device = &mut self.node.server.device;
        let name = device.config().name;
        for (from, text) in device.ctx.inbox.drain(..) {
            log::info!("{name}: message from {from}: {text}");
        }
        let delay = self.node.delay(now);
        self.wake = if moved {
            Some(now)
        } else if self.busy() {
            Some(now + delay.map_or(BUSY_TICK, |d| d.min(BUSY_TICK)))
        } else {
            delay.map(|d| now + d)
        };
        moved
    }
}

/// Devices on the ports `0..N` of one switch (port N and up are for others: the gateway).
pub struct Fleet {
    /// The switch.
    pub link: Link,
    /// The devices, device `i` on port `i`.
    pub members: Vec<Member>,
    /// Device polls so far (to show that idle devices are left alone).
    pub polls: u64,
}

impl Fleet {
    /// An empty fleet on `link`; add members in port order.
    pub fn new(link: Link) -> Self {
        Fleet {
            link,
            members: Vec::new(),
            polls: 0,
        }
    }

    /// Polls every device that has frames waiting or whose time has come; returns whether
    /// anything happened.
    pub fn poll(&mut self, now: Instant) -> bool {
        let mut moved = false;
        for (i, m) in self.members.iter_mut().enumerate() {
            if self.link.pending(i) || m.wake.is_some_and(|w| w <= now) {
                self.polls += 1;
                moved |= m.poll(now);
            }
        }
        moved
    }

    /// How long until some device must be polled without a frame (`None`: no device needs the
    /// time to pass).
    pub fn delay(&self, now: Instant) -> Option<Duration> {
        let next = self.members.iter().filter_map(|m| m.wake).min()?;
        Some(if next > now { next - now } else { Duration::ZERO })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inproc::ram_store;
    use crate::link::Faults;
    use crate::node::Sizes;
    use smoltcp::phy::{Device as _, TxToken as _};
    use smoltcp::wire::{IpCidr, Ipv4Cidr};
    use tether_core::server::ServerConfig;

    /// A fleet of `n` devices on ports `0..n` of a switch with one more port (returned) for a peer.
    fn fleet(n: usize) -> (Fleet, Port) {
        let link = Link::switch(Faults::default(), n + 1);
        let mut fleet = Fleet::new(link.clone());
        let sizes = Sizes {
            socket_buffer: 4096,
            plain_clients: 0,
        };
        for i in 0..n {
            let ip = nth(Ipv4Address::new(169, 254, 70, 2), i).expect("room");
            let ip = IpCidr::Ipv4(Ipv4Cidr::new(ip, 16));
            let config = ServerConfig::default();
            let node = Node::named(
                "sim",
                link.port(i),
                ip,
                None,
                &config,
                sizes,
                ram_store(4096),
                Instant::ZERO,
            );
            fleet.members.push(Member::new(node));
        }
        (fleet, link.port(n))
    }

    #[test]
    fn idle_devices_are_polled_only_when_a_frame_or_their_work_calls() {
        let (mut fleet, mut peer) = fleet(3);
        // Every device once at the start, then nothing while nothing happens.
        fleet.poll(Instant::ZERO);
        assert_eq!(fleet.polls, 3);
        for s in 1..=5 {
            fleet.poll(Instant::from_secs(s));
        }
        assert_eq!(fleet.polls, 3);
        assert_eq!(
            fleet.delay(Instant::from_secs(5)),
            None,
            "no device needs the time to pass"
        );
        // A broadcast frame wakes every device once; a device with work in progress (a reboot
        // on its way) is polled again and again until it is done.
        let frame = [[0xff; 6], [0x02, 0, 0, 0, 0, 9]].concat();
        peer.transmit(Instant::ZERO)
            .expect("a port always transmits")
            .consume(frame.len() + 2, |b| b[..12].copy_from_slice(&frame));
        fleet.members[1].node.server.device.ctx.reboot_requested = true;
        fleet.poll(Instant::from_secs(6));
        assert_eq!(fleet.polls, 6);
        assert_eq!(fleet.delay(Instant::from_secs(6)), Some(BUSY_TICK));
        let mut t = Instant::from_secs(6);
        for _ in 0..10 {
            t += BUSY_TICK;
            fleet.poll(t);
        }
        // The reboot comes 50 ms after it was asked for: a few ticks of the busy device alone.
        let busy = fleet.polls - 6;
        assert!(
            (3..10).contains(&busy),
            "{busy} polls: only the busy device, until it is done"
        );
        assert!(
            !fleet.members[1].node.server.device.ctx.reboot_requested,
            "the reboot was carried out"
        );
        fleet.poll(t + Duration::from_secs(1));
        assert_eq!(fleet.polls, 6 + busy, "and then it rests too");
    }

    #[test]
    fn names_and_addresses_count_from_the_first() {
        assert_eq!(name(0), "sim-001");
        assert_eq!(name(255), "sim-256");
        let first = Ipv4Address::new(127, 0, 1, 1);
        assert_eq!(nth(first, 0), Some(first));
        assert_eq!(nth(first, 6), Some(Ipv4Address::new(127, 0, 1, 7)));
        assert_eq!(nth(first, 255), Some(Ipv4Address::new(127, 0, 2, 0)));
        assert_eq!(nth(Ipv4Address::new(255, 255, 255, 255), 1), None);
    }
}
