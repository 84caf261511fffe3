//! The application: memory layout, network set-up, the command table and the main loop.

use core::fmt::Write as _;

use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Device as _, TxToken as _};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress,
    Ipv4Address,
};
use static_cell::{ConstStaticCell, StaticCell};
#[cfg(feature = "dhcp")]
use tether_core::dhcp::{Dhcp, DhcpConfig};
use tether_core::outln;
use tether_core::server::{PlainSockets, Server, ServerConfig, Sockets};
use tether_core::service::builtin;
use tether_core::service::exec::{Call, Command, Output, Status};
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Context, Device, DeviceConfig};

use crate::clock::Clock;
use crate::config::STORE_KIB;
use crate::lan9118::{Counters, Lan9118};
use crate::link::{self, Link};
use crate::mmio::FPGAIO;
use crate::rt;
use crate::uart::{Console, Serial};

/// Largest frame (header + metadata + body) in either direction. Each session holds two
/// frames (decoder buffer and staged response), the serial driver three (and its unframer's).
/// 1.5 KiB since the serial session joined the two TCP sessions: 2 KiB frames cost 3.5 KiB more
/// static RAM than the 48 KiB budget has (upload and download chunks are 1.4 KiB instead of
/// 1.9 KiB, so a transfer takes a third more frames).
pub const MAX_FRAME: usize = 1536;
/// Framed TCP sessions served at once.
pub const SESSIONS: usize = 2;
/// Files and pending uploads the RAM store can hold.
pub const FILES: usize = 8;
/// Bytes of the RAM file store.
pub const STORE_BYTES: usize = STORE_KIB * 1024;

/// Receive buffer of each TCP socket (the window it advertises). QEMU's LAN9118 RX FIFO holds
/// about 10.5 KB and drops frames when full, so the busy TCP sockets (two sessions, the spare
/// listener, the first echo socket) together advertise less: 4 x 2 KiB plus frame overhead. (It
/// was 2.5 KiB before the serial session had to fit the RAM budget; 2 KiB is still more than a
/// frame and more than one segment.)
pub const TCP_RX: usize = 2048;
/// Transmit buffer of each framed TCP socket: more than one frame (1.5 KiB), so a stream frame
/// can be staged while the previous one is still unacknowledged.
pub const TCP_TX: usize = 2560;
/// Transmit buffer of the first plain upper-echo socket: 2 KiB. It was 8 KiB; 4 KiB once the
/// remote-command and chat ports had their sockets, and 2 KiB since the serial port's driver, a
/// second 7.5 KiB session, has to fit the 48 KiB static RAM budget too. An echo keeps data in
/// flight both ways, so the echo runs below the chip's pace in QEMU; `scripts/firmware.sh bench`
/// uses it as the baseline and docs/BENCHMARKS.md says what that costs. A board that does not
/// care about the plain port's speed can give it 1 KiB.
pub const PLAIN_TCP_TX: usize = 2048;
/// One framed UDP request: every request datagram is padded to `msg::MAX_DATAGRAM` (1 KiB), so
/// more would hold only a fraction of a second one (a request that finds the ring full is dropped
/// and repeated by its host).
const UDP_RX: usize = tether_core::msg::MAX_DATAGRAM;
/// One framed UDP response of the largest size (`server::DATAGRAM_MAX`); smoltcp empties the
/// ring after each datagram it sends, so a full-size one always fits.
const UDP_TX: usize = tether_core::server::DATAGRAM_MAX;
const UDP_META: usize = 4;
/// More upper-echo sockets beside the first, with small buffers: a second client at once, or
/// room for a client that reconnects before its previous connection has finished closing.
const ECHO_SPARES: usize = 1;
const ECHO_SPARE_RX: usize = 512;
const ECHO_SPARE_TX: usize = 512;
/// One socket per remote-command port. The receive buffer holds a command line (at most 256
/// bytes); the transmit buffer holds a whole reply, so a command's output on these ports is
/// at most `COMMAND_TX - REPLY_HEADER_ROOM` (636) bytes: enough for `help`, `stats`, `net`.
#[cfg(feature = "plain-actors")]
const COMMAND_RX: usize = 256;
#[cfg(feature = "plain-actors")]
const COMMAND_TX: usize = 768;
const PLAIN_UDP_RX: usize = 256;
/// The plain time and chat replies are a formatted time or one short line.
const PLAIN_UDP_TX: usize = 256;
const PLAIN_UDP_META: usize = 2;
/// 1 when the plain ports that act on the device, the two remote-command ports and plain chat,
/// are served; 0 on a board with a key (feature `secure`). They have no authentication of their
/// own (they are the tutorials' protocols), so on a keyed board they would let anyone who can
/// reach it run commands and inject messages; the upper-echo port (touches nothing) and the
/// plain time port (reads the clock) stay. Leaving them out also pays for the secure sessions'
/// static RAM (2.5 KiB of buffers; docs/BENCHMARKS.md). A keyed image built without feature
/// `plain-actors` (as `scripts/firmware.sh` builds them) does not even carry their code.
const PLAIN_ACTORS: usize = if cfg!(feature = "secure") || !cfg!(feature = "plain-actors") {
    0
} else {
    1
};
/// Sockets: the sessions and the spare listener, framed UDP, the echo pool, plain time, and
/// (open boards only) two command ports and plain chat.
/// The DHCP client's socket (feature `dhcp`).
const DHCP_SOCKETS: usize = if cfg!(feature = "dhcp") { 1 } else { 0 };
/// The mDNS responder's socket (feature `mdns`).
const MDNS_SOCKETS: usize = if cfg!(feature = "mdns") { 1 } else { 0 };
const SOCKETS: usize = SESSIONS + 1 + 1 + (1 + ECHO_SPARES) + 1 + 3 * PLAIN_ACTORS + DHCP_SOCKETS + MDNS_SOCKETS;

/// QEMU user-mode networking: the device's address, and the gateway every forwarded
/// connection comes from (these addresses exist only inside the emulator). With feature `dhcp`
/// they are the fallback, used when no lease came within `DHCP_FALLBACK_MS` (QEMU's DHCP server
/// hands out this same address first).
const IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const PREFIX: u8 = 24;
const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
/// Used only when the chip has no valid address from its EEPROM (QEMU provides one).
const FALLBACK_MAC: [u8; 6] = [0x02, 0x54, 0x48, 0x00, 0x02, 0x0F];
/// The gateway's neighbour-cache entry lives 60 s in smoltcp; asking again every 30 s keeps it
/// fresh, so no reply to a new connection waits for ARP.
const ARP_REFRESH: Duration = Duration::from_secs(30);
/// How long the board waits for a lease before it takes the static address (feature `dhcp`).
#[cfg(feature = "dhcp")]
const DHCP_FALLBACK_MS: u64 = 10_000;

/// The socket buffers: all zeros at start, so they sit in `.bss` and cost no flash.
struct Buffers {
    session_rx: [[u8; TCP_RX]; SESSIONS + 1],
    session_tx: [[u8; TCP_TX]; SESSIONS + 1],
    plain_rx: [u8; TCP_RX],
    plain_tx: [u8; PLAIN_TCP_TX],
    echo_rx: [[u8; ECHO_SPARE_RX]; ECHO_SPARES],
    echo_tx: [[u8; ECHO_SPARE_TX]; ECHO_SPARES],
    #[cfg(feature = "plain-actors")]
    command_rx: [[u8; COMMAND_RX]; 2 * PLAIN_ACTORS],
    #[cfg(feature = "plain-actors")]
    command_tx: [[u8; COMMAND_TX]; 2 * PLAIN_ACTORS],
    udp_rx: [u8; UDP_RX],
    udp_tx: [u8; UDP_TX],
    plain_udp_rx: [u8; PLAIN_UDP_RX],
    plain_udp_tx: [u8; PLAIN_UDP_TX],
    #[cfg(feature = "plain-actors")]
    chat_rx: [[u8; PLAIN_UDP_RX]; PLAIN_ACTORS],
    #[cfg(feature = "plain-actors")]
    chat_tx: [[u8; PLAIN_UDP_TX]; PLAIN_ACTORS],
}

/// The small tables whose initial values are not zero; filled at start-up (a `.data`
/// initializer would be a copy of them in flash).
struct Tables {
    udp_rx_meta: [udp::PacketMetadata; UDP_META],
    udp_tx_meta: [udp::PacketMetadata; UDP_META],
    plain_udp_rx_meta: [udp::PacketMetadata; PLAIN_UDP_META],
    plain_udp_tx_meta: [udp::PacketMetadata; PLAIN_UDP_META],
    #[cfg(feature = "plain-actors")]
    chat_rx_meta: [[udp::PacketMetadata; PLAIN_UDP_META]; PLAIN_ACTORS],
    #[cfg(feature = "plain-actors")]
    chat_tx_meta: [[udp::PacketMetadata; PLAIN_UDP_META]; PLAIN_ACTORS],
    sockets: [SocketStorage<'static>; SOCKETS],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    session_rx: [[0; TCP_RX]; SESSIONS + 1],
    session_tx: [[0; TCP_TX]; SESSIONS + 1],
    plain_rx: [0; TCP_RX],
    plain_tx: [0; PLAIN_TCP_TX],
    echo_rx: [[0; ECHO_SPARE_RX]; ECHO_SPARES],
    echo_tx: [[0; ECHO_SPARE_TX]; ECHO_SPARES],
    #[cfg(feature = "plain-actors")]
    command_rx: [[0; COMMAND_RX]; 2 * PLAIN_ACTORS],
    #[cfg(feature = "plain-actors")]
    command_tx: [[0; COMMAND_TX]; 2 * PLAIN_ACTORS],
    udp_rx: [0; UDP_RX],
    udp_tx: [0; UDP_TX],
    plain_udp_rx: [0; PLAIN_UDP_RX],
    plain_udp_tx: [0; PLAIN_UDP_TX],
    #[cfg(feature = "plain-actors")]
    chat_rx: [[0; PLAIN_UDP_RX]; PLAIN_ACTORS],
    #[cfg(feature = "plain-actors")]
    chat_tx: [[0; PLAIN_UDP_TX]; PLAIN_ACTORS],
});
static TABLES: StaticCell<Tables> = StaticCell::new();

/// The mDNS responder's socket buffers (feature `mdns`): a query or two in, one message out
/// (`mdns::MESSAGE_MAX`).
#[cfg(feature = "mdns")]
struct MdnsBuffers {
    rx: [u8; 1536],
    tx: [u8; tether_core::mdns::MESSAGE_MAX],
    rx_meta: [udp::PacketMetadata; 2],
    tx_meta: [udp::PacketMetadata; 1],
}
#[cfg(feature = "mdns")]
static MDNS_BUFFERS: StaticCell<MdnsBuffers> = StaticCell::new();
#[cfg(feature = "mdns")]
static MDNS: StaticCell<tether_core::mdns::Mdns> = StaticCell::new();

/// The responder on its socket, in a static (its message buffer is 1 KiB).
#[cfg(feature = "mdns")]
#[inline(never)]
fn init_mdns(set: &mut SocketSet<'static>) -> &'static mut tether_core::mdns::Mdns {
    let b = MDNS_BUFFERS.init(MdnsBuffers {
        rx: [0; 1536],
        tx: [0; tether_core::mdns::MESSAGE_MAX],
        rx_meta: [udp::PacketMetadata::EMPTY; 2],
        tx_meta: [udp::PacketMetadata::EMPTY; 1],
    });
    let socket = udp::Socket::new(
        udp::PacketBuffer::new(&mut b.rx_meta[..], &mut b.rx[..]),
        udp::PacketBuffer::new(&mut b.tx_meta[..], &mut b.tx[..]),
    );
    MDNS.init(tether_core::mdns::Mdns::new("mps2-an386", socket, set))
}
/// The RAM file store: the one buffer whose size is chosen at build time.
static STORE: ConstStaticCell<[u8; STORE_BYTES]> = ConstStaticCell::new([0; STORE_BYTES]);
static NIC: StaticCell<Lan9118> = StaticCell::new();
static IFACE: StaticCell<Interface> = StaticCell::new();
static SERVER: StaticCell<FwServer> = StaticCell::new();

/// The device (services and their state) of this firmware, shared by every transport.
pub type FwDevice = Device<'static, FwCtx, RamStore<'static, FILES>>;
/// The server type of this firmware.
pub type FwServer = Server<'static, FwCtx, RamStore<'static, FILES>, MAX_FRAME, SESSIONS>;

/// What the commands work on.
#[derive(Debug, Default)]
pub struct FwCtx {
    led: bool,
    /// The NIC's counters, copied after every poll.
    net: Counters,
    /// Busy and idle time by pass (the `cost` command; `net` reports busy time from it).
    pub cost: crate::cost::Meter,
    /// The serial port's mode and counters.
    pub uart: link::Control,
    /// The firmware slots and the state record (feature `update`).
    #[cfg(feature = "update")]
    pub slots: crate::psram_slots::PsramSlots,
}

impl Context for FwCtx {
    #[cfg(feature = "update")]
    fn board(&mut self) -> Option<&mut dyn tether_core::update::Board> {
        Some(&mut self.slots)
    }

    /// A chat line (plain UDP chat or a framed message): an automatic acknowledgement.
    fn on_message(&mut self, from: &str, text: &str, reply: &mut Output<'_>) {
        let _ = write!(reply, "got {} bytes from {from}", text.len());
    }
}

fn led(ctx: &mut FwCtx, call: &mut Call<'_>) -> Status {
    if let Err(status) = builtin::switch("led", &mut ctx.led, call) {
        return status;
    }
    // User LED 0 of the MPS2 FPGA I/O block.
    FPGAIO.write(0, u32::from(ctx.led));
    outln!(call.out, "led {}", if ctx.led { "on" } else { "off" });
    Status::Done(0)
}

fn net(ctx: &mut FwCtx, call: &mut Call<'_>) -> Status {
    let n = &ctx.net;
    outln!(
        call.out,
        "rx frames {}  errors {}  dropped {}",
        n.rx_frames,
        n.rx_errors,
        n.rx_dropped
    );
    outln!(
        call.out,
        "tx frames {}  errors {}  fifo-waits {}",
        n.tx_frames,
        n.tx_errors,
        n.tx_waits
    );
    let idle_ms = ctx.cost.idle_since_boot / 25_000;
    outln!(
        call.out,
        "cpu busy {} ms of {} ms",
        call.uptime_ms.saturating_sub(idle_ms),
        call.uptime_ms
    );
    Status::Done(0)
}

const LED: Command<FwCtx> = Command {
    name: "led",
    help: "on|off|toggle|status: user LED 0",
    run: led,
};

const NET: Command<FwCtx> = Command {
    name: "net",
    help: "LAN9118 frame and error counters",
    run: net,
};

const UART: Command<FwCtx> = Command {
    name: "uart",
    help: "status|echo|tether: the serial port's counters, or what it serves",
    run: link::command,
};

/// The firmware's commands (`help` is built in, `stack` reports the stack's high-water mark); with
/// feature `secure` the secure-session self-test `noise`, with feature `cost` the instruction
/// meter's report `cost`.
pub static COMMANDS: &[Command<FwCtx>] = &[
    builtin::uptime_command(),
    builtin::stats_command(),
    LED,
    NET,
    UART,
    crate::stack::stack_command(),
    #[cfg(feature = "cost")]
    crate::cost::COMMAND,
    #[cfg(feature = "secure")]
    crate::noise::COMMAND,
    #[cfg(feature = "cut")]
    crate::update::CUT_COMMAND,
];

fn tcp_socket(rx: &'static mut [u8], tx: &'static mut [u8]) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    // The windows are small (see TCP_RX): acknowledge at once rather than after smoltcp's
    // default 10 ms, so the peer never idles waiting for an ACK that frees its window.
    s.set_ack_delay(None);
    s
}

/// Asks who has the gateway's address: QEMU's user-mode network answers, and smoltcp then
/// knows where to send its replies before the first forwarded SYN arrives (otherwise it drops
/// the SYN-ACK to ask, and the peer retries only after a second).
fn arp_request(nic: &mut Lan9118, now: Instant, (source, gateway): (Ipv4Address, Ipv4Address)) {
    let mac = EthernetAddress(nic.mac());
    let Some(token) = nic.transmit(now) else { return };
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: source,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: gateway,
    };
    let len = EthernetFrame::<&[u8]>::buffer_len(repr.buffer_len());
    token.consume(len, |buf| {
        let mut frame = EthernetFrame::new_unchecked(buf);
        frame.set_dst_addr(EthernetAddress::BROADCAST);
        frame.set_src_addr(mac);
        frame.set_ethertype(EthernetProtocol::Arp);
        repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    });
}

// The largest statics are built in functions of their own (not inlined), so that each one's
// temporary on the stack is given back before the next is built, rather than all of them sitting
// in `start`'s frame at once: the boot's high-water mark of the stack (docs/BENCHMARKS.md, "Stack").

#[inline(never)]
fn init_nic() -> &'static mut Lan9118 {
    NIC.init(Lan9118::new(FALLBACK_MAC).unwrap_or_else(|e| panic!("LAN9118 did not come up: {e:?}")))
}

#[inline(never)]
fn init_tables() -> &'static mut Tables {
    TABLES.init(Tables {
        udp_rx_meta: [udp::PacketMetadata::EMPTY; UDP_META],
        udp_tx_meta: [udp::PacketMetadata::EMPTY; UDP_META],
        plain_udp_rx_meta: [udp::PacketMetadata::EMPTY; PLAIN_UDP_META],
        plain_udp_tx_meta: [udp::PacketMetadata::EMPTY; PLAIN_UDP_META],
        #[cfg(feature = "plain-actors")]
        chat_rx_meta: [[udp::PacketMetadata::EMPTY; PLAIN_UDP_META]; PLAIN_ACTORS],
        #[cfg(feature = "plain-actors")]
        chat_tx_meta: [[udp::PacketMetadata::EMPTY; PLAIN_UDP_META]; PLAIN_ACTORS],
        sockets: [SocketStorage::EMPTY; SOCKETS],
    })
}

#[inline(never)]
fn init_server(
    config: ServerConfig,
    device: FwDevice,
    sockets: Sockets<'static, SESSIONS>,
    set: &mut SocketSet<'static>,
) -> &'static mut FwServer {
    SERVER.init(Server::new(config, device, sockets, set))
}

/// What start-up hands to the main loop.
struct Board {
    nic: &'static mut Lan9118,
    iface: &'static mut Interface,
    server: &'static mut FwServer,
    set: SocketSet<'static>,
    port: Link,
    clock: Clock,
    next_arp: Instant,
    /// Who the ARP refresh asks about, from which address: none while DHCP has no address.
    arp: Option<(Ipv4Address, Ipv4Address)>,
    #[cfg(feature = "dhcp")]
    dhcp: Dhcp,
    /// Whether the link was up at the last look (feature `dhcp`: discovery restarts at link-up).
    #[cfg(feature = "dhcp")]
    link: bool,
    #[cfg(feature = "mdns")]
    mdns: &'static mut tether_core::mdns::Mdns,
}

/// Brings the board up and serves forever.
pub fn run() -> ! {
    serve(start())
}

/// Brings the board up. A function of its own, not inlined: the temporaries of the start-up
/// (the server, the sockets and the drivers are built on the stack and then moved into their
/// statics, 31 KB of them) live in its frame, which is given back before the main loop runs; as
/// part of `run`, whose frame lasts forever, they held 31 KB of stack for good
/// (docs/BENCHMARKS.md, "Stack").
#[inline(never)]
fn start() -> Board {
    let mut cp = cortex_m::Peripherals::take().expect("core peripherals");
    let mut con = Console::init();
    let _ = writeln!(
        con,
        "\ntether-fw {} on mps2-an386 (Cortex-M4, LAN9118)",
        env!("CARGO_PKG_VERSION")
    );

    #[cfg(feature = "update")]
    let running = crate::update::running(&mut crate::psram_slots::PsramSlots::default(), &mut con);
    // Test build (feature `hang`): an image that hangs at start, before it ever feeds the
    // watchdog; the watchdog must reset it and the boot stage revert it.
    #[cfg(feature = "hang")]
    crate::update::hang(&mut con);

    let nic = init_nic();
    let link = nic.link_up().unwrap_or(false);
    let mut clock = Clock::new(nic);
    let now = clock.now(nic);

    let mac = EthernetAddress(nic.mac());
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = u64::from(nic.free_run()) ^ 0x7e7e_4e52_0000_0000;
    let iface = IFACE.init(Interface::new(config, nic, now));
    // With DHCP the interface starts without an address: the lease (or the fallback) gives it one.
    #[cfg(not(feature = "dhcp"))]
    {
        iface.update_ip_addrs(|a| {
            let _ = a.push(smoltcp::wire::IpCidr::new(IP.into(), PREFIX));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(GATEWAY);
    }

    let b = BUFFERS.take();
    let t = init_tables();
    let [rx0, rx1, rx2] = &mut b.session_rx;
    let [tx0, tx1, tx2] = &mut b.session_tx;
    let sessions = [tcp_socket(rx0, tx0), tcp_socket(rx1, tx1)];
    let spare = tcp_socket(rx2, tx2);
    let mut plain = PlainSockets::default();
    // The large socket first: smoltcp gives a new connection to the first listening socket.
    let _ = plain.echo.push(tcp_socket(&mut b.plain_rx, &mut b.plain_tx));
    for (rx, tx) in b.echo_rx.iter_mut().zip(b.echo_tx.iter_mut()) {
        let _ = plain.echo.push(tcp_socket(rx, tx));
    }
    // Pairs of remote-command sockets (none on a keyed board): one per port.
    #[cfg(feature = "plain-actors")]
    {
        let mut commands = b.command_rx.iter_mut().zip(b.command_tx.iter_mut());
        while let (Some((rx0, tx0)), Some((rx1, tx1))) = (commands.next(), commands.next()) {
            let _ = plain.command.push(tcp_socket(rx0, tx0));
            let _ = plain.command_json.push(tcp_socket(rx1, tx1));
        }
    }
    let udp = udp::Socket::new(
        udp::PacketBuffer::new(&mut t.udp_rx_meta[..], &mut b.udp_rx[..]),
        udp::PacketBuffer::new(&mut t.udp_tx_meta[..], &mut b.udp_tx[..]),
    );
    plain.time = Some(udp::Socket::new(
        udp::PacketBuffer::new(&mut t.plain_udp_rx_meta[..], &mut b.plain_udp_rx[..]),
        udp::PacketBuffer::new(&mut t.plain_udp_tx_meta[..], &mut b.plain_udp_tx[..]),
    ));
    #[cfg(feature = "plain-actors")]
    {
        let chat = (t.chat_rx_meta.iter_mut().zip(t.chat_tx_meta.iter_mut()))
            .zip(b.chat_rx.iter_mut().zip(b.chat_tx.iter_mut()))
            .next();
        plain.chat = chat.map(|((rx_meta, tx_meta), (rx, tx))| {
            udp::Socket::new(
                udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
                udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
            )
        });
    }
    let mut set = SocketSet::new(&mut t.sockets[..]);
    #[cfg(feature = "dhcp")]
    let mut dhcp = {
        let fallback = Some((smoltcp::wire::Ipv4Cidr::new(IP, PREFIX), Some(GATEWAY)));
        let config = DhcpConfig {
            fallback,
            fallback_after_ms: DHCP_FALLBACK_MS,
            max_lease_ms: None,
        };
        Dhcp::new(config, &mut set, now)
    };
    #[cfg(feature = "dhcp")]
    dhcp.set_link(link, now, &mut set);
    #[cfg(feature = "mdns")]
    let mdns = init_mdns(&mut set);

    let store = RamStore::<FILES>::new(STORE.take());
    let device = Device::new(
        DeviceConfig {
            name: "mps2-an386",
            window: 4,
        },
        store,
        COMMANDS,
        FwCtx::default(),
        MAX_FRAME,
        SESSIONS as u8,
    );
    #[cfg(feature = "update")]
    let device = {
        let mut device = device;
        device.enable_update(crate::update::config(), running);
        device
    };
    // Secure sessions: every TCP and serial session must prove the provisioned key (build.rs).
    // Boot entropy: the free-running counter after the NIC's reset and start-up waits (its value
    // varies a little from boot to boot), and the board's identity; the SysTick counter joins once
    // it runs (below). See src/entropy.rs for what it is worth.
    #[cfg(feature = "secure")]
    let device = {
        let mut device = device;
        let mut boot = [0u8; 14];
        boot[..4].copy_from_slice(&nic.free_run().to_le_bytes());
        boot[4..8].copy_from_slice(&nic.id_rev().to_le_bytes());
        boot[8..].copy_from_slice(&mac.0);
        device.require_key(crate::entropy::lock(&boot));
        device
    };
    let config = ServerConfig::default();
    let sockets = Sockets {
        sessions,
        spare,
        udp,
        plain,
    };
    let server = init_server(config, device, sockets, &mut set);

    // Without DHCP the address is known now: ask for the gateway at once. With it, when the lease
    // (or the fallback) comes.
    let arp = if cfg!(feature = "dhcp") { None } else { Some((IP, GATEWAY)) };
    if let Some(pair) = arp {
        arp_request(nic, now, pair);
    }
    let next_arp = now + ARP_REFRESH;
    let port = Link::new(Serial::init(), config.limits);
    rt::enable_interrupts(&mut cp.SYST);

    let m = mac.0;
    let _ = writeln!(
        con,
        "mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}  chip {:#010x}  link {}",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        nic.id_rev(),
        if link { "up" } else { "down" }
    );
    #[cfg(feature = "dhcp")]
    let _ = writeln!(
        con,
        "ip from DHCP (fallback {IP}/{PREFIX} gw {GATEWAY} after {} s)",
        DHCP_FALLBACK_MS / 1000
    );
    #[cfg(not(feature = "dhcp"))]
    let _ = write!(con, "ip {IP}/{PREFIX} gw {GATEWAY}  ");
    let _ = writeln!(
        con,
        "tcp {} udp {}  plain: echo {} command {} {} time {} chat {}  frame {} B  sessions {}  store {} KiB",
        config.tcp_port,
        config.udp_port,
        config.plain_tcp_port,
        config.plain_command_port,
        config.plain_command_json_port,
        config.plain_udp_port,
        config.plain_chat_port,
        MAX_FRAME,
        SESSIONS,
        STORE_KIB
    );
    #[cfg(feature = "secure")]
    {
        let id = crate::entropy::key_id();
        let _ = writeln!(
            con,
            "secure sessions: key required (key id {:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}); plain command and chat ports closed; no hardware RNG, ephemeral keys from the provisioned seed and timing",
            id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]
        );
    }
    #[cfg(not(feature = "secure"))]
    let _ = writeln!(
        con,
        "OPEN: no key (built without feature `secure`), anyone who can reach this device can change it"
    );
    #[cfg(feature = "mdns")]
    let _ = writeln!(con, "mdns: announces _tether._tcp and _tether._udp (board mps2-an386)");
    let _ = writeln!(con, "tether-fw ready");
    // The counters after the boot messages went out through the console (its timing varies too);
    // SysTick has been counting since `enable_interrupts`. Mixed at once, not after 100 ms.
    #[cfg(feature = "secure")]
    if let Some(lock) = server.device.lock_mut() {
        let mut later = [0u8; 8];
        later[..4].copy_from_slice(&nic.free_run().to_le_bytes());
        later[4..].copy_from_slice(&cortex_m::peripheral::SYST::get_current().to_le_bytes());
        lock.mix_entropy(&later);
    }
    Board {
        nic,
        iface,
        server,
        set,
        port,
        clock,
        next_arp,
        arp,
        #[cfg(feature = "dhcp")]
        dhcp,
        #[cfg(feature = "dhcp")]
        link,
        #[cfg(feature = "mdns")]
        mdns,
    }
}

/// Prints an address change on the console: the address DHCP gave (tests watch for
/// `dhcp: leased`), the fallback, or a lost lease, and how many sessions the move closed.
#[cfg(feature = "dhcp")]
fn report_address(change: &tether_core::dhcp::Change) {
    use tether_core::dhcp::Source;
    let mut con = Console;
    let _ = match (change.address, change.source) {
        (Some(a), Source::Lease) => write!(con, "dhcp: leased {a}"),
        (Some(a), _) => write!(con, "dhcp: no lease: fallback address {a}"),
        (None, _) => write!(con, "dhcp: lease lost: no address"),
    };
    if let Some(r) = change.router {
        let _ = write!(con, " gateway {r}");
    }
    if change.moved() {
        let _ = write!(con, " ({} sessions closed)", change.sessions_closed);
    }
    let _ = writeln!(con);
}

/// The main loop.
fn serve(board: Board) -> ! {
    let Board {
        nic,
        iface,
        server,
        mut set,
        mut port,
        mut clock,
        mut next_arp,
        arp,
        #[cfg(feature = "dhcp")]
        mut dhcp,
        #[cfg(feature = "dhcp")]
        mut link,
        #[cfg(feature = "mdns")]
        mdns,
    } = board;
    // DHCP changes whom the ARP refresh asks about.
    #[cfg(feature = "dhcp")]
    let mut arp = arp;
    #[cfg(feature = "secure")]
    let mut pool = crate::entropy::Pool::new();
    // The line's session is open from boot (then it is served on its events, below).
    port.serve(clock.now(nic).total_millis() as u64, &mut server.device);
    // Feature `update`: when the reset asked for by `Reset` happens.
    #[cfg(feature = "update")]
    let mut reset_at: Option<u64> = None;
    loop {
        // The pass that ended here, to the meter: work if a frame or a UART byte moved in it.
        let (n, u) = (nic.counters(), server.device.ctx.uart.counters);
        let io = u64::from(n.rx_frames) + u64::from(n.tx_frames) + u.rx_bytes + u.tx_bytes;
        server.device.ctx.cost.pass(io);
        // The network is served when the LAN9118 or the tick woke us (the serial port's bytes
        // alone do not need a smoltcp poll). Acknowledge and rearm before serving: a frame
        // arriving from here on raises the interrupt again.
        let wakes = rt::take_wakes();
        server
            .device
            .ctx
            .cost
            .woke(wakes.tick && !wakes.network && !port.has_work());
        let now = clock.now(nic);
        // The time of every wake-up (a frame, a UART byte, the tick) into the entropy pool.
        #[cfg(feature = "secure")]
        {
            let segment = server.device.ctx.cost.segment();
            let mut mixed = false;
            if let Some(lock) = server.device.lock_mut() {
                pool.sample(nic.free_run() ^ cortex_m::peripheral::SYST::get_current().rotate_left(16));
                mixed = pool.mix_if_due(now.total_millis() as u64, lock);
            }
            if mixed {
                server.device.ctx.cost.housekeeping(segment);
            }
        }
        if wakes.network || wakes.tick {
            let segment = server.device.ctx.cost.segment();
            let frames = nic.counters().rx_frames.wrapping_add(nic.counters().tx_frames);
            nic.ack_interrupt();
            rt::rearm_network();
            server.poll(now, iface, nic, &mut set);
            #[cfg(feature = "dhcp")]
            if let Some(change) = server.poll_dhcp(&mut dhcp, now, iface, nic, &mut set) {
                report_address(&change);
                arp = change.address.zip(change.router).map(|(a, r)| (a.address(), r));
                if let Some(pair) = arp {
                    arp_request(nic, now, pair);
                }
            }
            // The announcements when the address is new, and the answers to resolvers.
            #[cfg(feature = "mdns")]
            mdns.poll(now, iface, &mut set, &server.device);
            server.device.ctx.net = nic.counters();
            if now >= next_arp {
                if let Some(pair) = arp {
                    arp_request(nic, now, pair);
                }
                nic.update_drop_count();
                // The link at the same pace: a cable plugged back in restarts DHCP discovery.
                #[cfg(feature = "dhcp")]
                {
                    let up = nic.link_up().unwrap_or(link);
                    dhcp.set_link(up, now, &mut set);
                    link = up;
                }
                next_arp = now + ARP_REFRESH;
            }
            // A poll that moved no frame (the tick's timers) is housekeeping for the meter.
            if nic.counters().rx_frames.wrapping_add(nic.counters().tx_frames) == frames {
                server.device.ctx.cost.housekeeping(segment);
            }
        }
        // The port when its handlers raised its event (a packet's end, a ring half full or half
        // drained) or its last pass moved something; on a tick only when it has a deadline due
        // (or raw echo has bytes): serving it on every tick would take whatever bytes the tick
        // happened to find, a pass for a few bytes each time (docs/BENCHMARKS.md, "What a byte
        // costs on the device").
        let now_ms = now.total_millis() as u64;
        if port.has_work() || (wakes.tick && port.due(now_ms, &server.device)) {
            port.serve(now_ms, &mut server.device);
        }
        #[cfg(feature = "update")]
        if wakes.tick {
            update_housekeeping(&mut server.device, now_ms, &mut reset_at);
        }
        rt::sleep_unless(|| port.has_work());
    }
}

/// Feature `update`, once a tick: feeds the watchdog, confirms a trial image whose self-test
/// passed, and resets the board a moment after a `Reset` request was answered.
#[cfg(feature = "update")]
fn update_housekeeping(device: &mut FwDevice, now_ms: u64, reset_at: &mut Option<u64>) {
    use crate::update;
    update::feed_watchdog();
    let on_trial = device.running_image().is_some_and(|b| b.trial);
    // Tried once: a failure (a storage fault) is said, and the next reset reverts the image.
    static TRIED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if on_trial
        && now_ms >= update::SELF_TEST_MS
        && !cfg!(feature = "no-confirm")
        && !TRIED.swap(true, core::sync::atomic::Ordering::Relaxed)
    {
        match device.confirm_image() {
            Ok(_) => {
                let _ = writeln!(Console, "firmware: self-test passed ({} ms up): confirmed", now_ms);
            }
            Err(e) => {
                let _ = writeln!(Console, "firmware: cannot confirm: {e}");
            }
        }
    }
    if update::take_reset() {
        *reset_at = Some(now_ms + update::RESET_DELAY_MS);
    }
    if reset_at.is_some_and(|at| now_ms >= at) {
        let _ = writeln!(Console, "firmware: reset (asked for by a Reset request)");
        cortex_m::peripheral::SCB::sys_reset();
    }
}
