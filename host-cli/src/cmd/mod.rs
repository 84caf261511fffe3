//! The commands.

mod bench;
mod datagram;
mod transfer;

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_core::wire::ErrorCode;
use tether_host::net::{self, AnyClient, Endpoint};
use tether_host::units::{bytes, plural};

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
}

impl Target {
    pub fn resolve(args: &Args) -> Result<Target> {
        let cfg_path = config::path();
        let needs_config = args.device.is_some() || args.to.is_none();
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
            .or_else(|| if args.to.is_none() { cfg.default.clone() } else { None });
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
        let addr = match (&args.to, &named) {
            (Some(a), _) => a.clone(),
            (None, Some(d)) => Endpoint::parse(&d.to).map_err(|m| {
                Failure::usage(format!(
                    "device `{}` in the config file: to = {m}",
                    name.clone().unwrap_or_default()
                ))
            })?,
            (None, None) => Endpoint::parse("127.0.0.1:7070").expect("literal"),
        };
        let cfg_timeout = match named.as_ref().and_then(|d| d.timeout.as_deref()) {
            Some(t) => Some(crate::cli::parse_duration(t).map_err(|m| {
                Failure::usage(format!(
                    "device `{}` in the config file: timeout {m}",
                    name.clone().unwrap_or_default()
                ))
            })?),
            None => None,
        };
        let select = match (&args.to, &name) {
            (None, Some(n)) if args.device.is_some() => format!("-d {n}"),
            _ => format!("--to {}", shell_quote(&addr.to_string())),
        };
        let udp_port = args.udp_port.or(if args.to.is_none() {
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
            if args.to.is_none() {
                named.as_ref().and_then(|d| d.key_file.clone())
            } else {
                None
            }
        });
        Ok(Target {
            addr,
            udp_port,
            timeout: args.timeout.or(cfg_timeout).unwrap_or(DEFAULT_TIMEOUT),
            select,
            key_file,
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
    let refused = f.message.contains("refused the connection") || f.message.contains("the port is closed");
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

/// A session to the device: TCP, or the serial line of `--to serial:PATH[@BAUD]`.
pub fn open(t: &Target, out: &Reporter) -> Result<AnyClient> {
    out.detail(format_args!("connecting to {}", t.addr));
    let key = match &t.key_file {
        Some(path) => {
            let (key, warning) = tether_host::secure::read_key_file(path).map_err(Failure::from)?;
            if let Some(w) = warning {
                out.warn(format_args!("{w}"));
            }
            Some(key)
        }
        None => None,
    };
    net::open(&t.addr, t.timeout, key.as_ref()).map_err(|e| {
        let f = Failure::from(e);
        let hint = connection_hint(t, &f);
        f.or_hint(hint)
    })
}

/// Adds the hint every failure of its kind gets, where the command did not give a better one.
fn finish(t: &Target, f: Failure) -> Failure {
    match f.kind {
        FailKind::Connection => {
            let hint = connection_hint(t, &f);
            f.or_hint(hint)
        }
        FailKind::NotTether if t.addr.is_serial() => f.or_hint(format!(
            "something answers on {}, but not as a Tether device: check the port and the baud rate in --to",
            t.addr
        )),
        FailKind::NotTether => f.or_hint(format!(
            "{} answers, but not as a Tether device: check the port in --to (the device's framed TCP port is usually 7070)",
            t.addr
        )),
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
        Command::Devices => return devices(args, out),
        _ => {}
    }
    let t = Target::resolve(args)?;
    run_on(args, &t, out).map_err(|f| finish(&t, f))
}

fn run_on(args: &Args, t: &Target, out: &Reporter) -> Result<()> {
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
            let files = transfer::with_retries(out, retries, || Ok(open(t, out)?.list()?))?;
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
        Command::Devices | Command::Completions { .. } => unreachable!("handled before resolving the device"),
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
    let mut c = open(t, out)?;
    let i = c.hello(concat!("host-cli ", env!("CARGO_PKG_VERSION")))?;
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
    let human = format!(
        "device     {}\naddress    {address}\nprotocol   v{}\nmax frame  {} ({} bytes; data chunks of {} bytes)\nsessions   {}\nstorage    {} used of {} ({} free)\nuptime     {}\nclock      {clock}\ncommands   {}",
        i.device,
        i.version,
        bytes(u64::from(i.max_frame)),
        i.max_frame,
        i.max_chunk,
        i.sessions,
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
               "uptime_ms": i.uptime_ms, "clock_synced": i.clock_synced, "commands": i.commands}),
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
            line.push_str(&format!("  key {} (not used yet)", k.display()));
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
