//! Running the device: the rootless virtual link with its forwarder, or a TAP interface.

use std::io::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration as StdDuration;

use smoltcp::time::Instant;
use smoltcp::wire::{IpCidr, Ipv4Address, Ipv4Cidr};
use tether_core::secure::Lock;
use tether_core::serial::Serial;
use tether_core::server::ServerConfig;
use tether_core::service::update::UpdateConfig;
use tether_core::session::Limits;
use tether_core::update::BoardId;
use tether_sim::device::{read_rtc, SimServer, MAX_FRAME};
use tether_sim::firmware::Firmware;
use tether_sim::gateway::{Forward, Gateway};
use tether_sim::inproc::{ram_store, MAX_PLAIN_CLIENTS};
use tether_sim::link::{Faults, Link};
use tether_sim::node::Node;
use tether_sim::selftest::{self, SelftestOptions};
use tether_sim::serial::{ByteFaults, SerialLine};
use tether_sim::store::SimStore;

use crate::cli::{Args, Command};

pub(crate) type Error = Box<dyn std::error::Error>;

const DEFAULT_IP: &str = "169.254.70.2/24";
const DEFAULT_GATEWAY: &str = "169.254.70.1";

/// The longest the loop sleeps, so Ctrl-C and waiting commands are noticed promptly.
pub(crate) const MAX_SLEEP: StdDuration = StdDuration::from_millis(20);

pub fn main(args: Args) -> Result<(), Error> {
    if let Some(Command::Selftest { size, socket_buffer }) = args.command {
        return selftest(size, socket_buffer, args.root.clone());
    }
    let ip = Ipv4Cidr::from_str(args.ip.as_deref().unwrap_or(crate::many::default_ip(&args, DEFAULT_IP)))
        .map_err(|_| "--ip wants an IPv4 address with a prefix, like 169.254.70.2/24")?;
    let gateway = Ipv4Address::from_str(args.gateway.as_deref().unwrap_or(DEFAULT_GATEWAY))
        .map_err(|_| "--gateway wants an IPv4 address")?;
    if args.socket_buffer < 4096 || args.socket_buffer > (64 << 20) {
        return Err("--socket-buffer must be between 4K and 64M".into());
    }
    if args.plain_clients == 0 || args.plain_clients > MAX_PLAIN_CLIENTS {
        return Err(format!("--plain-clients must be between 1 and {MAX_PLAIN_CLIENTS}").into());
    }
    if args.mtu < 576 || args.mtu > 65_000 {
        return Err("--mtu must be between 576 and 65000".into());
    }
    if args.capacity == 0 {
        return Err("--capacity must be more than 0: a device without storage takes no file (try 64M)".into());
    }
    if let Some(root) = args.root.as_ref().filter(|r| !r.exists()) {
        // A typo would otherwise become a new, empty store.
        return Err(format!(
            "--root {} does not exist: create it first (mkdir -p {}), or name an existing directory",
            root.display(),
            root.display()
        )
        .into());
    }
    if args.devices > 1 {
        return crate::many::run(&args, ip, gateway);
    }
    if args.key_dir.is_some() {
        return Err("--key-dir is for --devices N (a key file per device); one device takes --key-file".into());
    }
    match args.tap.clone() {
        Some(name) => tap(&args, &name, ip, gateway),
        None => rootless(&args, ip, gateway),
    }
}

fn selftest(size: u64, socket_buffer: u64, root: Option<std::path::PathBuf>) -> Result<(), Error> {
    let opts = SelftestOptions {
        transfer_size: size as usize,
        socket_buffer: socket_buffer as usize,
        root,
        ..SelftestOptions::default()
    };
    let report = selftest::run(&opts);
    println!("{report}");
    std::io::stdout().flush()?;
    if report.ok() {
        Ok(())
    } else {
        Err(format!("selftest: {} of the steps failed", report.failures().count()).into())
    }
}

/// The device's store: RAM, or the directory `root` (`--root`, or a device's own under it).
pub(crate) fn store(args: &Args, root: Option<&std::path::Path>) -> Result<SimStore, Error> {
    match root {
        Some(root) => {
            SimStore::dir(root, args.capacity).map_err(|e| format!("cannot use --root {}: {e}", root.display()).into())
        }
        None => Ok(ram_store(args.capacity as usize)),
    }
}

/// Set by Ctrl-C, SIGTERM (`kill`, as the README's `kill %1`) and SIGHUP: the loop then stops and
/// flushes the capture.
pub(crate) fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)) {
        log::warn!("Ctrl-C handler not installed: {e}");
    }
    stop
}

/// Operator input for `--chat`, read on its own thread.
fn chat_input(enabled: bool) -> Option<mpsc::Receiver<String>> {
    if !enabled {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Some(rx)
}

/// Per-loop chores shared by both modes: the operator's chat, the inbox, and reboots.
fn chores(server: &mut SimServer, chat: &Option<mpsc::Receiver<String>>) {
    let ctx = &mut server.device.ctx;
    if let Some(rx) = chat {
        while let Ok(line) = rx.try_recv() {
            // Published at once: the answer to the message the operator just saw.
            ctx.events
                .push(("chat".into(), format!("operator: {line}").into_bytes()));
        }
        for (from, text) in ctx.inbox.drain(..) {
            println!("[{from}] {text}");
        }
        let _ = std::io::stdout().flush();
    } else {
        for (from, text) in ctx.inbox.drain(..) {
            log::info!("message from {from}: {text}");
        }
    }
}

/// Gives the device the key of `--key-file`, before any session opens: from then on every session
/// must prove it. The ephemeral keys of handshakes come from a generator seeded by the OS.
fn boot_key<D: smoltcp::phy::Device>(node: &mut Node<D>, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(path) = &args.key_file {
        give_key(node, read_key(path)?);
    }
    Ok(())
}

/// The key in the key file `path`; a warning about its permissions goes to stderr.
pub(crate) fn read_key(path: &std::path::Path) -> Result<tether_core::secure::Psk, Error> {
    let (key, warning) = tether_host::secure::read_key_file(path)?;
    if let Some(w) = warning {
        eprintln!("sim: warning: {w}");
    }
    Ok(key)
}

/// Makes the device require `key`, with its own generator of handshake ephemerals.
pub(crate) fn give_key<D: smoltcp::phy::Device>(node: &mut Node<D>, key: tether_core::secure::Psk) {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(tether_host::secure::generate_key().as_bytes());
    node.server.device.require_key(Lock::new(key, seed));
}

/// Where the firmware slots live: `--root`'s `.tether-fw/`, or a directory of this process
/// under the system's temporary directory (removed at exit).
pub(crate) fn firmware_dir(args: &Args) -> (std::path::PathBuf, bool) {
    match &args.root {
        Some(root) => (root.join(".tether-fw"), false),
        None => (
            std::env::temp_dir().join(format!("tether-sim-fw-{}", std::process::id())),
            true,
        ),
    }
}

/// Removes a temporary firmware directory when the simulator ends.
pub(crate) struct TempFirmware(pub(crate) Option<std::path::PathBuf>);

impl Drop for TempFirmware {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The update service's settings from `--fw-key`, `--fw-board` and `--fw-allow-downgrade`; `None`
/// without `--fw-key`.
pub(crate) fn update_config(args: &Args) -> Result<Option<UpdateConfig>, Error> {
    let Some(path) = &args.fw_key else {
        return Ok(None);
    };
    let key = tether_host::firmware::read_public_key(path)?;
    let board = BoardId::new(&args.fw_board).ok_or("--fw-board wants 1 to 16 of A-Z a-z 0-9 . _ -")?;
    Ok(Some(UpdateConfig {
        key,
        board,
        allow_downgrade: args.fw_allow_downgrade,
    }))
}

/// Gives the device firmware slots in `dir` and the update service, and boots: what it runs.
pub(crate) fn boot_firmware_in<D: smoltcp::phy::Device>(
    node: &mut Node<D>,
    config: UpdateConfig,
    dir: &std::path::Path,
) -> Result<String, Error> {
    let (mut fw, running) = Firmware::start(dir, config)?;
    let runs = fw.describe(running);
    node.server.device.ctx.firmware = Some(fw);
    node.server.device.enable_update(config, running);
    Ok(runs)
}

/// Gives the device its firmware slots and the update service (`--fw-key`), and boots: the
/// banner line, and the guard of a temporary slot directory.
fn boot_firmware<D: smoltcp::phy::Device>(
    node: &mut Node<D>,
    args: &Args,
) -> Result<(Option<String>, TempFirmware), Error> {
    let Some(config) = update_config(args)? else {
        return Ok((None, TempFirmware(None)));
    };
    let (dir, temporary) = firmware_dir(args);
    let guard = TempFirmware(temporary.then(|| dir.clone()));
    let runs = boot_firmware_in(node, config, &dir)?;
    let line = format!(
        "  firmware     {runs} (board {}, slots in {}); runs no image: `host-cli reset` boots the image the slots pick",
        args.fw_board,
        dir.display()
    );
    Ok((Some(line), guard))
}

/// What the banner says about who may change the device.
pub(crate) fn security_line(args: &Args) -> String {
    match &args.key_file {
        Some(p) if args.no_plain => format!("key required ({}): sessions are sealed, UDP only reads", p.display()),
        Some(p) => format!(
            "key required ({}): sessions are sealed, UDP only reads; plain services off (they have no authentication)",
            p.display()
        ),
        None => "OPEN: no key, anyone who can reach this device can change it (--key-file FILE)".into(),
    }
}

/// The `--key-file` the banner's example commands need (the same file as the device's).
fn try_key(args: &Args) -> String {
    match &args.key_file {
        Some(p) => format!(" --key-file {}", p.display()),
        None => String::new(),
    }
}

/// Gives the device its real-time clock unless `--no-rtc` asks for a board without one.
pub(crate) fn boot_clock<D: smoltcp::phy::Device>(node: &mut Node<D>, args: &Args) {
    node.server.device.ctx.rtc = !args.no_rtc;
    if !args.no_rtc {
        read_rtc(&mut node.server, 0);
    }
}

/// The serial line and the device's driver on it (`--serial`).
struct SerialPort {
    line: SerialLine,
    driver: Box<Serial<MAX_FRAME>>,
}

/// The longest the loop sleeps while a serial line is served: the line is polled, not waited on.
const SERIAL_SLEEP: StdDuration = StdDuration::from_millis(1);

impl SerialPort {
    fn open(args: &Args, config: &ServerConfig) -> Result<Option<SerialPort>, Error> {
        let Some(path) = &args.serial else { return Ok(None) };
        let faults = ByteFaults {
            loss: args.serial_loss,
            corrupt: args.serial_corrupt,
            seed: args.seed,
        };
        let line = match path {
            None => SerialLine::pty(args.baud, faults).map_err(|e| format!("cannot create a pseudo-terminal: {e}"))?,
            Some(p) => {
                SerialLine::open(p, args.baud, faults).map_err(|e| format!("cannot open {}: {e}", p.display()))?
            }
        };
        Ok(Some(SerialPort {
            line,
            driver: Box::new(Serial::new(config.limits)),
        }))
    }

    fn describe(&self, args: &Args) -> String {
        let pace = args.baud.map_or("unpaced".to_string(), |b| format!("{b} baud"));
        let mut s = format!("  serial       {}  ({pace})", self.line.path().display());
        if args.serial_loss > 0.0 || args.serial_corrupt > 0.0 {
            s.push_str(&format!(
                "\n  line faults  byte loss {} corrupt {}",
                args.serial_loss, args.serial_corrupt
            ));
        }
        s
    }

    fn poll(&mut self, now_ms: u64, server: &mut SimServer) -> Result<bool, Error> {
        let events = server.device.ctx.serial_events.get_or_insert_with(Vec::new);
        for (topic, data, seq) in std::mem::take(events) {
            self.driver.push_event(now_ms, &topic, seq, &data, &mut server.device);
        }
        self.driver
            .poll(now_ms, &mut self.line, &mut server.device)
            .map_err(|e| format!("serial line {}: {e}", self.line.path().display()).into())
    }

    fn report(&self) {
        let s = self.line.stats();
        let opened = self.driver.session().is_open();
        eprintln!(
            "sim: serial line carried {} bytes (lost {}, corrupted {}); session open: {opened}",
            s.bytes, s.lost, s.corrupted
        );
    }
}

pub(crate) fn server_config(args: &Args, device_ports: bool) -> ServerConfig {
    let mut c = ServerConfig {
        limits: Limits {
            idle_ms: args.idle_timeout * 1000,
            frame_ms: args.frame_timeout * 1000,
            ..Limits::DEFAULT
        },
        ..ServerConfig::default()
    };
    if device_ports {
        c.tcp_port = args.tcp_port;
        c.udp_port = args.udp_port;
        c.plain_tcp_port = args.plain_tcp_port;
        c.plain_udp_port = args.plain_udp_port;
        c.plain_command_port = args.plain_command_port;
        c.plain_command_json_port = args.plain_command_json_port;
        c.plain_chat_port = args.plain_chat_port;
    }
    c
}

pub(crate) fn clock_line(args: &Args) -> &'static str {
    if args.no_rtc {
        "no RTC: starts at 1970-01-01, unset until `host-cli time set`"
    } else {
        "RTC: this PC's UTC clock"
    }
}

/// Whether the plain-socket services run: not with `--no-plain`, and not on a device with a key,
/// since they have no authentication (the remote-command ports run any registered command,
/// `reboot` too, and the chat port injects messages): they would bypass the key.
pub(crate) fn plain_on(args: &Args) -> bool {
    !args.no_plain && args.key_file.is_none() && args.key_dir.is_none()
}

/// Upper-echo clients served at once; 0 without the plain services.
pub(crate) fn plain_clients(args: &Args) -> usize {
    if plain_on(args) {
        args.plain_clients
    } else {
        0
    }
}

pub(crate) fn storage_line(args: &Args) -> String {
    match &args.root {
        Some(d) => format!("directory {} ({} MiB)", d.display(), args.capacity >> 20),
        None => format!("RAM ({} MiB, lost on reboot)", args.capacity >> 20),
    }
}

fn rootless(args: &Args, ip: Ipv4Cidr, gw_ip: Ipv4Address) -> Result<(), Error> {
    let faults = Faults {
        loss: args.loss,
        corrupt: args.corrupt,
        mtu: args.mtu,
        seed: args.seed,
    };
    let link = Link::new(faults);
    if let Some(p) = &args.pcap {
        link.capture(p)
            .map_err(|e| format!("cannot write the capture {}: {e}", p.display()))?;
    }
    let config = server_config(args, false);
    let buf = args.socket_buffer as usize;
    let mut node = Node::new(
        link.port(0),
        IpCidr::Ipv4(ip),
        Some(gw_ip),
        &config,
        buf,
        plain_clients(args),
        store(args, args.root.as_deref())?,
        clock(),
    );
    boot_key(&mut node, args)?;
    boot_clock(&mut node, args);
    let (firmware, _firmware_dir) = boot_firmware(&mut node, args)?;
    let mut serial = SerialPort::open(args, &config)?;
    let host = |port| SocketAddr::new(args.listen.unwrap_or(crate::many::LISTEN), port);
    let mut tcp = vec![Forward {
        host: host(args.tcp_port),
        device_port: config.tcp_port,
    }];
    let mut udp = vec![Forward {
        host: host(args.udp_port),
        device_port: config.udp_port,
    }];
    if plain_on(args) {
        for (pc, device_port) in [
            (args.plain_tcp_port, config.plain_tcp_port),
            (args.plain_command_port, config.plain_command_port),
            (args.plain_command_json_port, config.plain_command_json_port),
        ] {
            tcp.push(Forward {
                host: host(pc),
                device_port,
            });
        }
        for (pc, device_port) in [
            (args.plain_udp_port, config.plain_udp_port),
            (args.plain_chat_port, config.plain_chat_port),
        ] {
            udp.push(Forward {
                host: host(pc),
                device_port,
            });
        }
    }
    let gw_cidr = IpCidr::Ipv4(Ipv4Cidr::new(gw_ip, ip.prefix_len()));
    let mut gw = Gateway::new(link.port(1), gw_cidr, ip.address(), &tcp, &udp, buf, clock())?;
    gw.corrupt_stream(args.stream_corrupt, args.seed);

    let stop = stop_waking(&gw)?;
    let (t, u) = (gw.tcp_addrs(), gw.udp_addrs());
    println!(
        "tether sim: device {} on a virtual link (rootless), gateway {gw_ip}",
        ip.address()
    );
    println!("  framed TCP   {}  -> device:{}", t[0], config.tcp_port);
    println!("  framed UDP   {}  -> device:{}", u[0], config.udp_port);
    if plain_on(args) {
        println!("  upper-echo   {}  (plain TCP)", t[1]);
        println!("  command      {}  (plain TCP: 4-byte length, output)", t[2]);
        println!(
            "  command-json {}  (plain TCP: 4-byte length, JSON header, output)",
            t[3]
        );
        println!("  time         {}  (plain UDP)", u[1]);
        println!("  chat         {}  (plain UDP)", u[2]);
    }
    println!("  storage      {}", storage_line(args));
    println!("  clock        {}", clock_line(args));
    println!("  security     {}", security_line(args));
    if let Some(line) = &firmware {
        println!("{line}");
    }
    if args.loss > 0.0 || args.corrupt > 0.0 || args.mtu != 65_000 {
        println!(
            "  link faults  loss {} corrupt {} mtu {}",
            args.loss, args.corrupt, args.mtu
        );
    }
    if let Some(p) = &args.pcap {
        println!("  capture      {}", p.display());
    }
    // Complete commands: UDP follows --to, on the port the device advertises.
    node.server.device.advertise_udp_port(u[0].port());
    node.server.device.advertise_tcp_port(t[0].port());
    if let Some(sp) = &serial {
        println!("{}", sp.describe(args));
    }
    let key = try_key(args);
    println!("try: host-cli --to {}{key} info", t[0]);
    println!("     host-cli --to {}{key} time set", t[0]);
    if let Some(sp) = &serial {
        println!("     host-cli --to serial:{}{key} info", sp.line.path().display());
    }
    std::io::stdout().flush()?;

    let chat = chat_input(args.chat);
    if args.chat {
        node.server.device.ctx.replies = tether_sim::device::Replies::Silent;
        println!("chat: messages appear here; type a line to answer (it goes out as a `chat` event)");
        std::io::stdout().flush()?;
    }
    let mut last_flush = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let mut rounds = 0;
        loop {
            let now = clock();
            let mut moved = gw.pump(now) | node.poll(now);
            if let Some(sp) = &mut serial {
                moved |= sp.poll(now.total_millis() as u64, &mut node.server)?;
            }
            rounds += 1;
            if !moved || rounds >= 256 {
                break;
            }
        }
        chores(&mut node.server, &chat);
        if last_flush.elapsed() > StdDuration::from_millis(200) {
            let _ = link.flush_capture();
            last_flush = std::time::Instant::now();
        }
        let now = clock();
        let delay = soonest([gw.delay(now), node.delay(now)], MAX_SLEEP);
        let delay = if serial.is_some() {
            delay.min(SERIAL_SLEEP)
        } else {
            delay
        };
        let delay = if rounds >= 256 { StdDuration::ZERO } else { delay };
        gw.wait(Some(delay))?;
    }
    let _ = link.flush_capture();
    let s = link.stats();
    eprintln!(
        "sim: stopped; link delivered {} frames (lost {}, corrupted {}, oversized {}); {} bits flipped in relayed streams",
        s.delivered,
        s.lost,
        s.corrupted,
        s.oversized,
        gw.stream_flips()
    );
    if let Some(sp) = &serial {
        sp.report();
    }
    Ok(())
}

/// The DHCP client's settings from `--dhcp-timeout`, `--dhcp-max-lease` and (as the fallback)
/// `--ip` with `--gateway`.
pub(crate) fn dhcp_config(args: &Args, ip: Ipv4Cidr, gw_ip: Ipv4Address) -> tether_core::dhcp::DhcpConfig {
    tether_core::dhcp::DhcpConfig {
        // The default gateway (169.254.70.1) belongs to the rootless link, not to a TAP segment:
        // a fallback has a route only when --gateway names one.
        fallback: args
            .ip
            .is_some()
            .then_some((ip, args.gateway.is_some().then_some(gw_ip))),
        fallback_after_ms: args.dhcp_timeout * 1000,
        max_lease_ms: args.dhcp_max_lease.map(|s| s * 1000),
    }
}

/// What the console says about an address change (tests and people watch for `dhcp: `).
pub(crate) fn dhcp_line(change: &tether_core::dhcp::Change) -> String {
    use tether_core::dhcp::Source;
    let now = match (change.address, change.source) {
        (Some(a), Source::Lease) => format!("leased {a}"),
        (Some(a), _) => format!("no lease: fallback address {a}"),
        (None, _) => "lease lost: no address".to_string(),
    };
    let route = change.router.map(|r| format!(" gateway {r}")).unwrap_or_default();
    let moved = match change.previous {
        Some(p) if change.moved() => format!(
            " (was {p}; {} session{} closed)",
            change.sessions_closed,
            if change.sessions_closed == 1 { "" } else { "s" }
        ),
        _ => String::new(),
    };
    format!("dhcp: {now}{route}{moved}")
}

/// The devices' clock: the time since the simulator started.
pub(crate) fn clock() -> Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = EPOCH.get_or_init(std::time::Instant::now);
    Instant::from_micros(epoch.elapsed().as_micros() as i64)
}

/// The shortest of `delays` (smoltcp's, none for "no deadline"), at most `cap`.
pub(crate) fn soonest(delays: [Option<smoltcp::time::Duration>; 2], cap: StdDuration) -> StdDuration {
    delays
        .into_iter()
        .flatten()
        .map(|d| StdDuration::from_micros(d.total_micros()))
        .fold(cap, StdDuration::min)
}

/// The stop flag Ctrl-C sets, which also wakes `gw` from its wait.
pub(crate) fn stop_waking(gw: &Gateway) -> Result<Arc<AtomicBool>, Error> {
    let stop = stop_flag();
    let waker = gw.waker()?;
    let flag = stop.clone();
    std::thread::spawn(move || loop {
        if flag.load(Ordering::SeqCst) {
            let _ = waker.wake();
            break;
        }
        std::thread::sleep(StdDuration::from_millis(50));
    });
    Ok(stop)
}

/// The TAP interface `name`, as an Ethernet NIC.
pub(crate) fn open_tap(name: &str) -> Result<smoltcp::phy::TunTapInterface, Error> {
    smoltcp::phy::TunTapInterface::new(name, smoltcp::phy::Medium::Ethernet)
        .map_err(|e| format!("cannot open TAP interface {name}: {e} (it must exist and you need CAP_NET_ADMIN)").into())
}

fn tap(args: &Args, name: &str, ip: Ipv4Cidr, gw_ip: Ipv4Address) -> Result<(), Error> {
    use smoltcp::phy::{wait, FaultInjector, PcapMode, PcapWriter};
    use std::os::fd::AsRawFd;

    let tap = open_tap(name)?;
    let fd = tap.as_raw_fd();
    let mut faulty = FaultInjector::new(tap, args.seed as u32);
    // smoltcp's injector takes whole percents: round up so that a small probability stays on.
    faulty.set_drop_chance((args.loss * 100.0).ceil() as u8);
    faulty.set_corrupt_chance((args.corrupt * 100.0).ceil() as u8);
    faulty.set_max_packet_size(args.mtu + 14);
    let sink: Box<dyn std::io::Write> = match &args.pcap {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("cannot write the capture {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::sink()),
    };
    let phy = PcapWriter::new(faulty, sink, PcapMode::Both);
    let config = server_config(args, true);
    let mut node = Node::new(
        phy,
        IpCidr::Ipv4(ip),
        Some(gw_ip),
        &config,
        args.socket_buffer as usize,
        plain_clients(args),
        store(args, args.root.as_deref())?,
        clock(),
    );
    boot_key(&mut node, args)?;
    boot_clock(&mut node, args);
    let (firmware, _firmware_dir) = boot_firmware(&mut node, args)?;
    if !args.no_mdns {
        node.use_mdns(&args.fw_board);
    }
    if args.dhcp {
        node.use_dhcp(dhcp_config(args, ip, gw_ip), clock());
        let fallback = match (&args.ip, &args.gateway) {
            (Some(_), Some(_)) => format!(
                "fallback {ip} gateway {gw_ip} after {} s without a lease",
                args.dhcp_timeout
            ),
            (Some(_), None) => format!("fallback {ip} after {} s without a lease", args.dhcp_timeout),
            (None, _) => "no fallback: no address until a lease comes".into(),
        };
        println!("tether sim: device on TAP {name}, address from DHCP ({fallback})");
    } else {
        println!("tether sim: device {} on TAP {name}, gateway {gw_ip}", ip.address());
    }
    if plain_on(args) {
        println!(
            "  framed TCP {} / UDP {}   upper-echo TCP {}   command TCP {} / {} (JSON)   time UDP {}   chat UDP {}",
            config.tcp_port,
            config.udp_port,
            config.plain_tcp_port,
            config.plain_command_port,
            config.plain_command_json_port,
            config.plain_udp_port,
            config.plain_chat_port
        );
    } else {
        println!("  framed TCP {} / UDP {}", config.tcp_port, config.udp_port);
    }
    println!("  storage      {}", storage_line(args));
    println!("  clock        {}", clock_line(args));
    println!("  security     {}", security_line(args));
    if !args.no_mdns {
        println!(
            "  mdns         announces _tether._tcp and _tether._udp (board {})",
            args.fw_board
        );
    }
    if let Some(line) = &firmware {
        println!("{line}");
    }
    let mut serial = SerialPort::open(args, &config)?;
    if let Some(sp) = &serial {
        println!("{}", sp.describe(args));
    }
    let key = try_key(args);
    let at = if args.dhcp {
        "ADDRESS".to_string()
    } else {
        ip.address().to_string()
    };
    println!("try: host-cli --to {at}:{}{key} info", config.tcp_port);
    println!("     host-cli --to {at}:{}{key} time set", config.tcp_port);
    std::io::stdout().flush()?;
    let stop = stop_flag();
    let chat = chat_input(args.chat);
    if args.chat {
        node.server.device.ctx.replies = tether_sim::device::Replies::Silent;
        println!("chat: messages appear here; type a line to answer (it goes out as a `chat` event)");
        std::io::stdout().flush()?;
    }
    while !stop.load(Ordering::SeqCst) {
        let now = clock();
        node.poll(now);
        let mut cap = smoltcp::time::Duration::from_millis(20);
        if let Some(sp) = &mut serial {
            for _ in 0..256 {
                if !sp.poll(now.total_millis() as u64, &mut node.server)? {
                    break;
                }
            }
            cap = smoltcp::time::Duration::from_micros(SERIAL_SLEEP.as_micros() as u64);
        }
        chores(&mut node.server, &chat);
        for change in node.dhcp_changes.drain(..) {
            println!("{}", dhcp_line(&change));
            std::io::stdout().flush()?;
        }
        let delay = node.delay(clock()).map(|d| d.min(cap)).unwrap_or(cap);
        match wait(fd, Some(delay)) {
            // Ctrl-C interrupts the wait; the loop condition sees the stop flag.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => r?,
        }
    }
    eprintln!("sim: stopped");
    if let Some(sp) = &serial {
        sp.report();
    }
    Ok(())
}
