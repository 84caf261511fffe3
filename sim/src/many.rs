//! `sim --devices N`: many devices in one process on one virtual Ethernet switch. Rootless, each
//! answers on its own PC address (127.0.1.1, 127.0.1.2, … by default) on the usual ports; with
//! `--tap`, the switch has the TAP interface on one of its ports and every device sits on its
//! segment with its own address (static, or from DHCP), announcing itself by mDNS.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration as StdDuration;

use smoltcp::time::Instant;
use smoltcp::wire::{IpCidr, Ipv4Address, Ipv4Cidr};
use tether_core::secure::Psk;
use tether_core::server::ServerConfig;
use tether_sim::fleet::{self, Fleet, Member};
use tether_sim::gateway::{Forward, Forwards, Gateway};
use tether_sim::link::{Faults, Link};
use tether_sim::node::{Node, Sizes};
use tether_sim::uplink::Uplink;

use crate::cli::Args;
use crate::run::{self, Error};

/// Where one device's forwarded ports listen unless `--listen` says.
pub const LISTEN: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Where the first of several devices listens unless `--listen` says; device i on the i-th
/// address from it (every 127.x.y.z address is this machine on Linux).
pub const FIRST_LISTEN: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);
/// The first of several devices' address on the switch unless `--ip` says: a /16 holds 256
/// devices and the gateway.
const FIRST_IP: &str = "169.254.70.2/16";
/// The longest the loop sleeps while no device has work in progress (Ctrl-C wakes it anyway).
const IDLE_SLEEP: StdDuration = StdDuration::from_secs(1);
/// The same on TAP, where nothing wakes the wait on Ctrl-C: how soon the sim notices it.
const TAP_SLEEP: StdDuration = StdDuration::from_millis(200);

/// The default `--ip`: `one` for one device, [`FIRST_IP`] for several.
pub fn default_ip(args: &Args, one: &'static str) -> &'static str {
    if args.devices > 1 {
        FIRST_IP
    } else {
        one
    }
}

/// One device's name and address on the switch.
struct Place {
    name: &'static str,
    ip: Ipv4Address,
}

/// Where device `i` is on the switch: from `first`, leaving out the gateway and the broadcast
/// address.
fn places(args: &Args, first: Ipv4Cidr, gw: Ipv4Address) -> Result<Vec<Place>, Error> {
    let n = usize::from(args.devices);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ip = fleet::nth(first.address(), i)
            .filter(|ip| first.contains_addr(ip) && *ip != gw && Some(*ip) != first.broadcast())
            .ok_or_else(|| {
                format!(
                    "--ip {first} has no room for {n} devices beside the gateway {gw}: give a larger network (e.g. {FIRST_IP})"
                )
            })?;
        // A device's name lives as long as the process, as a board's does.
        let name: &'static str = Box::leak(fleet::name(i).into_boxed_str());
        out.push(Place { name, ip });
    }
    Ok(out)
}

/// Where device `i`'s forwarded ports listen on the PC: from `--listen` on.
fn hosts(args: &Args) -> Result<Vec<IpAddr>, Error> {
    let listen = match args.listen {
        None => FIRST_LISTEN,
        Some(IpAddr::V4(a)) => a,
        Some(IpAddr::V6(_)) => return Err("--listen with --devices N wants an IPv4 address".into()),
    };
    let n = usize::from(args.devices);
    (0..n)
        .map(|i| {
            fleet::nth(listen, i)
                .map(IpAddr::V4)
                .ok_or_else(|| format!("--listen {listen} has no {n} addresses after it").into())
        })
        .collect()
}

/// The key each device requires: the one of `--key-file`, or its own from `--key-dir`.
fn keys(args: &Args, places: &[Place]) -> Result<Vec<Option<Psk>>, Error> {
    match (&args.key_file, &args.key_dir) {
        (Some(path), _) => {
            let key = run::read_key(path)?;
            Ok(places.iter().map(|_| Some(key.clone())).collect())
        }
        (None, Some(dir)) => places
            .iter()
            .map(|p| {
                let path = dir.join(format!("{}.key", p.name));
                run::read_key(&path)
                    .map(Some)
                    .map_err(|e| format!("--key-dir: {e} (`host-cli keygen {}` writes one)", path.display()).into())
            })
            .collect(),
        (None, None) => Ok(places.iter().map(|_| None).collect()),
    }
}

/// The forwarded ports of a device at `ip` on the switch listening on `host`: the framed ports,
/// and the plain ones when they are on.
fn forwards(args: &Args, ip: Ipv4Address, host: IpAddr, config: &ServerConfig) -> Forwards {
    let at = |pc, device_port| Forward {
        host: SocketAddr::new(host, pc),
        device_port,
    };
    let mut f = Forwards {
        device: ip,
        tcp: vec![at(args.tcp_port, config.tcp_port)],
        udp: vec![at(args.udp_port, config.udp_port)],
    };
    if run::plain_on(args) {
        f.tcp.push(at(args.plain_tcp_port, config.plain_tcp_port));
        f.tcp.push(at(args.plain_command_port, config.plain_command_port));
        f.tcp
            .push(at(args.plain_command_json_port, config.plain_command_json_port));
        f.udp.push(at(args.plain_udp_port, config.plain_udp_port));
        f.udp.push(at(args.plain_chat_port, config.plain_chat_port));
    }
    f
}

/// A fleet built on ports `0..N` of a switch with one more port (N) for the PC's side.
struct Built {
    fleet: Fleet,
    places: Vec<Place>,
    /// Removes the temporary firmware slots at exit.
    _firmware: run::TempFirmware,
    started: std::time::Instant,
}

/// Builds `--devices N` devices from `first` on on a new switch, each answering on `config`'s
/// ports; `on_tap` for a switch with the kernel's stack on it (checksums, mDNS, DHCP).
fn build(
    args: &Args,
    first: Ipv4Cidr,
    gw_ip: Ipv4Address,
    config: &ServerConfig,
    on_tap: bool,
) -> Result<Built, Error> {
    if args.serial.is_some() || args.chat {
        return Err("--serial and --chat serve one device: not with --devices N (yet)".into());
    }
    // Each device keeps its own firmware slots: under its store directory (--root/NAME), else in
    // one temporary directory of this process, removed at exit.
    let update = run::update_config(args)?;
    let (fw_base, temporary) = run::firmware_dir(args);
    let firmware = run::TempFirmware((update.is_some() && temporary).then(|| fw_base.clone()));
    let started = std::time::Instant::now();
    let places = places(args, first, gw_ip)?;
    let keys = keys(args, &places)?;
    let faults = Faults {
        loss: args.loss,
        corrupt: args.corrupt,
        mtu: args.mtu,
        seed: args.seed,
    };
    let n = places.len();
    let link = Link::switch(faults, n + 1);
    if on_tap {
        link.checksummed();
    }
    if let Some(p) = &args.pcap {
        link.capture(p)
            .map_err(|e| format!("cannot write the capture {}: {e}", p.display()))?;
    }
    let sizes = Sizes {
        socket_buffer: args.socket_buffer as usize,
        plain_clients: run::plain_clients(args),
    };
    let mut fleet = Fleet::new(link.clone());
    for (i, (place, key)) in places.iter().zip(keys).enumerate() {
        let root = args.root.as_ref().map(|r| r.join(place.name));
        let store = run::store(args, root.as_deref())?;
        let ip = Ipv4Cidr::new(place.ip, first.prefix_len());
        let now = run::clock();
        let mut node = Node::named(
            place.name,
            link.port(i),
            IpCidr::Ipv4(ip),
            Some(gw_ip),
            config,
            sizes,
            store,
            now,
        );
        if let Some(key) = key {
            run::give_key(&mut node, key);
        }
        run::boot_clock(&mut node, args);
        if let Some(config) = update {
            let dir = match &root {
                Some(r) => r.join(".tether-fw"),
                None => fw_base.join(place.name),
            };
            run::boot_firmware_in(&mut node, config, &dir)?;
        }
        if on_tap && !args.no_mdns {
            node.use_mdns(&args.fw_board);
        }
        if on_tap && args.dhcp {
            node.use_dhcp(run::dhcp_config(args, ip, gw_ip), now);
        }
        fleet.members.push(Member::new(node));
    }
    Ok(Built {
        fleet,
        places,
        _firmware: firmware,
        started,
    })
}

/// Runs `--devices N` devices on a switch: behind the rootless forwarder, or with `--tap` on
/// the TAP's segment; until Ctrl-C.
pub fn run(args: &Args, first: Ipv4Cidr, gw_ip: Ipv4Address) -> Result<(), Error> {
    match &args.tap {
        Some(name) => tap(args, name, first, gw_ip),
        None => rootless(args, first, gw_ip),
    }
}

/// The devices behind the rootless forwarder, each on its own PC address.
fn rootless(args: &Args, first: Ipv4Cidr, gw_ip: Ipv4Address) -> Result<(), Error> {
    let config = run::server_config(args, false);
    let hosts = hosts(args)?;
    let Built {
        mut fleet,
        places,
        _firmware,
        started,
    } = build(args, first, gw_ip, &config, false)?;
    let link = fleet.link.clone();
    let n = places.len();
    let all: Vec<Forwards> = places
        .iter()
        .zip(&hosts)
        .map(|(p, host)| forwards(args, p.ip, *host, &config))
        .collect();
    let gw_cidr = IpCidr::Ipv4(Ipv4Cidr::new(gw_ip, first.prefix_len()));
    let mut gw = Gateway::with_devices(link.port(n), gw_cidr, &all, args.socket_buffer as usize, run::clock())?;
    gw.corrupt_stream(args.stream_corrupt, args.seed);
    // Each device advertises the ports peers reach it on (its forwarded framed ports).
    let (tcp_per, udp_per) = (all[0].tcp.len(), all[0].udp.len());
    let udp = gw.udp_addrs();
    let tcp = gw.tcp_addrs();
    for (i, m) in fleet.members.iter_mut().enumerate() {
        if let Some(a) = udp.get(i * udp_per) {
            m.node.server.device.advertise_udp_port(a.port());
        }
        if let Some(a) = tcp.get(i * tcp_per) {
            m.node.server.device.advertise_tcp_port(a.port());
        }
    }
    let stop = run::stop_waking(&gw)?;
    let show = |a: Option<&SocketAddr>| a.map_or("?".to_string(), SocketAddr::to_string);
    let lines: Vec<String> = places
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (t, u) = (tcp.get(i * tcp_per), udp.get(i * udp_per));
            format!("  {}  {}  framed TCP {}  UDP {}", p.name, p.ip, show(t), show(u))
        })
        .collect();
    let head = format!("{n} devices on a virtual switch (rootless), gateway {gw_ip}");
    let port = |a: Option<&SocketAddr>, usual| match a.map_or(0, SocketAddr::port) {
        p if p == usual => String::new(),
        p => format!(":{p}"),
    };
    let (first_host, last_host) = (hosts[0], hosts[n - 1]);
    let tries = [
        format!(
            "host-cli --to {first_host}{}{} info",
            port(tcp.first(), 7070),
            try_key(args, &places)
        ),
        format!("host-cli discover {first_host}-{last_host}{}", port(udp.first(), 7071)),
    ];
    banner(args, &head, &lines, &tries, started)?;

    let mut last_flush = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let saturated = pump(|now| gw.pump(now) | fleet.poll(now));
        flush_capture(args, &link, &mut last_flush);
        let now = run::clock();
        let delay = run::soonest([gw.delay(now), fleet.delay(now)], IDLE_SLEEP);
        gw.wait(Some(if saturated { StdDuration::ZERO } else { delay }))?;
    }
    stopped(&fleet);
    Ok(())
}

/// The devices on the segment of the TAP interface `name`, with the kernel's stack as their peer.
fn tap(args: &Args, name: &str, first: Ipv4Cidr, gw_ip: Ipv4Address) -> Result<(), Error> {
    use smoltcp::phy::wait;
    use std::os::fd::AsRawFd;

    let phy = run::open_tap(name)?;
    let fd = phy.as_raw_fd();
    let config = run::server_config(args, true);
    let Built {
        mut fleet,
        places,
        _firmware,
        started,
    } = build(args, first, gw_ip, &config, true)?;
    let link = fleet.link.clone();
    let n = places.len();
    let mut uplink = Uplink::new(phy, link.port(n));
    let lines: Vec<String> = places
        .iter()
        .map(|p| match (args.dhcp, args.ip.is_some()) {
            (false, _) => format!("  {}  {}", p.name, p.ip),
            (true, true) => format!("  {}  DHCP (fallback {})", p.name, p.ip),
            (true, false) => format!("  {}  DHCP", p.name),
        })
        .collect();
    let head = format!(
        "{n} devices on TAP {name}, gateway {gw_ip}, framed TCP {} / UDP {}",
        config.tcp_port, config.udp_port
    );
    let at = if args.dhcp {
        "ADDRESS".to_string()
    } else {
        places[0].ip.to_string()
    };
    let tries = [
        format!("host-cli --to {at}:{}{} info", config.tcp_port, try_key(args, &places)),
        format!(
            "host-cli discover {}",
            Ipv4Cidr::new(first.network().address(), first.prefix_len())
        ),
    ];
    banner(args, &head, &lines, &tries, started)?;
    if args.dhcp {
        println!("  dhcp         each device says `NAME dhcp: …` when its address changes");
    }
    if !args.no_mdns {
        println!(
            "  mdns         each announces _tether._tcp and _tether._udp (board {})",
            args.fw_board
        );
    }
    std::io::stdout().flush()?;

    let stop = run::stop_flag();
    let mut last_flush = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let saturated = pump(|now| uplink.pump(now) | fleet.poll(now));
        for m in &mut fleet.members {
            for change in m.node.dhcp_changes.drain(..) {
                println!("{} {}", m.node.server.device.config().name, run::dhcp_line(&change));
            }
        }
        std::io::stdout().flush()?;
        flush_capture(args, &link, &mut last_flush);
        let delay = match saturated {
            true => StdDuration::ZERO,
            false => run::soonest([fleet.delay(run::clock()), None], TAP_SLEEP),
        };
        match wait(fd, Some(smoltcp::time::Duration::from_micros(delay.as_micros() as u64))) {
            // Ctrl-C interrupts the wait; the loop condition sees the stop flag.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => r?,
        }
    }
    stopped(&fleet);
    Ok(())
}

/// Runs `step` (with the time) until nothing moves, at most 256 rounds; returns whether it was
/// still moving then (the caller polls again at once instead of sleeping).
fn pump(mut step: impl FnMut(Instant) -> bool) -> bool {
    (0..256).all(|_| step(run::clock()))
}

/// Writes the capture out every 200 ms, so a reader (tshark) sees it while the sim runs.
fn flush_capture(args: &Args, link: &Link, last: &mut std::time::Instant) {
    if args.pcap.is_some() && last.elapsed() > StdDuration::from_millis(200) {
        let _ = link.flush_capture();
        *last = std::time::Instant::now();
    }
}

/// What the fleet did, at exit.
fn stopped(fleet: &Fleet) {
    let _ = fleet.link.flush_capture();
    let s = fleet.link.stats();
    eprintln!(
        "sim: stopped; {} devices polled {} times; the switch delivered {} frames (lost {}, corrupted {}, oversized {})",
        fleet.members.len(),
        fleet.polls,
        s.delivered,
        s.lost,
        s.corrupted,
        s.oversized
    );
}

/// The `--key-file` the example command needs: the device's, or the first device's of `--key-dir`.
fn try_key(args: &Args, places: &[Place]) -> String {
    match (&args.key_file, &args.key_dir) {
        (Some(p), _) => format!(" --key-file {}", p.display()),
        (None, Some(d)) => format!(" --key-file {}/{}.key", d.display(), places[0].name),
        (None, None) => String::new(),
    }
}

/// What runs where (`lines`, one a device: every device for a few, the first and the last two
/// for many), and what to try.
fn banner(
    args: &Args,
    head: &str,
    lines: &[String],
    tries: &[String; 2],
    started: std::time::Instant,
) -> Result<(), Error> {
    let n = lines.len();
    println!("tether sim: {head}, started in {} ms", started.elapsed().as_millis());
    for (i, line) in lines.iter().enumerate() {
        if n > 8 && i > 1 && i + 2 < n {
            if i == 2 {
                println!("  …");
            }
            continue;
        }
        println!("{line}");
    }
    if run::plain_on(args) {
        println!("  plain        each device's plain services on its own address (ports as for one device)");
    }
    println!("  storage      {} each", run::storage_line(args));
    println!("  clock        {}", run::clock_line(args));
    let security = match (&args.key_file, &args.key_dir) {
        (_, Some(dir)) => format!("each device requires its own key ({}/NAME.key)", dir.display()),
        _ => run::security_line(args),
    };
    println!("  security     {security}");
    if let Some(p) = &args.pcap {
        println!("  capture      {}", p.display());
    }
    println!("try: {}", tries[0]);
    println!("     {}", tries[1]);
    std::io::stdout().flush()?;
    Ok(())
}
