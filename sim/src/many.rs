//! `sim --devices N`: many devices in one process on one virtual Ethernet switch, rootless: each
//! answers on its own PC address (127.0.1.1, 127.0.1.2, … by default) on the usual ports.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration as StdDuration;

use smoltcp::time::Instant;
use smoltcp::wire::{IpCidr, Ipv4Address, Ipv4Cidr};
use tether_core::secure::Psk;
use tether_sim::fleet::{self, Fleet, Member};
use tether_sim::gateway::{Forward, Forwards, Gateway};
use tether_sim::link::{Faults, Link};
use tether_sim::node::{Node, Sizes};

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

/// The default `--ip`: `one` for one device, [`FIRST_IP`] for several.
pub fn default_ip(args: &Args, one: &'static str) -> &'static str {
    if args.devices > 1 {
        FIRST_IP
    } else {
        one
    }
}

/// One device's addresses.
struct Place {
    name: &'static str,
    ip: Ipv4Address,
    host: IpAddr,
}

/// Where device `i` is on the switch (from `first`) and on the PC (from `listen`).
fn places(args: &Args, first: Ipv4Cidr, gw: Ipv4Address) -> Result<Vec<Place>, Error> {
    let listen = match args.listen {
        None => FIRST_LISTEN,
        Some(IpAddr::V4(a)) => a,
        Some(IpAddr::V6(_)) => return Err("--listen with --devices N wants an IPv4 address".into()),
    };
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
        let host = fleet::nth(listen, i).ok_or_else(|| format!("--listen {listen} has no {n} addresses after it"))?;
        // A device's name lives as long as the process, as a board's does.
        let name: &'static str = Box::leak(fleet::name(i).into_boxed_str());
        out.push(Place {
            name,
            ip,
            host: IpAddr::V4(host),
        });
    }
    Ok(out)
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

/// The forwarded ports of a device listening on `host`: the framed ports, and the plain ones
/// when they are on.
fn forwards(args: &Args, place: &Place, config: &tether_core::server::ServerConfig) -> Forwards {
    let at = |pc, device_port| Forward {
        host: SocketAddr::new(place.host, pc),
        device_port,
    };
    let mut f = Forwards {
        device: place.ip,
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

/// Runs `--devices N` devices on a switch behind the rootless forwarder until Ctrl-C.
pub fn rootless(args: &Args, first: Ipv4Cidr, gw_ip: Ipv4Address) -> Result<(), Error> {
    if args.tap.is_some() {
        return Err("--devices N runs rootless only (no --tap yet)".into());
    }
    if args.serial.is_some() || args.chat {
        return Err("--serial and --chat serve one device: not with --devices N (yet)".into());
    }
    // Each device keeps its own firmware slots: under its store directory (--root/NAME), else in
    // one temporary directory of this process, removed at exit.
    let update = run::update_config(args)?;
    let (fw_base, temporary) = run::firmware_dir(args);
    let _fw_guard = run::TempFirmware((update.is_some() && temporary).then(|| fw_base.clone()));
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
    if let Some(p) = &args.pcap {
        link.capture(p)
            .map_err(|e| format!("cannot write the capture {}: {e}", p.display()))?;
    }
    let epoch = std::time::Instant::now();
    let clock = || Instant::from_micros(epoch.elapsed().as_micros() as i64);
    let config = run::server_config(args, false);
    let sizes = Sizes {
        socket_buffer: args.socket_buffer as usize,
        plain_clients: run::plain_clients(args),
    };
    let mut fleet = Fleet::new(link.clone());
    for (i, (place, key)) in places.iter().zip(keys).enumerate() {
        let root = args.root.as_ref().map(|r| r.join(place.name));
        let store = run::store(args, root.as_deref())?;
        let ip = IpCidr::Ipv4(Ipv4Cidr::new(place.ip, first.prefix_len()));
        let mut node = Node::named(
            place.name,
            link.port(i),
            ip,
            Some(gw_ip),
            &config,
            sizes,
            store,
            clock(),
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
        fleet.members.push(Member::new(node));
    }
    let all: Vec<Forwards> = places.iter().map(|p| forwards(args, p, &config)).collect();
    let gw_cidr = IpCidr::Ipv4(Ipv4Cidr::new(gw_ip, first.prefix_len()));
    let mut gw = Gateway::with_devices(link.port(n), gw_cidr, &all, args.socket_buffer as usize, clock())?;
    gw.corrupt_stream(args.stream_corrupt, args.seed);
    // Each device advertises the ports peers reach it on (its forwarded framed ports).
    let per_device = all[0].udp.len();
    let udp = gw.udp_addrs();
    let tcp = gw.tcp_addrs();
    for (i, m) in fleet.members.iter_mut().enumerate() {
        if let Some(a) = udp.get(i * per_device) {
            m.node.server.device.advertise_udp_port(a.port());
        }
        if let Some(a) = tcp.get(i * all[0].tcp.len()) {
            m.node.server.device.advertise_tcp_port(a.port());
        }
    }
    let stop = run::stop_waking(&gw)?;
    banner(args, &places, &tcp, &udp, all[0].tcp.len(), per_device, gw_ip, started)?;

    let mut last_flush = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let mut rounds = 0;
        loop {
            let now = clock();
            let moved = gw.pump(now) | fleet.poll(now);
            rounds += 1;
            if !moved || rounds >= 256 {
                break;
            }
        }
        if args.pcap.is_some() && last_flush.elapsed() > StdDuration::from_millis(200) {
            let _ = link.flush_capture();
            last_flush = std::time::Instant::now();
        }
        let now = clock();
        let delay = run::soonest([gw.delay(now), fleet.delay(now)], IDLE_SLEEP);
        let delay = if rounds >= 256 { StdDuration::ZERO } else { delay };
        gw.wait(Some(delay))?;
    }
    let _ = link.flush_capture();
    let s = link.stats();
    eprintln!(
        "sim: stopped; {n} devices polled {} times; the switch delivered {} frames (lost {}, corrupted {}, oversized {})",
        fleet.polls, s.delivered, s.lost, s.corrupted, s.oversized
    );
    Ok(())
}

/// What runs where, and what to try.
#[allow(clippy::too_many_arguments)]
fn banner(
    args: &Args,
    places: &[Place],
    tcp: &[SocketAddr],
    udp: &[SocketAddr],
    tcp_per: usize,
    udp_per: usize,
    gw_ip: Ipv4Address,
    started: std::time::Instant,
) -> Result<(), Error> {
    let n = places.len();
    let (first, last) = (&places[0], &places[n - 1]);
    println!(
        "tether sim: {n} devices on a virtual switch (rootless), gateway {gw_ip}, started in {} ms",
        started.elapsed().as_millis()
    );
    for (i, p) in places.iter().enumerate() {
        // Every device on a line for a few; the first and the last for many.
        if n > 8 && i > 1 && i + 2 < n {
            if i == 2 {
                println!("  …");
            }
            continue;
        }
        let (t, u) = (tcp.get(i * tcp_per), udp.get(i * udp_per));
        let show = |a: Option<&SocketAddr>| a.map_or("?".to_string(), SocketAddr::to_string);
        println!("  {}  {}  framed TCP {}  UDP {}", p.name, p.ip, show(t), show(u));
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
    let key = match (&args.key_file, &args.key_dir) {
        (Some(p), _) => format!(" --key-file {}", p.display()),
        (None, Some(d)) => format!(" --key-file {}/{}.key", d.display(), first.name),
        (None, None) => String::new(),
    };
    let port = |a: Option<&SocketAddr>| a.map_or(0, SocketAddr::port);
    let (t0, u0) = (tcp.first(), udp.first());
    let tcp_suffix = if port(t0) == 7070 {
        String::new()
    } else {
        format!(":{}", port(t0))
    };
    let udp_suffix = if port(u0) == 7071 {
        String::new()
    } else {
        format!(":{}", port(u0))
    };
    println!("try: host-cli --to {}{tcp_suffix}{key} info", first.host);
    println!("     host-cli discover {}-{}{udp_suffix}", first.host, last.host);
    std::io::stdout().flush()?;
    Ok(())
}
