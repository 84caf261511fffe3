//! Finding devices: `Discover` probes (docs/PROTOCOL.md §19) to addresses, ranges and broadcast
//! addresses, and the answers merged into one list.
//!
//! ```no_run
//! use std::time::Duration;
//! use tether_host::discover::{discover, Where};
//!
//! // The devices of `sim --devices 16`, each on its own loopback address.
//! let scope = [Where::parse("127.0.1.1-16", 7071)?];
//! for d in discover(&scope, Duration::from_secs(2), |_| {})? {
//!     println!("{} at {}:{} (firmware {})", d.name, d.address, d.tcp_port, d.firmware);
//! }
//! # Ok::<(), tether_host::ClientError>(())
//! ```

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use tether_core::codec::{encode, parse_datagram};
use tether_core::msg::{self, Presence};
use tether_core::wire::{Flags, FrameSpec, Kind};

use crate::error::{Cause, ClientError, Over, Result};

/// The framed UDP port probes go to unless told otherwise.
pub const DEFAULT_UDP_PORT: u16 = 7071;
/// Most addresses one range may name.
pub const MAX_RANGE: u32 = 4096;
/// How often a probe that got no answer is sent again within the timeout.
const TRIES: u32 = 3;
/// The DNS-SD service types devices announce (tether-core's `mdns` module).
pub const MDNS_TYPES: [&str; 2] = ["_tether._tcp.local.", "_tether._udp.local."];

/// Where to look: addresses probed one by one, or a broadcast address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// Each address in turn (one, or a range), on `port`.
    Each {
        /// The addresses.
        addresses: Vec<Ipv4Addr>,
        /// The framed UDP port.
        port: u16,
    },
    /// One probe to a broadcast address (`255.255.255.255`, or a subnet's), answered by every
    /// device that gets it.
    Broadcast {
        /// The broadcast address.
        address: Ipv4Addr,
        /// The framed UDP port.
        port: u16,
    },
    /// A serial port, asked `Hello` (and `Discover`) over Tether's serial framing.
    Serial(crate::serial::SerialAddr),
}

impl std::fmt::Display for Where {
    /// What was asked, as a person would write it: `127.0.1.1-127.0.1.3:7071`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Each { addresses, port } => match (addresses.first(), addresses.last()) {
                (Some(a), Some(b)) if a != b => write!(f, "{a}-{b}:{port}"),
                (Some(a), _) => write!(f, "{a}:{port}"),
                _ => write!(f, "no address:{port}"),
            },
            Where::Broadcast { address, port } => write!(f, "{address}:{port} (broadcast)"),
            Where::Serial(s) => s.fmt(f),
        }
    }
}

impl Where {
    /// Parses `ADDR`, `ADDR-LAST` (the last part of the address counting up to `LAST`),
    /// `ADDR-ADDR`, `255.255.255.255` or `NET/PREFIX` (that subnet's broadcast address), each
    /// optionally followed by `:PORT` (default `port`).
    pub fn parse(text: &str, port: u16) -> Result<Where> {
        let bad = |why: String| ClientError::Usage(format!("`{text}` {why}"));
        if let Some(serial) = crate::serial::parse_addr(text) {
            return serial
                .map(Where::Serial)
                .map_err(|e| bad(format!("is not a serial port: {e}")));
        }
        let (spec, port) = match text.rsplit_once(':') {
            Some((spec, p)) => match p.parse::<u16>() {
                Ok(p) if p > 0 => (spec, p),
                _ => return Err(bad(format!("has `{p}` for a port (1 to 65535)"))),
            },
            None => (text, port),
        };
        let addr = |s: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| bad(format!("has `{s}`, not an IPv4 address")))
        };
        if let Some((net, prefix)) = spec.split_once('/') {
            let prefix: u32 = match prefix.parse() {
                Ok(p) if p <= 32 => p,
                _ => return Err(bad(format!("has `/{prefix}`, not a prefix length (0 to 32)"))),
            };
            let host_bits = u32::MAX.checked_shr(prefix).unwrap_or(0);
            let address = Ipv4Addr::from(u32::from(addr(net)?) | host_bits);
            return Ok(Where::Broadcast { address, port });
        }
        if let Some((from, to)) = spec.split_once('-') {
            let first = addr(from)?;
            let last = if to.contains('.') {
                addr(to)?
            } else {
                let end: u8 = to
                    .parse()
                    .map_err(|_| bad(format!("has `{to}`, neither an address nor a number up to 255")))?;
                let o = first.octets();
                Ipv4Addr::new(o[0], o[1], o[2], end)
            };
            let (a, b) = (u32::from(first), u32::from(last));
            if b < a {
                return Err(bad("ends before it starts".into()));
            }
            if b - a >= MAX_RANGE {
                return Err(bad(format!(
                    "names {} addresses; at most {MAX_RANGE}",
                    u64::from(b - a) + 1
                )));
            }
            let addresses = (a..=b).map(Ipv4Addr::from).collect();
            return Ok(Where::Each { addresses, port });
        }
        let address = addr(spec)?;
        if address.is_broadcast() {
            return Ok(Where::Broadcast { address, port });
        }
        Ok(Where::Each {
            addresses: vec![address],
            port,
        })
    }

    /// How the devices it finds are found: `probe` (sent to them), `broadcast` or `serial`.
    pub fn found_by(&self) -> &'static str {
        match self {
            Where::Each { .. } => "probe",
            Where::Broadcast { .. } => "broadcast",
            Where::Serial(_) => "serial",
        }
    }
}

/// A device that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its name.
    pub name: String,
    /// Its id (its MAC address by default; 0: unknown).
    pub id: u64,
    /// The address it answered from: where to reach it.
    pub address: Ipv4Addr,
    /// Its framed TCP port.
    pub tcp_port: u16,
    /// Its framed UDP port.
    pub udp_port: u16,
    /// The protocol version it speaks.
    pub protocol: u8,
    /// Its firmware's version.
    pub firmware: String,
    /// Whether it requires its key.
    pub key_required: bool,
    /// Its own addresses (behind a port forward, not `address`).
    pub addresses: Vec<Ipv4Addr>,
    /// How it was found: `probe`, `broadcast`, `mdns`, `serial` (all that found it).
    pub found_by: Vec<&'static str>,
    /// The serial port it answered on (`serial:PATH@BAUD`), when found there.
    pub serial: Option<String>,
    /// That port's USB vendor and product id (`vvvv:pppp`), where the OS knows them.
    pub usb: Option<String>,
}

impl Found {
    /// `ADDRESS:TCP_PORT`, what `--to` takes; `serial:PATH@BAUD` for a device found only on a
    /// serial port.
    pub fn to(&self) -> String {
        match (&self.serial, self.found_by.iter().all(|b| *b == "serial")) {
            (Some(port), true) => port.clone(),
            _ => format!("{}:{}", self.address, self.tcp_port),
        }
    }

    /// Whether `other` is the same device answering again: the same id (a known one), or from
    /// the same place (the same serial port; the same address and UDP port).
    fn same(&self, other: &Found) -> bool {
        if self.id != 0 && other.id != 0 {
            self.id == other.id
        } else if self.serial.is_some() || other.serial.is_some() {
            self.serial == other.serial
        } else {
            (self.address, self.udp_port) == (other.address, other.udp_port)
        }
    }
}

/// The device a resolved DNS-SD service describes (its TXT keys: `name`, `id`, `protocol`,
/// `firmware`, `key`), with the port of that service (`_tether._tcp` or `_tether._udp`); `None`
/// for a service without a usable `id` or IPv4 address.
fn from_mdns(s: &mdns_sd::ResolvedService) -> Option<Found> {
    let txt = &s.txt_properties;
    let id = u64::from_str_radix(txt.get_property_val_str("id")?, 16).ok()?;
    let address = s.get_addresses_v4().into_iter().min()?;
    let tcp = s.ty_domain.starts_with("_tether._tcp");
    Some(Found {
        name: txt.get_property_val_str("name").unwrap_or_default().to_string(),
        id,
        address,
        tcp_port: if tcp { s.port } else { 0 },
        udp_port: if tcp { 0 } else { s.port },
        protocol: txt
            .get_property_val_str("protocol")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        firmware: txt.get_property_val_str("firmware").unwrap_or_default().to_string(),
        key_required: txt.get_property_val_str("key") == Some("1"),
        addresses: vec![address],
        found_by: vec!["mdns"],
        serial: None,
        usb: None,
    })
}

/// Browses mDNS for `_tether._tcp` and `_tether._udp` until `timeout`: one entry per device
/// (its two services merged by id; a port is 0 while its service has not been resolved).
pub fn browse(timeout: Duration) -> Result<Vec<Found>> {
    let fail =
        |e: mdns_sd::Error| ClientError::connection(Over::Udp, Cause::Local, format!("cannot browse mDNS ({e})"));
    let daemon = mdns_sd::ServiceDaemon::new().map_err(fail)?;
    let receivers = MDNS_TYPES
        .iter()
        .map(|t| daemon.browse(t))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(fail)?;
    let deadline = Instant::now() + timeout;
    let mut found: Vec<Found> = Vec::new();
    while Instant::now() < deadline {
        let mut any = false;
        for rx in &receivers {
            while let Ok(event) = rx.try_recv() {
                any = true;
                if let mdns_sd::ServiceEvent::ServiceResolved(s) = event {
                    if let Some(device) = from_mdns(&s) {
                        merge(&mut found, vec![device]);
                    }
                }
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The daemon's thread ends on its own; a failure to stop it changes nothing found.
    let _ = daemon.shutdown();
    Ok(found)
}

/// The serial ports the OS knows that sit on USB (`/dev/ttyUSB*`, `/dev/ttyACM*` and the like:
/// those with a USB vendor and product id), where a board's USB serial adapter or CDC port shows
/// up. Built-in UARTs (`/dev/ttyS*`) are left out: asking every one of them would write to
/// whatever hangs there (a modem, a console), and most exist only as names.
pub fn usb_serial_ports() -> Vec<crate::serial::SerialAddr> {
    let Ok(ports) = serial2::SerialPort::available_ports() else {
        return Vec::new();
    };
    let mut out: Vec<_> = ports
        .into_iter()
        .filter(|p| usb_ids(std::path::Path::new("/sys/class/tty"), p).is_some())
        .map(|p| crate::serial::SerialAddr {
            path: p.to_string_lossy().into_owned(),
            baud: crate::serial::DEFAULT_BAUD,
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The USB vendor and product id (`vvvv:pppp`) of the tty device `port` (`/dev/ttyUSB0`), read
/// from the sysfs tree at `class` (`/sys/class/tty`): its `device` link leads into the USB
/// interface, whose parents hold `idVendor` and `idProduct`. `None` for a port not on USB (or an
/// OS without sysfs).
pub fn usb_ids(class: &std::path::Path, port: &std::path::Path) -> Option<String> {
    let name = port.file_name()?;
    let mut dir = std::fs::canonicalize(class.join(name).join("device")).ok()?;
    // A few levels up at most: interface, then the USB device (ttyUSB has one level more).
    for _ in 0..4 {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_string());
        if let (Some(v), Some(p)) = (read("idVendor"), read("idProduct")) {
            return Some(format!("{v}:{p}"));
        }
        if !dir.pop() {
            break;
        }
    }
    None
}

/// Asks each serial port `Hello` (and then `Discover`, for the id, firmware and ports a device
/// serves it there) within `timeout`, all at once: the ports that answer, as devices found by
/// `serial`. A port that cannot be opened or does not answer like a Tether device is left out.
pub fn ask_serial(ports: &[crate::serial::SerialAddr], timeout: Duration) -> Vec<Found> {
    let asks: Vec<_> = ports
        .iter()
        .cloned()
        .map(|addr| std::thread::spawn(move || ask_one_serial(&addr, timeout)))
        .collect();
    asks.into_iter().filter_map(|a| a.join().ok().flatten()).collect()
}

fn ask_one_serial(addr: &crate::serial::SerialAddr, timeout: Duration) -> Option<Found> {
    let mut client = crate::serial::open(addr, timeout).ok()?;
    let info = client.hello("host-cli discover").ok()?;
    let mut found = Found {
        name: info.device.clone(),
        id: 0,
        address: Ipv4Addr::UNSPECIFIED,
        tcp_port: 0,
        udp_port: info.udp_port,
        protocol: info.version,
        firmware: String::new(),
        key_required: info.key_required,
        addresses: Vec::new(),
        found_by: vec!["serial"],
        serial: Some(addr.to_string()),
        usb: usb_ids(std::path::Path::new("/sys/class/tty"), std::path::Path::new(&addr.path)),
    };
    // A device built without discovery (or a keyed one before its handshake) refuses it: then
    // what `Hello` said is all there is.
    if let Ok(frame) = client.call(Kind::Discover, &(), &[]) {
        if let Ok(p) = frame.meta::<Presence<'_>>() {
            found.id = p.id;
            found.firmware = p.firmware.to_string();
            found.tcp_port = p.tcp_port;
            found.udp_port = p.udp_port;
            found.addresses = p.addresses.iter().map(|a| Ipv4Addr::from(*a)).collect();
        }
    }
    Some(found)
}

/// Adds `more` to `found`: a device already there (by id) gains how it was found and the ports it
/// lacked; a new one is appended.
pub fn merge(found: &mut Vec<Found>, more: Vec<Found>) {
    for device in more {
        match found.iter_mut().find(|f| f.same(&device)) {
            Some(known) => {
                for by in &device.found_by {
                    if !known.found_by.contains(by) {
                        known.found_by.push(by);
                    }
                }
                if known.tcp_port == 0 {
                    known.tcp_port = device.tcp_port;
                }
                if known.udp_port == 0 {
                    known.udp_port = device.udp_port;
                }
                if known.serial.is_none() {
                    known.serial = device.serial;
                    known.usb = device.usb;
                }
            }
            None => found.push(device),
        }
    }
}

/// A `Discover` probe with request `id`, padded to [`msg::MAX_DATAGRAM`] bytes.
fn probe(id: u32) -> Vec<u8> {
    let mut out = vec![0u8; msg::MAX_DATAGRAM];
    let n = encode(&mut out, FrameSpec::request(Kind::Discover, id), &(), &[]).unwrap_or(0);
    debug_assert!(n > 0 && n <= out.len());
    out
}

/// The device an answer datagram from `from` describes, if it is a `Presence` for request `id`
/// (a probe to an address) or `id + 1` (a broadcast, which the flag says).
fn answer(data: &[u8], from: SocketAddr, id: u32) -> Option<(Found, bool)> {
    let SocketAddr::V4(from) = from else { return None };
    let frame = parse_datagram(data, data.len().max(msg::MAX_DATAGRAM)).ok()?;
    let broadcast = frame.request_id() == id.wrapping_add(1);
    let ok = frame.kind() == Kind::Discover
        && (frame.request_id() == id || broadcast)
        && frame.flags().contains(Flags::RESPONSE)
        && !frame.flags().contains(Flags::ERROR);
    if !ok {
        return None;
    }
    let p = frame.meta::<Presence<'_>>().ok()?;
    let found = Found {
        name: p.name.to_string(),
        id: p.id,
        address: *from.ip(),
        tcp_port: p.tcp_port,
        udp_port: p.udp_port,
        protocol: p.version,
        firmware: p.firmware.to_string(),
        key_required: p.key_required,
        addresses: p.addresses.iter().map(|a| Ipv4Addr::from(*a)).collect(),
        found_by: Vec::new(),
        serial: None,
        usb: None,
    };
    Some((found, broadcast))
}

/// Probes `scope` and collects the answers until `timeout` (or, with no broadcast in the scope,
/// until every address probed has answered); a probe that got no answer is sent again twice
/// within the timeout. `each` is called with every device when it is first found. Devices are
/// returned in the order they answered, one entry per device.
pub fn discover(scope: &[Where], timeout: Duration, mut each: impl FnMut(&Found)) -> Result<Vec<Found>> {
    let fail =
        |e: io::Error| ClientError::connection(Over::Udp, Cause::Local, format!("cannot probe for devices ({e})"));
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(fail)?;
    socket.set_broadcast(true).map_err(fail)?;
    // A request id of this run's own, so that answers to another run are not taken.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Probes to addresses carry an even id, broadcasts the odd one after it: an answer says how
    // it was asked for, also when a device answers both from the same address.
    let id = ((std::process::id() << 12 ^ nanos) & !1).max(2);
    let datagrams = [probe(id), probe(id + 1)];
    // Where each probe goes, and the probe it gets.
    let mut targets: Vec<(SocketAddrV4, usize)> = Vec::new();
    for w in scope {
        match w {
            Where::Each { addresses, port } => {
                targets.extend(addresses.iter().map(|a| (SocketAddrV4::new(*a, *port), 0)))
            }
            Where::Broadcast { address, port } => targets.push((SocketAddrV4::new(*address, *port), 1)),
            // Asked by `ask_serial`, not by datagrams.
            Where::Serial(_) => {}
        }
    }
    let waits_for_all = targets.iter().any(|(_, which)| *which == 1);
    let start = Instant::now();
    let mut answered: HashSet<SocketAddrV4> = HashSet::new();
    let mut found: Vec<Found> = Vec::new();
    let mut buf = vec![0u8; 2048];
    for round in 0..TRIES {
        for (to, which) in &targets {
            if !answered.contains(to) {
                // A probe that cannot leave (no route) finds nothing there; the others go on.
                let _ = socket.send_to(&datagrams[*which], to);
            }
        }
        let until = start + timeout.mul_f64(f64::from(round + 1) / f64::from(TRIES));
        loop {
            let all = !waits_for_all && targets.iter().all(|(to, _)| answered.contains(to));
            let now = Instant::now();
            if all || now >= until {
                break;
            }
            socket.set_read_timeout(Some(until - now)).map_err(fail)?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                // An ICMP error some probe earned: the others go on.
                Err(_) => continue,
            };
            let Some((mut device, broadcast)) = answer(&buf[..n], from, id) else {
                continue;
            };
            let by = if broadcast { "broadcast" } else { "probe" };
            if let (SocketAddr::V4(source), false) = (from, broadcast) {
                answered.insert(source);
            }
            match found.iter_mut().find(|f| f.same(&device)) {
                Some(known) => {
                    if !known.found_by.contains(&by) {
                        known.found_by.push(by);
                    }
                }
                None => {
                    device.found_by.push(by);
                    each(&device);
                    found.push(device);
                }
            }
        }
        if !waits_for_all && targets.iter().all(|(to, _)| answered.contains(to)) {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            Where::parse("127.0.1.7", 7071).unwrap(),
            Where::Each {
                addresses: vec![ip("127.0.1.7")],
                port: 7071
            }
        );
        let Where::Each { addresses, port } = Where::parse("127.0.1.1-16:9", 7071).unwrap() else {
            panic!("a range")
        };
        assert_eq!((addresses.len(), addresses[15], port), (16, ip("127.0.1.16"), 9));
        let Where::Each { addresses, .. } = Where::parse("127.0.1.1-127.0.2.0", 7071).unwrap() else {
            panic!("a range")
        };
        assert_eq!((addresses.len(), addresses[255]), (256, ip("127.0.2.0")));
        assert_eq!(
            Where::parse("192.0.2.0/24", 7071).unwrap(),
            Where::Broadcast {
                address: ip("192.0.2.255"),
                port: 7071
            }
        );
        assert_eq!(Where::parse("255.255.255.255", 7).unwrap().found_by(), "broadcast");
        // Said back as written, for "no device answered (asked …)".
        for (text, shown) in [
            ("127.0.1.1-3", "127.0.1.1-127.0.1.3:7071"),
            ("127.0.0.1", "127.0.0.1:7071"),
            ("255.255.255.255:9", "255.255.255.255:9 (broadcast)"),
        ] {
            assert_eq!(Where::parse(text, 7071).unwrap().to_string(), shown);
        }
        let Where::Serial(port) = Where::parse("serial:/dev/ttyACM0@9600", 7071).unwrap() else {
            panic!("a serial port")
        };
        assert_eq!((port.path.as_str(), port.baud), ("/dev/ttyACM0", 9600));
        for bad in [
            "127.0.1.9-3",
            "10.0.0.0-10.1.0.0",
            "x",
            "1.2.3.4:0",
            "1.2.3.0/33",
            "1.2.3.4-300",
            "serial:",
            "serial:/dev/ttyACM0@fast",
        ] {
            assert!(Where::parse(bad, 7071).is_err(), "{bad}");
        }
    }

    #[test]
    fn usb_ids_come_from_the_parents_of_the_tty_device_in_sysfs() {
        let root = tempfile::tempdir().expect("a temporary directory");
        // /sys/class/tty/ttyACM0/device -> ../../devices/usb1/1-1/1-1:1.0 (the interface); the
        // USB device 1-1 holds the ids.
        let usb = root.path().join("devices/usb1/1-1");
        std::fs::create_dir_all(usb.join("1-1:1.0")).unwrap();
        std::fs::write(usb.join("idVendor"), "2e8a\n").unwrap();
        std::fs::write(usb.join("idProduct"), "000a\n").unwrap();
        let class = root.path().join("class/tty");
        std::fs::create_dir_all(class.join("ttyACM0")).unwrap();
        std::os::unix::fs::symlink(usb.join("1-1:1.0"), class.join("ttyACM0/device")).unwrap();
        // A built-in UART: a device that is not on USB.
        let platform = root.path().join("devices/platform/serial8250");
        std::fs::create_dir_all(&platform).unwrap();
        std::fs::create_dir_all(class.join("ttyS0")).unwrap();
        std::os::unix::fs::symlink(&platform, class.join("ttyS0/device")).unwrap();
        let ids = |port: &str| usb_ids(&class, std::path::Path::new(port));
        assert_eq!(ids("/dev/ttyACM0").as_deref(), Some("2e8a:000a"));
        assert_eq!(ids("/dev/ttyS0"), None);
        assert_eq!(ids("/dev/pts/3"), None, "no such tty in the class");
    }

    #[test]
    fn merging_keeps_one_device_per_id_and_how_each_way_found_it() {
        let device = |by: &'static str, tcp: u16, udp: u16| Found {
            name: "d".into(),
            id: 7,
            address: Ipv4Addr::new(192, 0, 2, 7),
            tcp_port: tcp,
            udp_port: udp,
            protocol: 1,
            firmware: String::new(),
            key_required: false,
            addresses: Vec::new(),
            found_by: vec![by],
            serial: None,
            usb: None,
        };
        let mut found = vec![device("probe", 7070, 7071)];
        merge(&mut found, vec![device("mdns", 0, 9999), device("mdns", 7070, 0)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].found_by, ["probe", "mdns"]);
        assert_eq!(
            (found[0].tcp_port, found[0].udp_port),
            (7070, 7071),
            "the probe's ports stay"
        );
        let mut other = device("serial", 0, 7071);
        other.id = 0;
        other.serial = Some("serial:/dev/ttyACM0@115200".into());
        merge(&mut found, vec![other.clone(), other]);
        assert_eq!(found.len(), 2, "an id-less serial device is its port");
    }

    #[test]
    fn only_presence_answers_to_this_run_count() {
        let from: SocketAddr = "127.0.1.3:7071".parse().unwrap();
        let presence = Presence {
            version: 1,
            id: 42,
            name: "d",
            firmware: "f 1",
            tcp_port: 7070,
            udp_port: 7071,
            key_required: true,
            addresses: [[10, 0, 0, 3]].into_iter().collect(),
        };
        let mut out = vec![0u8; 256];
        let n = encode(&mut out, FrameSpec::response(Kind::Discover, 5), &presence, &[]).unwrap();
        let (d, broadcast) = answer(&out[..n], from, 5).expect("a device");
        assert!(!broadcast);
        assert!(answer(&out[..n], from, 4).is_some_and(|(_, b)| b), "the broadcast's id");
        assert_eq!((d.name.as_str(), d.id, d.to()), ("d", 42, "127.0.1.3:7070".to_string()));
        assert_eq!(d.addresses, [Ipv4Addr::new(10, 0, 0, 3)]);
        assert!(answer(&out[..n], from, 6).is_none(), "another run's answer");
        let n = encode(&mut out, FrameSpec::request(Kind::Discover, 5), &(), &[]).unwrap();
        assert!(answer(&out[..n], from, 5).is_none(), "a probe, not an answer");
    }
}
