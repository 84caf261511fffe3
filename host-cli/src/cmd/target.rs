//! The one device a run talks to: `--to`, `-d NAME` and the config resolved into a [`Target`];
//! what the run learns of it (key, hello); opening sessions to it.

use std::cell::{Cell, OnceCell};
use std::time::Duration;

use tether_core::secure::Psk;
use tether_host::client::DeviceInfo;
use tether_host::net::{self, AnyClient, Endpoint};
use tether_host::ClientError;

use super::hints::{auth_failed, connection_hint, key_required, no_key_hint};
use super::Result;
use crate::cli::Args;
use crate::config;
use crate::report::{FailKind, Failure, Reporter};

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
        let info = first_hello(t, out, &mut c)?;
        learn(t, out, info, Need::Key)?;
    }
    Ok(c)
}

/// The hello of a run's first session. An answer that is not a Tether frame comes from a peer
/// that is not a Tether device, or is a frame the link damaged (a flipped bit above TCP): a second
/// session tells them apart, since a device answers it intact and the other peer does not.
pub fn first_hello(t: &Target, out: &Reporter, c: &mut AnyClient) -> Result<DeviceInfo> {
    match c.hello(CLIENT) {
        Err(ClientError::NotTether(why)) => {
            out.detail(format_args!("{why}; asking once more on a new connection"));
            *c = connect(t, out)?;
            Ok(c.hello(CLIENT)?)
        }
        other => Ok(other?),
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn target(to: &str) -> Target {
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
    fn resume_commands_quote_what_a_shell_would_split() {
        assert_eq!(shell_quote("a.bin"), "a.bin");
        assert_eq!(shell_quote("my dir/a.bin"), "'my dir/a.bin'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("serial:/dev/pts/3@921600"), "serial:/dev/pts/3@921600");
        assert_eq!(shell_quote("[::1]:7070"), "'[::1]:7070'");
    }
}
