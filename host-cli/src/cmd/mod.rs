//! The commands.

mod bench;
mod datagram;
pub(crate) mod discover;
pub mod firmware;
mod transfer;

use std::cell::{Cell, OnceCell};
use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_core::secure::Psk;
use tether_core::wire::ErrorCode;
use tether_host::client::DeviceInfo;
use tether_host::net::{self, AnyClient, Endpoint};
use tether_host::units::{bytes, plural};
use tether_host::ClientError;

use crate::cli::{Args, Command, TimeAction};
use crate::config;
use crate::report::{exec_exit_code, FailKind, Failure, Reporter};

pub type Result<T> = std::result::Result<T, Failure>;

/// The default timeout for every wait on the device.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The one device a run talks to, with where each setting came from resolved: flags and
/// environment first, then the named device of the config file, then the defaults.
#[derive(Debug, Clone)]
pub struct Target {
    /// The TCP address (UDP goes to the same host) or the serial line.
    pub addr: Endpoint,
    /// The UDP port when given (flag, environment or config); else the device's advertised one.
    pub udp_port: Option<u16>,
    /// Timeout for every wait.
    pub timeout: Duration,
    /// How to name this device again on a command line (`--to HOST:PORT` or `-d NAME`).
    pub select: String,
    /// The device's key file (flag, environment, or the named device's `key_file`).
    pub key_file: Option<std::path::PathBuf>,
    /// What this run learned about the device, so that each thing is asked (and warned about)
    /// once however many sessions the command opens.
    pub learned: Learned,
}

/// What a run learned about its device: the key (read once), and the device's hello.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    /// The key of `key_file`, once read (`None` inside: no key file).
    key: OnceCell<Option<Psk>>,
    /// The device's hello, once a session or a datagram asked for it.
    device: OnceCell<DeviceInfo>,
    /// Whether a secure session was established (the device proved the key).
    sealed: Cell<bool>,
}

/// How the device names itself to host-cli in its log.
pub const CLIENT: &str = concat!("host-cli ", env!("CARGO_PKG_VERSION"));

impl Target {
    pub fn resolve(args: &Args) -> Result<Target> {
        // Flags beat the environment: `-d NAME` on the command line beats `TETHER_TO`.
        let to = if args.to_from_env && args.device_from_flag {
            None
        } else {
            args.to.as_ref()
        };
        let cfg_path = config::path();
        let needs_config = args.device.is_some() || to.is_none();
        let cfg = if needs_config {
            config::load(cfg_path.as_deref()).map_err(|m| {
                Failure::usage(m).hint("fix the file (see docs/CLI.md, \"Named devices\"), or set TETHER_CONFIG")
            })?
        } else {
            config::Config::default()
        };
        let name = args
            .device
            .clone()
            .or_else(|| if to.is_none() { cfg.default.clone() } else { None });
        let named = match &name {
            Some(n) => Some(cfg.devices.get(n).cloned().ok_or_else(|| {
                let file = cfg_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                let known: Vec<&str> = cfg.devices.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "it names no devices".to_string()
                } else {
                    format!("it names {}", known.join(", "))
                };
                Failure::usage(format!("no device named `{n}` in the config file {file} ({known})")).hint(
                    "`host-cli devices` lists the named devices; add one as [devices.NAME] with to = \"HOST:PORT\"",
                )
            })?),
            None => None,
        };
        let addr = match (to, &named) {
            (Some(a), _) => a
                .single()
                .ok_or_else(|| Failure::usage("this command talks to one device: give --to one address"))?
                .clone(),
            (None, Some(d)) => Endpoint::parse(&d.to).map_err(|m| {
                Failure::usage(format!(
                    "device `{}` in the config file: to = {m}",
                    name.clone().unwrap_or_default()
                ))
                .hint("fix the file (see docs/CLI.md, \"Named devices\"), or set TETHER_CONFIG")
            })?,
            (None, None) => Endpoint::parse("127.0.0.1:7070").expect("literal"),
        };
        let cfg_timeout = match named.as_ref().and_then(|d| d.timeout.as_deref()) {
            Some(t) => Some(crate::cli::parse_duration(t).map_err(|m| {
                Failure::usage(format!(
                    "device `{}` in the config file: timeout {m}",
                    name.clone().unwrap_or_default()
                ))
                .hint(format!(
                    "write it like timeout = \"10s\" (ms, s, m or h; 1ms to 24h) in {}",
                    cfg_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                ))
            })?),
            None => None,
        };
        let select = match (to, &name) {
            (None, Some(n)) if args.device.is_some() => format!("-d {n}"),
            _ => format!("--to {}", shell_quote(&addr.to_string())),
        };
        let udp_port = args.udp_port.or(if to.is_none() {
            named.as_ref().and_then(|d| d.udp_port)
        } else {
            None
        });
        // A serial line has no UDP port to repeat.
        let select = match (args.udp_port, addr.is_serial()) {
            (Some(p), false) => format!("{select} --udp-port {p}"),
            _ => select,
        };
        // A named device's key belongs to its address: with --to, only --key-file counts.
        let key_file = args.key_file.clone().or_else(|| {
            let k = named.as_ref().filter(|_| to.is_none())?.key_file.as_deref()?;
            Some(config::resolve_path(k, cfg_path.as_deref()))
        });
        // A key given on the command line is repeated in the commands host-cli suggests (from the
        // environment or the config it is there again).
        let select = match &args.key_file {
            Some(k) if std::env::var_os("TETHER_KEY_FILE").is_none_or(|e| std::path::Path::new(&e) != k) => {
                format!("{select} --key-file {}", shell_quote(&k.display().to_string()))
            }
            _ => select,
        };
        Ok(Target {
            addr,
            udp_port,
            timeout: args.timeout.or(cfg_timeout).unwrap_or(DEFAULT_TIMEOUT),
            select,
            key_file,
            learned: Learned::default(),
        })
    }

    /// A `host-cli` command line for this device, e.g. to resume a transfer.
    pub fn command(&self, rest: &str) -> String {
        format!("host-cli {} {rest}", self.select)
    }
}

/// Quotes an argument for a shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '+' | '=' | '@'))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What to try when the device cannot be reached.
fn connection_hint(t: &Target, f: &Failure) -> String {
    let a = match &t.addr {
        Endpoint::Tcp(a) => a,
        Endpoint::Serial(s) => {
            return format!(
                "check that {} is the device's serial port, that nothing else holds it open, and that the device runs at {} baud (`sim --serial` prints its pseudo-terminal)",
                s.path, s.baud
            )
        }
    };
    if f.message.contains("UDP ") {
        // The UDP port is the device's advertised one, or --udp-port's: never the TCP port.
        let up = if a.is_local() {
            "is `sim` running? "
        } else {
            "is the device on? "
        };
        return match t.udp_port {
            Some(p) => format!(
                "{up}Else --udp-port {p} (or TETHER_UDP_PORT, or udp_port in the config) may be wrong: without it host-cli uses the UDP port the device advertises (`{}` checks the device over TCP and shows it)",
                t.command("info")
            ),
            None => format!(
                "{up}The device advertises that UDP port in its hello; if it sits behind a port forward, give the forwarded one with --udp-port (`{}` shows the advertised one)",
                t.command("info")
            ),
        };
    }
    let refused = f.message.contains("refused the connection") || f.message.contains("the port is closed");
    if refused && is_udp_port(a, t.timeout) {
        return format!(
            "{a} is the device's framed UDP port: --to takes its framed TCP port (usually 7070, e.g. --to {}:7070)",
            a.host
        );
    }
    if refused && a.is_local() {
        format!(
            "is `sim` running on port {}? Start it with `sim --tcp-port {}` (or `cargo run --release --bin sim`)",
            a.port, a.port
        )
    } else if refused {
        format!(
            "is the device on and serving port {} at {}, and not busy with all its sessions? Check --to",
            a.port, a.host
        )
    } else {
        format!("check that {a} is the device's address and that it is reachable")
    }
}

/// Whether a Tether device answers a hello on UDP at `a` (whose TCP port refused): then `--to`
/// names its UDP port by mistake.
fn is_udp_port(a: &tether_host::net::Address, timeout: Duration) -> bool {
    use tether_core::msg;
    use tether_core::wire::Kind;
    let Ok(mut udp) = net::UdpClient::new(&a.to_string(), timeout.min(Duration::from_millis(300))) else {
        return false;
    };
    udp.call(Kind::Hello, &msg::Hello { client: CLIENT }, &[], 1).is_ok()
}

impl Target {
    /// The device's key for this run: read once; a loose-permission warning is given once.
    pub fn key(&self, out: &Reporter) -> Result<Option<&Psk>> {
        if let Some(k) = self.learned.key.get() {
            return Ok(k.as_ref());
        }
        let key = match &self.key_file {
            Some(path) => {
                let (key, warning) = tether_host::secure::read_key_file(path)
                    .map_err(|e| Failure::from(e).hint("`host-cli keygen FILE` writes a key file"))?;
                if let Some(w) = warning {
                    out.warn(format_args!("{w}"));
                }
                Some(key)
            }
            None => None,
        };
        Ok(self.learned.key.get_or_init(|| key).as_ref())
    }

    /// Whether this run has a key for the device.
    pub fn has_key(&self) -> bool {
        self.key_file.is_some()
    }

    /// The device's hello, if the run has seen it.
    pub fn device_info(&self) -> Option<&DeviceInfo> {
        self.learned.device.get()
    }

    /// Whether a secure session to the device was established in this run.
    pub fn sealed(&self) -> bool {
        self.learned.sealed.get()
    }

    /// The device as messages name it: `the device NAME at ADDR` once its hello is known.
    pub fn device_name(&self) -> String {
        match self.device_info() {
            Some(i) => format!("the device {} at {}", i.device, self.addr),
            None => format!("the device at {}", self.addr),
        }
    }
}

/// What a command needs of the device's key, for [`learn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: `info` only reports how the device stands.
    Report,
    /// A read the device serves to anyone (`time` over UDP); a device without a key is still
    /// refused when this run has one (there is no talking in the clear with a key).
    Read,
    /// The key, when the device requires it: every other command.
    Key,
}

/// Records what a hello says about the device's key: an open device gets its warning (once a
/// run) and every `--json` result the `open_device` field. Then, as `need` says, a device that
/// requires its key while this run has none, or has none while this run was given one, is an
/// authentication failure (exit code 6).
pub fn learn<'t>(t: &'t Target, out: &Reporter, info: DeviceInfo, need: Need) -> Result<&'t DeviceInfo> {
    let info = t.learned.device.get_or_init(|| info);
    out.device_open(
        !info.key_required,
        format_args!(
            "{} has no key: anyone who can reach it can change it (files, commands, clock); see `host-cli keygen`",
            t.device_name()
        ),
    );
    if need == Need::Report {
        return Ok(info);
    }
    if need == Need::Key && info.key_required && !t.sealed() && !t.has_key() {
        return Err(key_required(t));
    }
    if !info.key_required && t.has_key() {
        return Err(Failure::new(
            FailKind::Auth,
            format!(
                "{} has no key, so it cannot prove who it is: refusing to talk to it in the clear",
                t.device_name()
            ),
        )
        .hint(no_key_hint(t)));
    }
    Ok(info)
}

/// The failure of a command that needs the key, on a device that requires it, without one.
pub fn key_required(t: &Target) -> Failure {
    Failure::new(
        FailKind::Auth,
        format!(
            "{} requires its key: pass --key-file FILE, set TETHER_KEY_FILE, or key_file in the config",
            t.device_name()
        ),
    )
    .hint(format!(
        "the key is the file the device was given (`sim --key-file FILE`); `{}` works without it",
        t.command("info")
    ))
}

fn no_key_hint(t: &Target) -> String {
    let file = t.key_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    format!(
        "talk to it without --key-file (and TETHER_KEY_FILE, and key_file in the config), or give it the key: `sim --key-file {}`",
        shell_quote(&file)
    )
}

/// A session to the device (TCP, or the serial line of `--to serial:PATH[@BAUD]`), ready for
/// any request: with a key, sealed after the handshake; without one, after a hello (the first
/// session of a run only) that shows the device is open, or fails with exit code 6 when it
/// requires its key.
pub fn open(t: &Target, out: &Reporter) -> Result<AnyClient> {
    let mut c = connect(t, out)?;
    if t.device_info().is_some() {
        // Heard before in this run: a damaged answer now is the link's doing.
        return Ok(c.known_to_speak());
    }
    if !t.sealed() {
        let info = c.hello(CLIENT)?;
        learn(t, out, info, Need::Key)?;
    }
    Ok(c)
}

/// A session to the device, without the hello of [`open`]: for `info`, which asks for it
/// itself and also works on a device whose key this run lacks.
pub fn connect(t: &Target, out: &Reporter) -> Result<AnyClient> {
    out.detail(format_args!("connecting to {}", t.addr));
    let key = t.key(out)?;
    match net::open(&t.addr, t.timeout, key) {
        Ok(c) => {
            if key.is_some() {
                t.learned.sealed.set(true);
                // A device that proved the key is not open.
                out.device_open(false, "");
            }
            Ok(c)
        }
        Err(e @ ClientError::Auth(_)) => Err(auth_failed(t, e)),
        Err(e) => {
            let f = Failure::from(e);
            let hint = connection_hint(t, &f);
            Err(f.or_hint(hint))
        }
    }
}

/// A failed handshake, with a hint that says which of the two likely causes it is: asks the
/// device (without the key: a hello is all it serves then) whether it has a key at all.
fn auth_failed(t: &Target, e: ClientError) -> Failure {
    let f = Failure::from(e);
    let probe = net::open(&t.addr, t.timeout, None).and_then(|mut c| c.hello(CLIENT));
    let file = t.key_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    match probe {
        Ok(i) if !i.key_required => f.hint(no_key_hint(t)),
        Ok(i) => f.hint(format!(
            "{} requires a different key: check that {file} is the key file it was given (`sim --key-file FILE`)",
            i.device
        )),
        Err(_) => f.hint(auth_hint(t)),
    }
}

/// What to try after an authentication failure.
fn auth_hint(t: &Target) -> String {
    format!(
        "the key file must be the one the device was given (`sim --key-file FILE`); `{}` works without a key and says whether the device requires one",
        t.command("info")
    )
}

/// Adds the hint every failure of its kind gets, where the command did not give a better one.
pub(crate) fn finish(t: &Target, f: Failure) -> Failure {
    match f.kind {
        FailKind::Connection => {
            let hint = connection_hint(t, &f);
            f.or_hint(hint)
        }
        FailKind::Garbled => f.or_hint(format!(
            "every frame arrived damaged: check that the device runs at {} baud (both ends must agree), and the cable",
            t.addr.serial().map_or(0, |s| s.baud)
        )),
        FailKind::Link if t.addr.is_serial() => f.or_hint(format!(
            "{} damages more than a transfer can recover: check the cable, and that the device runs at {} baud (a lower rate is often cleaner); run the same command to resume",
            t.addr,
            t.addr.serial().map_or(0, |s| s.baud)
        )),
        FailKind::Link => f.or_hint(
            "something between this PC and the device changes bytes that TCP's checksum let through (a faulty network card, cable or middlebox): check the path; run the same command to resume",
        ),
        FailKind::NotTether if t.addr.is_serial() => f.or_hint(format!(
            "something answers on {}, but not as a Tether device: check the port and the baud rate in --to",
            t.addr
        )),
        FailKind::NotTether => f.or_hint(format!(
            "{} answers, but not as a Tether device: check the port in --to (the device's framed TCP port is usually 7070)",
            t.addr
        )),
        FailKind::Auth => {
            let hint = auth_hint(t);
            f.or_hint(hint)
        }
        // The device's own refusal for want of the key (a request it serves only to key holders).
        FailKind::Device if f.code() == Some(ErrorCode::Unauthorized) => {
            let hint = auth_hint(t);
            Failure {
                kind: FailKind::Auth,
                message: format!("{} refused: it requires its key for this ({})", t.device_name(), f.message),
                ..f
            }
            .or_hint(hint)
        }
        FailKind::Protocol => f.or_hint("try again; if it persists, the device and host-cli may disagree on the protocol (compare `host-cli --version` with `host-cli info`)"),
        _ => f,
    }
}

/// Checks a device file name before it goes out, so that the error is about the name.
pub fn check_name(name: &str) -> Result<()> {
    tether_core::service::files::check_name(name).map_err(|_| {
        Failure::usage(format!(
            "`{name}` is not a valid device file name: names are 1 to 64 of A-Z a-z 0-9 . _ - and do not start with `.`"
        ))
        .hint("`host-cli ls` lists the device's files; `host-cli put LOCAL NAME` uploads under another name")
    })
}

/// A device refusal about file `name`, in words for that file.
pub fn file_refused(t: &Target, f: Failure, name: &str) -> Failure {
    match f.code() {
        Some(ErrorCode::NotFound) => Failure {
            message: format!("the device {} has no file `{name}`", t.addr),
            ..f
        }
        .hint(format!("`{}` lists its files", t.command("ls"))),
        _ => f,
    }
}

pub fn run(args: &Args, out: &Reporter) -> Result<()> {
    match &args.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut crate::cli::Args::command(),
                "host-cli",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Devices => return devices(args, out).map_err(with_a_hint),
        Command::Discover {
            scope,
            no_mdns,
            mdns,
            serial,
        } => {
            let how = discover::How {
                mdns: discover::Mdns::from_flags(*mdns, *no_mdns),
                usb_serial: *serial,
            };
            return discover::run(args, out, scope, how).map_err(with_a_hint);
        }
        Command::Keygen { file, force } => return keygen(out, file, *force).map_err(with_a_hint),
        Command::Fw { action } => {
            if let Some(done) = firmware::run_local(out, action) {
                return done.map_err(with_a_hint);
            }
        }
        _ => {}
    }
    // Several devices in --to (unless a -d flag beats a TETHER_TO list: flags beat the environment).
    if let Some(crate::fanout::To::Many(items)) = &args.to {
        if !(args.to_from_env && args.device_from_flag) {
            return crate::fanout::run(args, out, items).map_err(with_a_hint);
        }
    }
    let t = Target::resolve(args).map_err(with_a_hint)?;
    run_on(args, &t, out).map_err(|f| with_a_hint(finish(&t, f)))
}

/// Every failure says what to try (docs/CLI.md promises it): where the command and its kind gave
/// no better hint, a general one.
pub fn with_a_hint(f: Failure) -> Failure {
    let hint = match f.kind {
        FailKind::Usage => "`host-cli --help` shows the usage",
        FailKind::Local => "check the path, and that you may read or write it",
        FailKind::Device => "the device's message says why it refused",
        FailKind::Interrupted => "run the same command again to go on",
        _ => "check --to (or -d) and that the device is up; `host-cli info` says how it stands",
    };
    f.or_hint(hint)
}

/// Runs the command on the one device `t`.
pub(crate) fn run_on(args: &Args, t: &Target, out: &Reporter) -> Result<()> {
    match &args.command {
        Command::Send { message, upper } => {
            let mut c = open(t, out)?;
            let reply = c.echo(message.as_bytes(), *upper)?;
            let text = String::from_utf8_lossy(&reply);
            out.result(&text, json!({"reply": text}));
        }
        Command::Ping { count } => ping(t, out, *count)?,
        Command::Info => info(t, out)?,
        Command::Exec { command, args: cargs } => exec(t, out, command, cargs)?,
        Command::Put {
            local,
            remote,
            overwrite,
            resume: _,
        } => transfer::put(t, out, local, remote.as_deref(), *overwrite, args.retries)?,
        Command::Get {
            remote,
            local,
            overwrite,
            resume: _,
        } => transfer::get(t, out, remote, local.as_deref(), *overwrite, args.retries)?,
        Command::Ls => {
            // Over a serial line the client reads a listing again when a page was lost; past its
            // own tries, --retries reopens the line and starts over (TCP loses no pages).
            let retries = if t.addr.is_serial() { args.retries } else { 0 };
            let files = transfer::with_retries(out, retries, || 0, &mut 0, || Ok(open(t, out)?.list()?))?;
            let mut human = String::new();
            for f in &files {
                human.push_str(&format!("{:>12}  {}\n", bytes(f.size), f.name));
            }
            let total: u64 = files.iter().map(|f| f.size).sum();
            human.push_str(&format!("{}, {}", plural(files.len() as u64, "file"), bytes(total)));
            let list: Vec<_> = files.iter().map(|f| json!({"name": f.name, "size": f.size})).collect();
            out.result(human, json!({"files": list, "count": files.len(), "size": total}));
        }
        Command::Stat { name } => {
            check_name(name)?;
            let mut c = open(t, out)?;
            let (size, sha) = c.stat(name).map_err(|e| file_refused(t, e.into(), name))?;
            let hex = transfer::hex(&sha);
            out.result(
                format_args!("{name}  {}  sha256 {hex}", bytes(size)),
                json!({"name": name, "size": size, "sha256": hex}),
            );
        }
        Command::Rm { name } => {
            check_name(name)?;
            let mut c = open(t, out)?;
            c.remove(name).map_err(|e| file_refused(t, e.into(), name))?;
            out.result(format_args!("removed {name}"), json!({"name": name, "removed": true}));
        }
        Command::Time {
            action: Some(TimeAction::Set),
            ..
        } => datagram::time_set(t, out)?,
        Command::Time { action: None, format } => datagram::time_get(t, out, format.as_deref().unwrap_or(""))?,
        Command::Chat { message, from } => datagram::chat(t, out, message.as_deref(), from)?,
        Command::Listen { count, duration } => datagram::listen(t, out, *count, *duration)?,
        Command::Bench { rounds, size, repeat } => bench::run(t, out, *rounds, *size, *repeat)?,
        Command::Fw { action } => firmware::run(t, out, action, args.retries)?,
        Command::Reset => firmware::reset(t, out)?,
        Command::Devices | Command::Completions { .. } | Command::Keygen { .. } | Command::Discover { .. } => {
            unreachable!("handled before resolving the device")
        }
    }
    Ok(())
}

fn ping(t: &Target, out: &Reporter, count: u32) -> Result<()> {
    let mut c = open(t, out)?;
    let mut rtts = Vec::new();
    for i in 0..count {
        let start = Instant::now();
        c.echo(&[], false)?;
        let us = start.elapsed().as_secs_f64() * 1e6;
        rtts.push(us);
        out.item(
            format_args!("reply {} from {}: time={us:.0} µs", i + 1, t.addr),
            json!({"seq": i + 1, "rtt_us": us}),
        );
    }
    let min = rtts.iter().cloned().fold(f64::MAX, f64::min);
    let max = rtts.iter().cloned().fold(0.0, f64::max);
    let avg = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
    out.result(
        format_args!(
            "{}: min {min:.0} µs, avg {avg:.0} µs, max {max:.0} µs",
            plural(u64::from(count), "round trip")
        ),
        json!({"count": count, "min_us": min, "avg_us": avg, "max_us": max}),
    );
    Ok(())
}

/// Unix milliseconds as a UTC date and time, `2026-12-01 12:04:30 UTC`.
pub fn date(unix_ms: u64) -> String {
    match jiff::Timestamp::from_millisecond(unix_ms as i64) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{unix_ms} ms after 1970"),
    }
}

/// A duration for people: `42.1 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{:.1} s", ms as f64 / 1000.0),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn info(t: &Target, out: &Reporter) -> Result<()> {
    let mut c = connect(t, out)?;
    let i = c.hello(CLIENT)?;
    let i = learn(t, out, i, Need::Report)?.clone();
    let sealed = t.sealed();
    let security = match (i.key_required, sealed) {
        (false, _) => "OPEN: no key, anyone who can reach it can change it (see `host-cli keygen`)",
        (true, true) => "key required; this session is sealed",
        (true, false) => {
            "key required; this session is not sealed, so only info and the time read work: pass --key-file FILE (or set TETHER_KEY_FILE, or key_file in the config)"
        }
    };
    let free = i.storage_capacity.saturating_sub(i.storage_used);
    let clock = if i.clock_synced {
        "set".to_string()
    } else {
        format!("never set (run `{}`)", t.command("time set"))
    };
    let address = match &t.addr {
        Endpoint::Tcp(a) => format!("{a} (UDP port {})", i.udp_port),
        Endpoint::Serial(s) => format!("{s} (serial line)"),
    };
    // The hello counts TCP sessions; a serial line is a session of its own.
    let sessions = match (&t.addr, i.sessions) {
        (Endpoint::Tcp(_), n) => n.to_string(),
        (Endpoint::Serial(_), 0) => "1 (this serial line)".to_string(),
        (Endpoint::Serial(_), n) => format!("1 on this serial line ({n} more over TCP)"),
    };
    // The image running, from the update service where the device has one (`Info` itself is a
    // frozen v1 message).
    let (fw_line, fw_json) = firmware::running(&mut c, sealed || !i.key_required);
    let human = format!(
        "device     {}\naddress    {address}\nprotocol   v{}\nmax frame  {} ({} bytes; data chunks of {} bytes)\nsessions   {}\nstorage    {} used of {} ({} free)\nuptime     {}\nclock      {clock}\nsecurity   {security}\n{fw_line}commands   {}",
        i.device,
        i.version,
        bytes(u64::from(i.max_frame)),
        i.max_frame,
        i.max_chunk,
        sessions,
        bytes(i.storage_used),
        bytes(i.storage_capacity),
        bytes(free),
        span(i.uptime_ms),
        i.commands.join(" ")
    );
    out.result(
        human,
        json!({"device": i.device, "address": t.addr.to_string(), "udp_port": i.udp_port, "version": i.version,
               "max_frame": i.max_frame, "max_chunk": i.max_chunk, "sessions": i.sessions,
               "storage_capacity": i.storage_capacity, "storage_used": i.storage_used, "storage_free": free,
               "uptime_ms": i.uptime_ms, "clock_synced": i.clock_synced, "commands": i.commands,
               "key_required": i.key_required, "sealed": sealed, "firmware": fw_json}),
    );
    Ok(())
}

fn exec(t: &Target, out: &Reporter, command: &str, cargs: &[String]) -> Result<()> {
    let mut c = open(t, out)?;
    let argv: Vec<&str> = cargs.iter().map(String::as_str).collect();
    let json_mode = out.json();
    // --json: one object with the whole output; people see it as it streams.
    let mut collected = Vec::new();
    let mut stdout = std::io::stdout().lock();
    let status = c
        .exec(command, &argv, |chunk| {
            if json_mode {
                collected.extend_from_slice(chunk);
            } else {
                let _ = stdout.write_all(chunk);
                let _ = stdout.flush();
            }
        })
        .map_err(|e| {
            let f = Failure::from(e);
            match f.code() {
                Some(ErrorCode::UnknownCommand) => Failure {
                    message: format!("the device {} has no command `{command}`", t.addr),
                    ..f
                }
                .hint(format!("`{}` lists its commands", t.command("exec help"))),
                _ => f,
            }
        })?;
    drop(stdout);
    let output = String::from_utf8_lossy(&collected).into_owned();
    if status == 0 {
        if json_mode {
            out.result("", json!({"command": command, "status": 0, "output": output}));
        }
        return Ok(());
    }
    let mut f = Failure::new(
        FailKind::Command,
        format!("`{command}` on the device exited with status {status}"),
    );
    f.status = Some(status);
    f.extra.insert("command".into(), json!(command));
    f.extra.insert("output".into(), json!(output));
    let code = exec_exit_code(status);
    Err(if code == 126 {
        f.hint("the status is outside 1-115, so host-cli exits with 126 (see `host-cli --help`)")
    } else {
        f.hint(format!(
            "host-cli exits with {code} = 10 + the status (see `host-cli --help`)"
        ))
    })
}

/// `keygen FILE`: a fresh key, written so that only its owner can read it. Without `--force` the
/// file is created exclusively (an existing key is never lost); with it, the new key is written
/// beside FILE and renamed over it, so FILE is whole at every moment. The key is never printed.
fn keygen(out: &Reporter, file: &std::path::Path, force: bool) -> Result<()> {
    let key = tether_host::secure::generate_key();
    let mut text = [0u8; 65];
    key.to_hex(&mut text);
    let shown = file.display().to_string();
    // A fresh account has no ~/.config/tether yet: make it, readable by its owner only, as
    // ssh-keygen makes ~/.ssh.
    let made = match file.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        Some(dir) => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| {
                Failure::local(format!(
                    "cannot create the directory {} for the key ({e})",
                    dir.display()
                ))
                .hint("create it yourself (mkdir -p DIR), or give a FILE in a directory you can write")
            })?;
            Some(dir.to_path_buf())
        }
        None => None,
    };
    let write_new = |path: &std::path::Path| -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path)?;
        let written = f.write_all(&text).and_then(|()| f.sync_all());
        if written.is_err() {
            let _ = std::fs::remove_file(path);
        }
        written
    };
    let result = if force {
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(format!(".new-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        write_new(&tmp).and_then(|()| {
            std::fs::rename(&tmp, file).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        })
    } else {
        write_new(file)
    };
    zeroize::Zeroize::zeroize(&mut text);
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::local(format!("{shown} exists: keygen never replaces a key file unless told to"))
                .hint("add --force to replace it (devices that hold the old key must then be given the new one), or pick another FILE"))
        }
        Err(e) => {
            return Err(Failure::local(format!("cannot write the key file {shown} ({e})"))
                .hint("give a FILE in a directory you can write, e.g. ~/.config/tether/NAME.key"))
        }
    }
    if let Some(dir) = made {
        out.note(format_args!("created {} (mode 700) for the key", dir.display()));
    }
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let q = shell_quote(&abs.display().to_string());
    let cfg = config::path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the config file".into());
    out.result(
        format_args!(
            "wrote a new key to {shown} (readable by you only; keep it secret, never commit it)\n\
             use the same file on both sides:\n  \
             sim --key-file {q}\n  \
             host-cli --key-file {q} info      (or TETHER_KEY_FILE={q})\n  \
             key_file = \"{}\"      (under [devices.NAME] in {cfg})",
            abs.display()
        ),
        json!({"key_file": abs.display().to_string()}),
    );
    Ok(())
}

fn devices(args: &Args, out: &Reporter) -> Result<()> {
    let path = config::path();
    let cfg = config::load(path.as_deref()).map_err(Failure::usage)?;
    let file = path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let exists = path.as_ref().is_some_and(|p| p.exists());
    let mut human = String::new();
    if cfg.devices.is_empty() {
        human.push_str(&format!(
            "no named devices ({file} {})\nadd one:\n  [devices.bench-board]\n  to = \"HOST:PORT\"",
            if exists { "names none" } else { "does not exist" }
        ));
    } else {
        human.push_str(&format!("devices in {file}:\n"));
    }
    let mut list = Vec::new();
    for (name, d) in &cfg.devices {
        let default = cfg.default.as_deref() == Some(name.as_str());
        let mut line = format!("  {name:<16} {}", d.to);
        if let Some(p) = d.udp_port {
            line.push_str(&format!("  udp {p}"));
        }
        if let Some(tm) = &d.timeout {
            line.push_str(&format!("  timeout {tm}"));
        }
        if let Some(k) = &d.key_file {
            line.push_str(&format!("  key {}", k.display()));
        }
        if default {
            line.push_str("  (default)");
        }
        human.push_str(&line);
        human.push('\n');
        list.push(
            json!({"name": name, "to": d.to, "udp_port": d.udp_port, "timeout": d.timeout,
                         "key_file": d.key_file.as_ref().map(|k| k.display().to_string()), "default": default}),
        );
    }
    let _ = args;
    out.result(human.trim_end(), json!({"config": file, "devices": list}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(to: &str) -> Target {
        Target {
            addr: Endpoint::parse(to).unwrap(),
            udp_port: None,
            timeout: DEFAULT_TIMEOUT,
            select: format!("--to {to}"),
            key_file: None,
            learned: Learned::default(),
        }
    }

    #[test]
    fn a_refused_remote_board_is_not_told_to_start_the_simulator() {
        let refused = Failure::new(FailKind::Connection, "192.0.2.7:7070 refused the connection");
        let remote = connection_hint(&target("192.0.2.7:7070"), &refused);
        assert!(!remote.contains("sim"), "{remote}");
        assert!(remote.contains("192.0.2.7") && remote.contains("7070"), "{remote}");
        let local = connection_hint(&target("127.0.0.1:7070"), &refused);
        assert!(local.contains("sim"), "{local}");
    }

    #[test]
    fn authentication_failures_get_their_own_hint_and_exit_code() {
        let t = target("127.0.0.1:7070");
        // The handshake's failure: an auth hint, never the connection hint.
        let f = finish(
            &t,
            Failure::from(ClientError::Auth(
                "127.0.0.1:7070 closed the connection during the handshake".into(),
            )),
        );
        assert_eq!((f.kind, f.exit_code()), (FailKind::Auth, 6));
        let hint = f.hint.unwrap();
        assert!(hint.contains("key file") && !hint.contains("reachable"), "{hint}");
        // The device's own `Unauthorized`, should it ever reach a command: exit 6, not 1.
        let refused = Failure::from(ClientError::Device {
            code: ErrorCode::Unauthorized as u16,
            message: "unauthorized".into(),
        });
        let f = finish(&t, refused);
        assert_eq!((f.kind, f.exit_code()), (FailKind::Auth, 6));
        assert!(f.message.contains("requires its key"), "{}", f.message);
        assert!(f.hint.is_some());
    }

    #[test]
    fn resume_commands_quote_what_a_shell_would_split() {
        assert_eq!(shell_quote("a.bin"), "a.bin");
        assert_eq!(shell_quote("my dir/a.bin"), "'my dir/a.bin'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("serial:/dev/pts/3@921600"), "serial:/dev/pts/3@921600");
        assert_eq!(shell_quote("[::1]:7070"), "'[::1]:7070'");
    }

    #[test]
    fn exit_codes_of_exec_never_meet_host_clis_own() {
        for s in [1, 2, 3, 4, 5, 115] {
            assert_eq!(exec_exit_code(s), (s + 10) as u8);
        }
        for s in [116, 255, 256, 300, -1, i32::MIN, i32::MAX] {
            assert_eq!(exec_exit_code(s), 126, "{s}");
        }
    }
}
