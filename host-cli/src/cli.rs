//! Command-line syntax.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
pub use tether_host::units::parse_duration;
use tether_host::units::parse_size;

use crate::fanout::To;

/// `host-cli --version`: the tool's version and the protocol version it speaks.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (Tether protocol v",
    // Kept in step with tether_core::wire::VERSION by a unit test below.
    "1",
    ")"
);

/// Exit codes, shown by --help (and in docs/CLI.md).
pub const EXIT_CODES: &str = "\
Exit codes:
  0       success
  1       the device refused the request (no such file, already exists, no space, ...)
  2       usage: a bad flag, argument, file name or config file
  3       cannot talk to the device: refused, timed out, connection broken, not a Tether device
  4       a local file problem: cannot read or write, or it exists and --overwrite was not given
  5       the device broke the protocol (a damaged answer, a digest that does not match)
  6       authentication: the device requires its key and none was given, it refused the key,
          it has no key although one was given, or it did not prove that it holds the key
  7       fw update: the new image did not stay; the device went back to the previous one
  11-125  exec: the device command exited with status 1-115 (exit code = 10 + status)
  126     exec: the device command exited with a status outside 1-115 (see the message or --json)
  130     interrupted (Ctrl-C)";

/// Talk to a Tether device: framed messages over TCP and UDP, or over a serial line.
///
/// Start the simulator with `sim` (or `cargo run --release --bin sim`), then try
/// `host-cli info`. Pick the device with --to HOST[:PORT] (or --to serial:PATH[@BAUD]) or a
/// name from the config file (-d NAME, see `host-cli devices`); every command, TCP or UDP,
/// talks to that one device.
#[derive(Debug, Clone, Parser)]
#[command(name = "host-cli", version = VERSION, propagate_version = true, after_help = EXIT_CODES)]
pub struct Args {
    /// Device address: HOST[:PORT] for TCP (port default 7070), or serial:PATH[@BAUD] for a serial
    /// line (baud default 115200), e.g. serial:/dev/ttyUSB0@921600 or the pty `sim --serial`
    /// prints. Overrides -d. Several devices: a comma list of addresses, @GROUP (a group of the
    /// config file) or @discover[:WHERE] (the devices that answer `discover`); info, exec, put,
    /// get, time set, rm, reset and fw status/upload/test/confirm/update then run on each (see
    /// --jobs).
    #[arg(long, global = true, env = "TETHER_TO", value_name = "HOST[:PORT]|serial:PATH[@BAUD]|LIST",
          value_parser = To::parse)]
    pub to: Option<To>,

    /// A device named in the config file (see `host-cli devices`).
    #[arg(short, long, global = true, env = "TETHER_DEVICE", value_name = "NAME")]
    pub device: Option<String>,

    /// The device's framed UDP port (time, chat, listen). Default: the port the device
    /// advertises in its hello, on the host of --to.
    #[arg(long, global = true, env = "TETHER_UDP_PORT", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub udp_port: Option<u16>,

    /// The device's pre-shared key (a file of 64 hex digits, `host-cli keygen` writes one): every
    /// session then starts with the handshake and is sealed, and a device that does not prove
    /// the key is refused. Default: the named device's `key_file` in the config file.
    #[arg(long, global = true, env = "TETHER_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// How long to wait for the device, e.g. 500ms, 5s, 1m, 1h (default 5s; 1ms to 24h).
    #[arg(long, global = true, env = "TETHER_TIMEOUT", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// put/get: after a dropped connection, a timeout or a busy device, reconnect and resume up to
    /// this many times in a row without progress, with pauses from 0.2 s that start again after
    /// progress. (Frames damaged or lost on the link, and failures after progress, are recovered
    /// without it.)
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    pub retries: u32,

    /// One JSON object per result (one per line for streams) on stdout, errors too; nothing on
    /// stderr.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only results, no progress or notes.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more about what happens.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// With several devices in --to: how many are served at once (1 to 256).
    #[arg(long, global = true, default_value_t = 16, value_name = "N", help_heading = "Many devices",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,

    #[command(subcommand)]
    pub command: Command,

    /// Whether `to` came from `TETHER_TO` rather than `--to`: then a `-d NAME` given as a flag
    /// wins (flags beat the environment). Set by [`Args::parse_from_env`].
    #[arg(skip)]
    pub to_from_env: bool,

    /// Whether `device` was given as `-d`/`--device` (not `TETHER_DEVICE`).
    #[arg(skip)]
    pub device_from_flag: bool,
}

impl Args {
    /// Parses the process's arguments, noting where `--to` and `-d` came from.
    pub fn parse_from_env() -> Result<Args, clap::Error> {
        use clap::parser::ValueSource;
        use clap::{CommandFactory, FromArgMatches};
        let matches = Args::command().try_get_matches()?;
        let mut args = Args::from_arg_matches(&matches)?;
        args.to_from_env = matches.value_source("to") == Some(ValueSource::EnvVariable);
        args.device_from_flag = matches.value_source("device") == Some(ValueSource::CommandLine);
        Ok(args)
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Send a message and print the device's echo.
    Send {
        /// The text to send.
        message: String,
        /// Ask for the upper-cased echo.
        #[arg(long)]
        upper: bool,
    },
    /// Measure round-trip time with empty echoes.
    Ping {
        /// How many round trips (at least 1).
        #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        /// Wait this long after each reply before the next request (e.g. 5ms), so that the
        /// device is idle when each one arrives; default: none.
        #[arg(short, long, value_parser = parse_duration)]
        interval: Option<Duration>,
        /// Each round trip a `Hello` (the device's name, limits and state) instead of an empty
        /// echo.
        #[arg(long)]
        hello: bool,
    },
    /// Show what the device is: name, limits, storage, uptime, clock, commands.
    Info,
    /// Run a command registered on the device (exit code 10 + its status when it fails).
    Exec {
        /// The command (see `host-cli exec help`).
        command: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Upload a file (`-` reads stdin); it becomes visible on the device only once its size and
    /// SHA-256 match. An interrupted upload of the same file resumes automatically.
    Put {
        /// The local file, or `-` for stdin.
        local: PathBuf,
        /// Name on the device (default: the local file name; required with `-`).
        remote: Option<String>,
        /// Replace a file of that name (the old copy stays until the new one is verified).
        #[arg(long)]
        overwrite: bool,
        /// Resume an interrupted upload (the default; the flag only makes it explicit).
        #[arg(long, hide = true)]
        resume: bool,
    },
    /// Download a file; it is written as LOCAL.part and renamed once its SHA-256 matches. A
    /// LOCAL.part left by an interrupted download of the same file resumes automatically.
    Get {
        /// Name on the device.
        remote: String,
        /// The local file, a directory to put it in, or `-` for stdout (default: the remote
        /// name in the current directory).
        local: Option<PathBuf>,
        /// Replace an existing local file.
        #[arg(long)]
        overwrite: bool,
        /// Resume an interrupted download (the default; the flag only makes it explicit).
        #[arg(long, hide = true)]
        resume: bool,
    },
    /// List the device's files.
    Ls,
    /// Size and SHA-256 of a file on the device.
    Stat {
        /// Name on the device.
        name: String,
    },
    /// Delete a file on the device.
    Rm {
        /// Name on the device.
        name: String,
    },
    /// Read the device clock (UDP): `time [FORMAT]`, or set it from this PC: `time set`.
    #[command(args_conflicts_with_subcommands = true)]
    Time {
        #[command(subcommand)]
        action: Option<TimeAction>,
        /// A strftime format, e.g. "%H:%M:%S" (default "%Y-%m-%d %H:%M:%S").
        format: Option<String>,
    },
    /// Datagram chat with the device: type lines, see replies and the device's chat events; or
    /// one message with --message.
    Chat {
        /// Send this one message and exit.
        #[arg(short, long)]
        message: Option<String>,
        /// Your nickname.
        #[arg(long, default_value = "host")]
        from: String,
    },
    /// Subscribe to the device's events and print them as they arrive.
    Listen {
        /// Stop after this many events.
        #[arg(short = 'n', long)]
        count: Option<u32>,
        /// Stop after this long, e.g. 10s.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Measure echo latency and upload/download throughput.
    Bench {
        /// Echo round trips for the latency figures.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        /// Bytes to upload and download, e.g. 32M, 512K.
        #[arg(long, default_value = "32M", value_parser = parse_size)]
        size: u64,
        /// Repeat each transfer this many times and report the best.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
    },
    /// List the devices named in the config file.
    Devices,
    /// Find devices: a discovery probe (UDP) to each address of WHERE, merged into one table
    /// (--json: one object per device). WHERE is an address, a range (127.0.1.1-16,
    /// 127.0.1.1-127.0.2.0) or a broadcast address (255.255.255.255, or NET/PREFIX for that
    /// subnet's), each with an optional :PORT (default --udp-port, else 7071). When WHERE has a
    /// broadcast address (as the default has), it also browses mDNS for `_tether._tcp` and
    /// `_tether._udp` and merges the answers by device id (found_by `mdns`); with --serial (or
    /// serial:PATH in WHERE) it asks serial ports `Hello` (found_by `serial`). Waits --timeout
    /// (default 2s) for answers, less when every address probed has answered and mDNS is off.
    Discover {
        /// Where to look (default: `discover` in the config file, else 255.255.255.255 and
        /// 127.0.0.1).
        #[arg(value_name = "WHERE")]
        scope: Vec<String>,
        /// Do not browse mDNS (only the probes).
        #[arg(long, conflicts_with = "mdns")]
        no_mdns: bool,
        /// Browse mDNS even when WHERE has no broadcast address.
        #[arg(long)]
        mdns: bool,
        /// Also ask the USB serial ports the OS lists (/dev/ttyUSB*, /dev/ttyACM*, …) `Hello`;
        /// a port named in WHERE as serial:PATH[@BAUD] is asked without it.
        #[arg(long)]
        serial: bool,
    },
    /// Write a new random pre-shared key to FILE (mode 600): give the same file to the device
    /// (`sim --key-file FILE`) and to host-cli (--key-file FILE, TETHER_KEY_FILE, or `key_file`
    /// in the config file). The key itself is never printed.
    Keygen {
        /// The key file to create.
        file: PathBuf,
        /// Replace FILE if it exists (the old key stops working: devices holding it must be
        /// given the new one).
        #[arg(long)]
        force: bool,
    },
    /// Firmware update: keys, signed images, and the device's two slots (docs/CLI.md).
    Fw {
        #[command(subcommand)]
        action: crate::cmd::firmware::FwAction,
    },
    /// Reset the device: it reboots (on a device with firmware slots, into the image they pick).
    Reset,
    /// Print a shell completion script (see docs/CLI.md for where to put it).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TimeAction {
    /// Set the device clock from this PC's clock.
    Set,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        // Every unit of the range the error names (1ms to 24h).
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("25h").unwrap_err().contains("1ms to 24h"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn version_names_the_protocol_version() {
        assert!(VERSION.ends_with(&format!("(Tether protocol v{})", tether_core::wire::VERSION)));
    }
}
