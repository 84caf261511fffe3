//! The device's IPv4 address from DHCP (feature `dhcp`), with a static fallback: one rule for the
//! simulator and the firmware.
//!
//! smoltcp's `dhcpv4` socket does the protocol (discover, request, renew, rebind, NAK); what it
//! leaves to the application is here:
//!
//! - applying a lease to the interface (address and default route) and removing it when lost;
//! - restarting discovery at link-up ([`Dhcp::set_link`]): a board plugged into another network
//!   asks at once instead of renewing an address from the old one until it expires;
//! - the fallback: with no lease `fallback_after_ms` after the search began, the configured static
//!   address (if any) is applied, and the search goes on, so a server that turns up later still
//!   wins;
//! - when the address changes (a renewal or a new lease with another address, a fallback replaced
//!   by a lease, a lease lost), every session is closed: a TCP peer of the old address can never
//!   reach the device again, and a session kept open would only hold its slot until the idle
//!   timeout. [`crate::server::Server::poll_dhcp`] does that; the application prints or
//!   announces the [`Change`] it returns (mDNS re-announces, `Discover` answers list the new
//!   address from the next poll on).
//!
//! [`Rule`] is the decision alone (events and time in, changes out), tested without a network;
//! [`Dhcp`] binds it to the socket and the interface.

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpCidr, Ipv4Address, Ipv4Cidr};

/// What the application configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The static address (and default route) used when no lease came in time; `None`: stay
    /// without an address until one does.
    pub fallback: Option<(Ipv4Cidr, Option<Ipv4Address>)>,
    /// How long after the search began the fallback is applied.
    pub fallback_after_ms: u64,
    /// The longest lease the device keeps before renewing (smoltcp renews at half of it), below
    /// what the server grants: tests shorten it to see renewals in seconds. `None`: the server's.
    pub max_lease_ms: Option<u64>,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        DhcpConfig {
            fallback: None,
            fallback_after_ms: 10_000,
            max_lease_ms: None,
        }
    }
}

/// Where the device's address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A DHCP server's lease.
    Lease,
    /// The configured fallback (no lease in time).
    Fallback,
    /// None: no lease and no fallback (yet).
    None,
}

/// The device's address changed (or was confirmed the first time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The address it had before (`None`: none).
    pub previous: Option<Ipv4Cidr>,
    /// The address it has now (`None`: none; the lease was lost and there is no fallback yet).
    pub address: Option<Ipv4Cidr>,
    /// The default route now.
    pub router: Option<Ipv4Address>,
    /// Where `address` came from.
    pub source: Source,
    /// Sessions closed because the address moved (filled in by
    /// [`crate::server::Server::poll_dhcp`]).
    pub sessions_closed: usize,
}

impl Change {
    /// Whether sessions on the previous address must be closed: it had one, and it is gone.
    pub fn moved(&self) -> bool {
        self.previous.is_some() && self.previous.map(|p| p.address()) != self.address.map(|a| a.address())
    }
}

/// What the DHCP socket reported, without its borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// A lease (new, or renewed with the same or another address).
    Configured(Ipv4Cidr, Option<Ipv4Address>),
    /// The lease is gone (a NAK, or it expired).
    Deconfigured,
}

/// The decision: which address the interface should have, given what DHCP said and the time.
#[derive(Debug, Clone)]
pub struct Rule {
    config: DhcpConfig,
    /// The address applied, its route and its source.
    current: Option<(Ipv4Cidr, Option<Ipv4Address>)>,
    source: Source,
    /// When the present search began (no lease since); `None` while leased.
    searching_since: Option<Instant>,
}

impl Rule {
    /// A rule with no address yet, searching from `now`.
    pub fn new(config: DhcpConfig, now: Instant) -> Self {
        Rule {
            config,
            current: None,
            source: Source::None,
            searching_since: Some(now),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// The address applied now, and where it came from.
    pub fn address(&self) -> (Option<Ipv4Cidr>, Source) {
        (self.current.map(|c| c.0), self.source)
    }

    /// The link came up: the search begins again (the lease, if any, stays until the socket says
    /// otherwise); the fallback deadline counts from now unless a fallback is already applied.
    pub fn link_up(&mut self, now: Instant) {
        if self.source != Source::Fallback {
            self.searching_since = Some(now);
        }
    }

    fn set(&mut self, next: Option<(Ipv4Cidr, Option<Ipv4Address>)>, source: Source) -> Option<Change> {
        let previous = self.current.map(|c| c.0);
        let same = self.current == next && self.source == source;
        self.current = next;
        self.source = source;
        (!same).then_some(Change {
            previous,
            address: next.map(|n| n.0),
            router: next.and_then(|n| n.1),
            source,
            sessions_closed: 0,
        })
    }

    /// What the socket reported at `now`.
    pub fn report(&mut self, report: Report, now: Instant) -> Option<Change> {
        match report {
            Report::Configured(address, router) => {
                self.searching_since = None;
                self.set(Some((address, router)), Source::Lease)
            }
            Report::Deconfigured => {
                if self.source != Source::Lease {
                    // A fallback (or nothing) was applied: nothing of the lease to remove.
                    return None;
                }
                self.searching_since = Some(now);
                self.set(None, Source::None)
            }
        }
    }

    /// The fallback, once the search has lasted `fallback_after_ms`.
    pub fn tick(&mut self, now: Instant) -> Option<Change> {
        let since = self.searching_since?;
        let fallback = self.config.fallback?;
        if self.source != Source::None || now < since + Duration::from_millis(self.config.fallback_after_ms) {
            return None;
        }
        self.set(Some(fallback), Source::Fallback)
    }

    /// How long until [`Rule::tick`] has something to do (`None`: nothing pending).
    pub fn delay(&self, now: Instant) -> Option<Duration> {
        let since = self.searching_since?;
        self.config.fallback?;
        if self.source != Source::None {
            return None;
        }
        let at = since + Duration::from_millis(self.config.fallback_after_ms);
        Some(if at > now { at - now } else { Duration::ZERO })
    }
}

/// The DHCP client of a device: smoltcp's socket and the [`Rule`], applied to the interface.
pub struct Dhcp {
    handle: SocketHandle,
    rule: Rule,
    link: bool,
}

impl Dhcp {
    /// Adds a DHCP socket to `sockets`; the search begins at `now`.
    pub fn new(config: DhcpConfig, sockets: &mut SocketSet<'_>, now: Instant) -> Self {
        let mut socket = dhcpv4::Socket::new();
        socket.set_max_lease_duration(config.max_lease_ms.map(Duration::from_millis));
        Dhcp {
            handle: sockets.add(socket),
            rule: Rule::new(config, now),
            link: false,
        }
    }

    /// The rule (its address and configuration).
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Tells the client whether the link is up; at each link-up discovery starts afresh (a
    /// board moved to another network asks its server at once).
    pub fn set_link(&mut self, up: bool, now: Instant, sockets: &mut SocketSet<'_>) {
        if up && !self.link {
            sockets.get_mut::<dhcpv4::Socket>(self.handle).reset();
            self.rule.link_up(now);
        }
        self.link = up;
    }

    /// After the interface's poll: what the socket reported (or the fallback, when due), decided
    /// but not yet applied: [`crate::server::Server::poll_dhcp`] first closes the sessions of an
    /// address that moves (so their resets still leave from it), then [`Dhcp::apply`]s it.
    pub fn decide(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> Option<Change> {
        let report = match sockets.get_mut::<dhcpv4::Socket>(self.handle).poll() {
            Some(dhcpv4::Event::Configured(c)) => Some(Report::Configured(c.address, c.router)),
            Some(dhcpv4::Event::Deconfigured) => Some(Report::Deconfigured),
            None => None,
        };
        match report {
            Some(r) => self.rule.report(r, now),
            None => self.rule.tick(now),
        }
    }

    /// Gives `iface` the address and default route of `change`.
    pub fn apply(&self, change: &Change, iface: &mut Interface) {
        iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(a) = change.address {
                let _ = addrs.push(IpCidr::Ipv4(a));
            }
        });
        match change.router {
            Some(r) => {
                let _ = iface.routes_mut().add_default_ipv4_route(r);
            }
            None => {
                iface.routes_mut().remove_default_ipv4_route();
            }
        }
        event!(
            info,
            "dhcp: {:?} -> {:?} ({:?})",
            change.previous,
            change.address,
            change.source
        );
    }

    /// How long until the fallback is due (combine with the interface's `poll_delay`).
    pub fn delay(&self, now: Instant) -> Option<Duration> {
        self.rule.delay(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(last: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Address::new(10, 77, 0, last), 24)
    }

    const GW: Option<Ipv4Address> = Some(Ipv4Address::new(10, 77, 0, 1));

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    fn config() -> DhcpConfig {
        DhcpConfig {
            fallback: Some((cidr(2), GW)),
            fallback_after_ms: 3_000,
            max_lease_ms: None,
        }
    }

    #[test]
    fn a_lease_in_time_is_applied_and_no_fallback_follows() {
        let mut r = Rule::new(config(), at(0));
        assert_eq!(r.delay(at(1_000)), Some(Duration::from_millis(2_000)));
        let c = r.report(Report::Configured(cidr(100), GW), at(500)).expect("a change");
        assert_eq!(
            (c.previous, c.address, c.source),
            (None, Some(cidr(100)), Source::Lease)
        );
        assert!(!c.moved(), "nothing to close: there was no address");
        assert_eq!(r.tick(at(10_000)), None);
        assert_eq!(r.delay(at(10_000)), None);
        // A renewal with the same address changes nothing.
        assert_eq!(r.report(Report::Configured(cidr(100), GW), at(20_000)), None);
    }

    #[test]
    fn no_lease_means_the_fallback_after_the_timeout_and_a_later_lease_replaces_it() {
        let mut r = Rule::new(config(), at(0));
        assert_eq!(r.tick(at(2_999)), None);
        let c = r.tick(at(3_000)).expect("the fallback");
        assert_eq!((c.address, c.router, c.source), (Some(cidr(2)), GW, Source::Fallback));
        assert_eq!(r.tick(at(4_000)), None, "applied once");
        // A server turns up: its lease wins, and the sessions of the fallback address close.
        let c = r
            .report(Report::Configured(cidr(100), GW), at(9_000))
            .expect("a change");
        assert!(c.moved());
        assert_eq!((c.previous, c.address), (Some(cidr(2)), Some(cidr(100))));
        // A lease of the fallback's own address keeps the sessions.
        let mut r = Rule::new(config(), at(0));
        r.tick(at(3_000));
        let c = r
            .report(Report::Configured(cidr(2), GW), at(9_000))
            .expect("now a lease");
        assert!(!c.moved());
        assert_eq!(c.source, Source::Lease);
    }

    #[test]
    fn a_renewal_with_another_address_moves_and_a_lost_lease_searches_again() {
        let mut r = Rule::new(config(), at(0));
        r.report(Report::Configured(cidr(100), GW), at(100));
        let c = r.report(Report::Configured(cidr(101), GW), at(60_000)).expect("moved");
        assert!(c.moved());
        // Lost (a NAK): no address, sessions close, and the fallback comes after a new timeout.
        let c = r.report(Report::Deconfigured, at(70_000)).expect("lost");
        assert!(c.moved());
        assert_eq!((c.address, c.source), (None, Source::None));
        assert_eq!(r.tick(at(72_999)), None);
        assert_eq!(r.tick(at(73_000)).map(|c| c.source), Some(Source::Fallback));
        // A Deconfigured while on the fallback removes nothing.
        assert_eq!(r.report(Report::Deconfigured, at(74_000)), None);
        assert_eq!(r.address(), (Some(cidr(2)), Source::Fallback));
    }

    #[test]
    fn without_a_fallback_the_device_waits_for_a_lease() {
        let mut r = Rule::new(DhcpConfig::default(), at(0));
        assert_eq!(r.tick(at(1_000_000)), None);
        assert_eq!(r.delay(at(0)), None);
        assert_eq!(r.address(), (None, Source::None));
    }

    #[test]
    fn link_up_restarts_the_fallback_deadline() {
        let mut r = Rule::new(config(), at(0));
        r.link_up(at(2_000));
        assert_eq!(r.tick(at(3_000)), None);
        assert!(r.tick(at(5_000)).is_some());
    }
}
