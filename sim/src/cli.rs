//! Command-line syntax of `sim`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tether_host::units::parse_size as size;

/// The Tether device, simulated: tether-core's server on smoltcp, reachable from this PC.
///
/// With no arguments the device sits on a virtual Ethernet link inside this process, and a
/// second smoltcp stack forwards 127.0.0.1:7070 (TCP), :7071 (UDP) and the plain ports :8080,
/// :8081, :8082 (TCP), :9000, :9001 (UDP) to it —
/// no root needed. Then: `host-cli send hello`. Without --key-file the device is open (anyone
/// who can reach it can change it); with `--key-file FILE` it requires that key (`host-cli
/// --key-file FILE send hello`) and leaves the plain ports off.
#[derive(Debug, Parser)]
#[command(name = "sim", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Put the device on this Linux TAP interface instead (needs CAP_NET_ADMIN). With
    /// --devices N, all of them on its segment, from --ip on.
    #[arg(long, value_name = "NAME")]
    pub tap: Option<String>,

    /// Take the device's address from a DHCP server on the TAP segment (with --tap): discovery
    /// starts at link-up; a lease with another address closes every session. --ip, if given, is
    /// the fallback used when no lease came within --dhcp-timeout (the search goes on, and a
    /// later lease replaces it). With --devices N, each device its own lease; device i's
    /// fallback is the i-th address from --ip.
    #[arg(long, requires = "tap", help_heading = "DHCP")]
    pub dhcp: bool,

    /// Seconds without a lease before the --ip fallback is applied.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", requires = "dhcp", help_heading = "DHCP",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub dhcp_timeout: u64,

    /// Keep a lease at most this long before renewing it (renewal at half): below the server's
    /// lease time, to see renewals sooner. Default: the server's.
    #[arg(long, value_name = "SECONDS", requires = "dhcp", help_heading = "DHCP",
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub dhcp_max_lease: Option<u64>,

    /// Do not announce the device by mDNS on the TAP segment (with --tap it announces
    /// `_tether._tcp` and `_tether._udp`, TXT keys name, id, protocol, firmware, board, key, and
    /// answers resolvers such as avahi and `host-cli discover`).
    #[arg(long, requires = "tap")]
    pub no_mdns: bool,

    /// Device address with prefix (default 169.254.70.2/24: a link-local address on the virtual
    /// link). With --dhcp: the fallback address (none unless given).
    #[arg(long, value_name = "CIDR")]
    pub ip: Option<String>,

    /// Gateway address (default 169.254.70.1: the forwarder's address on the virtual link).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,

    /// PC address the forwarded ports listen on (rootless mode; default 127.0.0.1). With
    /// --devices N, the first device's address (default 127.0.1.1): device i listens on the
    /// i-th address from it.
    #[arg(long, value_name = "IP")]
    pub listen: Option<IpAddr>,

    /// Framed TCP port (the PC side in rootless mode; the device's own with --tap).
    #[arg(long, default_value_t = 7070)]
    pub tcp_port: u16,

    /// Framed UDP port.
    #[arg(long, default_value_t = 7071)]
    pub udp_port: u16,

    /// Plain upper-echo TCP port.
    #[arg(long, default_value_t = 8080)]
    pub plain_tcp_port: u16,

    /// Plain time UDP port.
    #[arg(long, default_value_t = 9000)]
    pub plain_udp_port: u16,

    /// Plain remote-command TCP port: 4-byte length, then the output.
    #[arg(long, default_value_t = 8081)]
    pub plain_command_port: u16,

    /// Plain remote-command TCP port: 4-byte length, JSON header, then the output.
    #[arg(long, default_value_t = 8082)]
    pub plain_command_json_port: u16,

    /// Plain chat UDP port.
    #[arg(long, default_value_t = 9001)]
    pub plain_chat_port: u16,

    /// Upper-echo clients served at once (1 to 5; the pool keeps one socket more, so a client
    /// that reconnects at once is never refused).
    #[arg(long, default_value_t = 4)]
    pub plain_clients: usize,

    /// Leave the plain-socket services off (they are always off with --key-file: they have no
    /// authentication).
    #[arg(long)]
    pub no_plain: bool,

    /// Probability that a frame on the link is lost, e.g. 0.05.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub loss: f64,

    /// Probability that a frame on the link gets one bit flipped, e.g. 0.01.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub corrupt: f64,

    /// Probability that a byte the rootless forwarder relays over TCP gets one bit flipped, e.g.
    /// 1e-5. Unlike --corrupt (caught by TCP's checksum) this reaches Tether's own CRCs.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub stream_corrupt: f64,

    /// Link MTU in bytes (IP packet size).
    #[arg(long, default_value_t = 65_000)]
    pub mtu: usize,

    /// Seed for the link faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Capture the link's frames to this pcap file (opens in tshark and Wireshark).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Store files in this directory (sandboxed to it) instead of RAM.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Storage capacity, e.g. 64M.
    #[arg(long, default_value = "256M", value_parser = size)]
    pub capacity: u64,

    /// Receive and transmit buffer of every TCP socket, e.g. 256K.
    #[arg(long, default_value = "256K", value_parser = size)]
    pub socket_buffer: u64,

    /// Emulate a board without a real-time clock: the device clock starts at 1970-01-01 and
    /// reports itself unset until a host sets it (by default it starts from this PC's UTC clock).
    #[arg(long)]
    pub no_rtc: bool,

    /// Require this pre-shared key (a file of 64 hex digits; `host-cli keygen FILE` writes one):
    /// every TCP and serial session must complete the handshake and is sealed; framed UDP serves
    /// only hello, discover, echo and the time read (no clock setting, messages or subscriptions), and the
    /// plain-socket services are off. Without a key the device is open: anyone who can reach it
    /// can change it.
    #[arg(long, env = "TETHER_SIM_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Take firmware updates signed with this key (the KEY.pub of `host-cli fw keygen KEY`): the
    /// device gets two firmware slots and a state record, in files under --root (its
    /// `.tether-fw/`) or in a temporary directory, starting with a built-in image, version 0.0.0.
    /// The simulator runs no image: `host-cli reset` boots the image the slots pick (a trial, or
    /// a revert) and the device reports its slot and version.
    #[arg(long, value_name = "FILE")]
    pub fw_key: Option<PathBuf>,

    /// The board id images must name (with --fw-key).
    #[arg(long, value_name = "ID", default_value = "tether-sim", requires = "fw_key")]
    pub fw_board: String,

    /// Accept images whose security counter is below the device's (with --fw-key).
    #[arg(long, requires = "fw_key")]
    pub fw_allow_downgrade: bool,

    /// Reset sessions idle for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub idle_timeout: u64,

    /// Reset a session whose frame has not arrived complete this many seconds after its first
    /// byte (drip-feeding peers).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_timeout: u64,

    /// Also serve Tether over a serial line: with no PATH on a new pseudo-terminal (its path is
    /// printed), with PATH on that existing tty. The network keeps running; both share the device.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub serial: Option<Option<PathBuf>>,

    /// Pace the serial line like a real UART at this many baud (10 bits a byte); unpaced without.
    #[arg(long, value_name = "N", requires = "serial", value_parser = clap::value_parser!(u32).range(300..=12_000_000))]
    pub baud: Option<u32>,

    /// Probability that a byte on the serial line is lost (each direction, seeded by --seed).
    #[arg(long, default_value_t = 0.0, value_parser = probability, requires = "serial")]
    pub serial_loss: f64,

    /// Probability that a byte on the serial line has a bit flipped (each direction).
    #[arg(long, default_value_t = 0.0, value_parser = probability, requires = "serial")]
    pub serial_corrupt: f64,

    /// Type replies to incoming datagram messages on stdin (each line also goes out as a
    /// `chat` event to subscribers).
    #[arg(long)]
    pub chat: bool,

    /// Simulate N devices (1 to 256) in this process on one virtual Ethernet switch: sim-001,
    /// sim-002, … each with its own MAC and IP address (from --ip on, default 169.254.70.2/16),
    /// store (under --root, its own directory) and clock, answering on its own loopback
    /// address (see --listen) on the usual ports; with --tap, on the TAP's segment at its own
    /// address on the usual ports. No --serial or --chat.
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = "Many devices",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub devices: u16,

    /// With --devices N: each device requires its own key, read from DIR/NAME.key
    /// (DIR/sim-001.key, …), instead of the one --key-file for all.
    #[arg(long, value_name = "DIR", conflicts_with = "key_file", help_heading = "Many devices")]
    pub key_dir: Option<PathBuf>,

    /// More logging: -v sessions, relays and requests; -vv also every upload chunk; -vvv smoltcp.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service once and a large upload/download over smoltcp's loopback; print a
    /// table; exit non-zero on any failure.
    Selftest {
        /// Transfer size, e.g. 16M.
        #[arg(long, default_value = "16M", value_parser = size)]
        size: u64,
        /// Socket buffer size, e.g. 64K.
        #[arg(long, default_value = "64K", value_parser = size)]
        socket_buffer: u64,
    },
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability between 0 and 1")),
    }
}
