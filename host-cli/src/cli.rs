//! Command-line syntax.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tether_host::units::parse_size;

/// Talk to a Tether device: framed messages over TCP and UDP.
///
/// Start the simulator with `cargo run --release --bin sim`, then try `host-cli send hello`.
///
/// Exit codes: 0 success, 1 the device answered with an error, 2 usage or local file problem,
/// 3 connection failure or timeout.
#[derive(Debug, Parser)]
#[command(name = "host-cli", version, propagate_version = true)]
pub struct Args {
    /// Device address: HOST[:PORT] for TCP (port default 7070), or serial:PATH[@BAUD] for a serial
    /// line (baud default 115200), e.g. serial:/dev/ttyUSB0@921600 or the pty `sim --serial` prints.
    #[arg(
        long,
        global = true,
        env = "TETHER_TO",
        default_value = "127.0.0.1:7070",
        value_name = "HOST[:PORT]|serial:PATH[@BAUD]"
    )]
    pub to: String,

    /// The device's framed UDP port (time, chat, listen).
    #[arg(
        long,
        global = true,
        env = "TETHER_UDP_PORT",
        default_value_t = 7071,
        value_name = "PORT"
    )]
    pub udp_port: u16,

    /// How long to wait for the device, e.g. 500ms, 5s, 1m.
    #[arg(long, global = true, env = "TETHER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// One JSON object per result (per line for streams), for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only results, no progress or notes.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more about what happens.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
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
        /// How many round trips.
        #[arg(short, long, default_value_t = 4)]
        count: u32,
    },
    /// Show what the device is: name, limits, storage, uptime, commands.
    Info,
    /// Run a command registered on the device; exits with its status.
    Exec {
        /// The command (see `host-cli exec help`).
        command: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Upload a file; it becomes visible on the device only once its size and SHA-256 match.
    Put {
        /// The local file.
        local: PathBuf,
        /// Name on the device (default: the local file name).
        remote: Option<String>,
        /// Replace a file of that name.
        #[arg(long)]
        overwrite: bool,
        /// Continue an interrupted upload where the device has it (the default whenever the
        /// device holds one; the flag makes it explicit).
        #[arg(long)]
        resume: bool,
        /// Reconnect and resume this many times after a dropped connection.
        #[arg(long, default_value_t = 0)]
        retries: u32,
    },
    /// Download a file; it is written as LOCAL.part and renamed once its SHA-256 matches.
    Get {
        /// Name on the device.
        remote: String,
        /// The local file (default: the remote name in the current directory).
        local: Option<PathBuf>,
        /// Continue from an existing LOCAL.part.
        #[arg(long)]
        resume: bool,
        /// Reconnect and resume this many times after a dropped connection.
        #[arg(long, default_value_t = 0)]
        retries: u32,
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
    /// Datagram chat with the device: type lines, see replies; or one message with --message.
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
        #[arg(long, default_value_t = 1000)]
        rounds: u32,
        /// Bytes to upload and download, e.g. 32M, 512K.
        #[arg(long, default_value = "32M", value_parser = parse_size)]
        size: u64,
        /// Repeat each transfer this many times and report the best.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum TimeAction {
    /// Set the device clock from this PC's clock.
    Set,
}

/// Parses `250ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 5s or 1m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("unknown unit `{unit}` (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
