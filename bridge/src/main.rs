//! `tether-bridge`: Tether devices on an MQTT broker (docs/BRIDGE.md).

// The clap doc comments are --help text, where `HOST:PORT` is the usual notation, not a link.
#![allow(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tether_bridge::device::Spec;
use tether_bridge::topic::check_segment;
use tether_bridge::Settings;
use tether_host::config;
use tether_host::discover::{self, Where};
use tether_host::net::{Address, Endpoint};
use tether_host::targets::{self, ExpandError, To};
use tether_host::units::parse_duration;

const EXIT_CODES: &str = "\
Exit codes:
  0    stopped (Ctrl-C or SIGTERM): every device and the bridge were marked offline
  2    usage: a bad flag, site, client id, config file or group
  3    @discover found no device
  4    a key file cannot be read

Topics (docs/BRIDGE.md): tether/v1/SITE/DEVICE/{state,info,event/TOPIC,message,reply},
commands on tether/v1/SITE/DEVICE/cmd/VERB, the bridge on tether/v1/SITE/bridge/CLIENT-ID/state.";

/// Bridges Tether devices to an MQTT 3.1.1 broker: one MQTT connection, a session to each
/// device, its state, info and events published, commands from the broker run on it.
#[derive(Debug, Parser)]
#[command(name = "tether-bridge", version, after_help = EXIT_CODES)]
struct Args {
    /// An MQTT broker, HOST:PORT. Repeat it for the nodes of a cluster: after a failure the
    /// bridge reconnects to the next.
    #[arg(long = "broker", value_name = "HOST:PORT", required = true, value_parser = parse_broker)]
    brokers: Vec<Address>,
    /// The site: the third segment of every topic (letters, digits, `-`, `_`).
    #[arg(long, value_name = "NAME")]
    site: String,
    /// The devices: a comma list of HOST[:PORT], a group of the config file (@NAME), or
    /// @discover[:WHERE] (the devices that answer a discovery probe), as host-cli's --to.
    #[arg(long, value_name = "LIST|@GROUP|@discover")]
    to: String,
    /// The devices' pre-shared key (a named device of the config file uses its own key_file).
    #[arg(long, value_name = "FILE", env = "TETHER_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The MQTT client id, also the bridge's name in its state topic (default
    /// tether-bridge-SITE). Two bridges of one site need two ids.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// How long to wait for a device's answer.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// How often each device's info is read (which also finds a silent device gone).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    poll: Duration,
    /// MQTT keep-alive (1s or more): how soon the broker notices a bridge gone silent.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_keep_alive)]
    keep_alive: Duration,
    /// The longest pause between reconnections, to the broker and to a device.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    backoff_max: Duration,
    /// How long @discover waits for answers.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    discover_wait: Duration,
    /// The UDP port @discover probes when WHERE names none.
    #[arg(long, value_name = "PORT", default_value_t = discover::DEFAULT_UDP_PORT)]
    udp_port: u16,
    /// Log every event and command.
    #[arg(short, long)]
    verbose: bool,
}

fn parse_broker(s: &str) -> Result<Address, String> {
    if !s.contains(':') {
        return Err(format!("`{s}` has no port: give HOST:PORT (MQTT's is usually 1883)"));
    }
    Address::parse(s)
}

fn parse_keep_alive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!(
            "`{s}` is under a second: MQTT counts keep-alive in whole seconds"
        ));
    }
    Ok(Duration::from_secs(d.as_secs()))
}

/// A failure before the bridge runs: its message and exit code.
struct Stop(String, u8);

fn usage(m: impl Into<String>) -> Stop {
    Stop(m.into(), 2)
}

/// The devices `--to` names, each with its address, known segment and key.
fn devices(args: &Args) -> Result<Vec<Spec>, Stop> {
    let to = To::parse(&args.to).map_err(|m| usage(format!("--to: {m}")))?;
    let cfg_path = config::path();
    let mut cfg = None;
    let members = targets::expand(
        &to.items(),
        || {
            let c = config::load(cfg_path.as_deref())?;
            cfg = Some(c.clone());
            Ok(c)
        },
        |scope| {
            let texts: Vec<String> = match scope {
                Some(s) => s.split(',').map(str::to_string).collect(),
                None => config::load(cfg_path.as_deref())
                    .ok()
                    .and_then(|c| c.discover)
                    .unwrap_or_else(|| vec!["255.255.255.255".into(), "127.0.0.1".into()]),
            };
            let scope: Vec<Where> = texts
                .iter()
                .map(|t| Where::parse(t, args.udp_port))
                .collect::<Result<_, _>>()?;
            discover::discover(&scope, args.discover_wait, |_| {})
        },
    )
    .map_err(|e| match e {
        ExpandError::Config(m) => usage(m),
        ExpandError::NoGroup { name, known } => usage(format!(
            "no group `{name}` in the config file (its groups: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )),
        ExpandError::BadEntry { group, entry, why } => usage(format!(
            "group `{group}` in the config file: `{entry}` is neither a named device nor an address ({why})"
        )),
        ExpandError::NoneDiscovered => Stop("@discover: no device answered the discovery probe".into(), 3),
        ExpandError::Discover(e) => Stop(format!("@discover: {e}"), if e.code().is_none() { 3 } else { 2 }),
    })?;
    let read_key = |path: &std::path::Path| {
        tether_host::secure::read_key_file(path)
            .map(|(k, warning)| {
                if let Some(w) = warning {
                    eprintln!("tether-bridge: warning: {w}");
                }
                k
            })
            .map_err(|e| Stop(format!("{e}"), 4))
    };
    let common_key = args.key_file.as_deref().map(read_key).transpose()?;
    let mut specs = Vec::new();
    for m in members {
        let (endpoint, key) = match (&m.to, &m.name) {
            (Some(e), _) => (e.clone(), common_key.clone()),
            (None, Some(name)) => {
                let d = cfg
                    .as_ref()
                    .and_then(|c| c.devices.get(name))
                    .ok_or_else(|| usage(format!("no device `{name}` in the config file")))?;
                let e = Endpoint::parse(&d.to)
                    .map_err(|why| usage(format!("device `{name}` in the config file: to = {why}")))?;
                let key = match &d.key_file {
                    Some(k) => Some(read_key(&config::resolve_path(k, cfg_path.as_deref()))?),
                    None => common_key.clone(),
                };
                (e, key)
            }
            (None, None) => continue,
        };
        specs.push(Spec {
            label: m.label.clone(),
            to: endpoint,
            segment: m.name.clone().or(m.found.clone()),
            key,
        });
    }
    Ok(specs)
}

fn settings(args: &Args) -> Result<Settings, Stop> {
    check_segment("--site", &args.site).map_err(usage)?;
    let client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("tether-bridge-{}", args.site));
    check_segment("--client-id", &client_id).map_err(usage)?;
    let devices = devices(args)?;
    Ok(Settings {
        brokers: args.brokers.clone(),
        site: args.site.clone(),
        client_id,
        devices,
        timeout: args.timeout,
        poll: args.poll.max(Duration::from_millis(100)),
        keep_alive: args.keep_alive,
        backoff_cap: args.backoff_max,
        verbose: args.verbose,
    })
}

/// Open files a device holds: its session (two for TCP: the link reads through a clone) and its
/// waker.
const FILES_PER_DEVICE: u64 = 3;

/// Raises the soft limit on open files up to the hard limit when `devices` would need more than
/// it allows (a common default soft limit, 1024, is below 256 devices' needs with the broker's
/// connection and the rest); says so when even the hard limit is too low.
fn raise_open_files(devices: usize) {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let need = devices as u64 * FILES_PER_DEVICE + 64;
        let now = getrlimit(Resource::Nofile);
        let Some(soft) = now.current else { return };
        if soft >= need {
            return;
        }
        let hard = now.maximum.unwrap_or(u64::MAX);
        let raised = Rlimit {
            current: Some(hard.min(need.max(4096))),
            maximum: now.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            eprintln!("tether-bridge: warning: {devices} devices need about {need} open files, the limit is {soft} and cannot be raised ({e}); raise it (ulimit -n)");
        } else if hard < need {
            eprintln!("tether-bridge: warning: {devices} devices need about {need} open files, the hard limit is {hard}; raise it (ulimit -Hn)");
        }
    }
    #[cfg(not(unix))]
    let _ = (devices, FILES_PER_DEVICE);
}

fn main() -> ExitCode {
    let args = Args::parse();
    let s = match settings(&args) {
        Ok(s) => s,
        Err(Stop(m, code)) => {
            eprintln!("tether-bridge: error: {m}");
            return ExitCode::from(code);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)) {
            eprintln!(
                "tether-bridge: warning: cannot catch Ctrl-C ({e}); stop it with SIGKILL, its will marks it offline"
            );
        }
    }
    raise_open_files(s.devices.len());
    let brokers: Vec<String> = s.brokers.iter().map(ToString::to_string).collect();
    eprintln!(
        "tether-bridge: {} devices of site {} to {} as {}",
        s.devices.len(),
        s.site,
        brokers.join(", "),
        s.client_id
    );
    tether_bridge::run(s, stop);
    ExitCode::SUCCESS
}
