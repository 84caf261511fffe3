//! The device and its clients in one process, on smoltcp's loopback PHY.
//!
//! Every byte crosses smoltcp's TCP/IP twice (client socket → loopback → server socket), so
//! this is a real protocol exchange without any OS networking. Client connections implement
//! `embedded_io::{Read, Write}` by driving the whole stack whenever they would block, so the
//! same [`tether_host::Client`] that talks to a board over a PC socket runs here unchanged.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use tether_core::server::{PlainSockets, ServerConfig, Sockets};
use tether_core::service::{Device, DeviceConfig};
use tether_host::Client;

use crate::device::{
    after_poll, SimCtx, SimServer, Store, COMMANDS, MAX_FRAME, PLAIN_CLIENTS, PLAIN_COMMAND_CLIENTS, SESSIONS,
};

/// Sizes of an in-process stack.
#[derive(Debug, Clone, Copy)]
pub struct StackConfig {
    /// Receive and transmit buffer of every TCP socket, device and client side.
    pub socket_buffer: usize,
    /// Bytes of RAM store.
    pub store_capacity: usize,
    /// Ports and limits.
    pub server: ServerConfig,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            socket_buffer: 64 * 1024,
            store_capacity: 8 << 20,
            server: ServerConfig::default(),
        }
    }
}

/// The device's address on the loopback interface.
pub const DEVICE_IP: Ipv4Address = Ipv4Address::new(127, 0, 0, 1);

/// A loopback interface with the device's server and any number of client sockets.
pub struct Stack {
    /// The interface.
    pub iface: Interface,
    /// The loopback PHY.
    pub phy: Loopback,
    /// Server and client sockets.
    pub sockets: SocketSet<'static>,
    /// The device.
    pub server: Box<SimServer>,
    config: StackConfig,
    epoch: std::time::Instant,
    skew: Duration,
    /// The clock is `skew` alone, and a connection that waits moves it to the next timer instead
    /// of waiting for it (`TETHER_SIM_VIRTUAL_CLOCK=1`, for counting instructions with callgrind:
    /// with the host's clock, how often an idle stack is polled follows the host's speed).
    virtual_clock: bool,
    next_port: u16,
}

/// A stack shared by several client connections.
pub type Shared = Rc<RefCell<Stack>>;

fn tcp_socket(size: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size]),
        tcp::SocketBuffer::new(vec![0; size]),
    );
    // Loopback has no wire latency: delayed ACKs would only add stalls.
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    s
}

fn udp_socket(packets: usize, bytes: usize) -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]),
    )
}

/// The plain services' sockets of the simulated device, the upper-echo serving `echo_clients`
/// at once: each TCP pool has one socket more than the clients it serves at once, so a client
/// that reconnects at once always finds one listening.
fn plain_sockets(echo_clients: usize) -> PlainSockets<'static> {
    let mut p = PlainSockets::default();
    for _ in 0..=echo_clients {
        let _ = p.echo.push(tcp_socket(16 * 1024));
    }
    for _ in 0..=PLAIN_COMMAND_CLIENTS {
        // The transmit buffer holds a command's whole reply: output up to 64 KiB less the
        // header room.
        let cmd = || {
            tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            )
        };
        let _ = p.command.push(cmd());
        let _ = p.command_json.push(cmd());
    }
    p.time = Some(udp_socket(8, 4096));
    p.chat = Some(udp_socket(8, 4096));
    p
}

/// Builds the simulated device's server with its sockets added to `set`. `plain_clients` is
/// how many upper-echo clients are served at once (at most [`MAX_PLAIN_CLIENTS`]); 0 leaves the
/// plain-socket services (upper-echo, remote command, time, chat) out.
pub fn build_server(
    config: &ServerConfig,
    socket_buffer: usize,
    plain_clients: usize,
    store: Store,
    set: &mut SocketSet<'static>,
) -> Box<SimServer> {
    let sizes = crate::node::Sizes {
        socket_buffer,
        plain_clients,
    };
    build_named_server(DEVICE_NAME, config, sizes, store, set)
}

/// The name a simulated device reports unless it is one of several (`sim --devices N`).
pub const DEVICE_NAME: &str = "tether-sim";
/// The firmware version a simulated device reports to `Discover`.
pub const FIRMWARE: &str = concat!("tether-sim ", env!("CARGO_PKG_VERSION"));

/// [`build_server`] for a device called `name`.
pub fn build_named_server(
    name: &'static str,
    config: &ServerConfig,
    sizes: crate::node::Sizes,
    store: Store,
    set: &mut SocketSet<'static>,
) -> Box<SimServer> {
    let crate::node::Sizes {
        socket_buffer,
        plain_clients,
    } = sizes;
    let mut device = Device::new(
        DeviceConfig { name, window: 16 },
        store,
        &COMMANDS,
        SimCtx::default(),
        MAX_FRAME,
        SESSIONS as u8,
    );
    device.identify(0, FIRMWARE);
    let sockets = Sockets {
        sessions: core::array::from_fn::<_, SESSIONS, _>(|_| tcp_socket(socket_buffer)),
        spare: tcp_socket(socket_buffer),
        udp: udp_socket(16, 16 * 1024),
        plain: match plain_clients {
            0 => PlainSockets::default(),
            n => plain_sockets(n.min(MAX_PLAIN_CLIENTS)),
        },
    };
    Box::new(SimServer::new(*config, device, sockets, set))
}

/// Most upper-echo clients at once (the pool holds one socket more).
pub const MAX_PLAIN_CLIENTS: usize = tether_core::server::ECHO_SOCKETS - 1;

/// A RAM store of `capacity` bytes. The memory lives as long as the process: a simulated
/// device's RAM, reused across its reboots.
pub fn ram_store(capacity: usize) -> Store {
    Store::ram(capacity)
}

impl Stack {
    /// A stack with the device listening, on a RAM store of `config.store_capacity` bytes.
    pub fn new(config: StackConfig) -> Shared {
        Self::with_store(config, ram_store(config.store_capacity))
    }

    /// A stack with the device listening, on `store` (`config.store_capacity` is not used).
    pub fn with_store(config: StackConfig, store: Store) -> Shared {
        let mut phy = Loopback::new(Medium::Ethernet);
        let hw = HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 1]));
        let mut iface = Interface::new(Config::new(hw), &mut phy, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(DEVICE_IP), 8));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let server = build_server(&config.server, config.socket_buffer, PLAIN_CLIENTS, store, &mut sockets);
        Rc::new(RefCell::new(Stack {
            iface,
            phy,
            sockets,
            server,
            config,
            epoch: std::time::Instant::now(),
            skew: Duration::ZERO,
            virtual_clock: std::env::var_os("TETHER_SIM_VIRTUAL_CLOCK").is_some_and(|v| v == "1"),
            next_port: 49152,
        }))
    }

    /// The stack's clock: real time since creation, plus any [`Stack::advance`] (only the
    /// advances with a virtual clock, `TETHER_SIM_VIRTUAL_CLOCK=1`).
    pub fn now(&self) -> Instant {
        let real = if self.virtual_clock {
            Duration::ZERO
        } else {
            self.epoch.elapsed()
        };
        Instant::from_micros((real + self.skew).as_micros() as i64)
    }

    /// With a virtual clock, moves it to the interface's next timer (at least 1 ms on); returns
    /// whether it did.
    fn skip_to_next_timer(&mut self) -> bool {
        if !self.virtual_clock {
            return false;
        }
        let now = self.now();
        let next = self
            .iface
            .poll_delay(now, &self.sockets)
            .map_or(Duration::from_millis(1), |d| Duration::from_micros(d.total_micros()));
        self.advance(next.max(Duration::from_millis(1)));
        true
    }

    /// Moves the clock forward without waiting (for timeout tests).
    pub fn advance(&mut self, by: Duration) {
        self.skew += by;
    }

    /// Polls interface and server once. Returns whether anything happened.
    pub fn poll(&mut self) -> bool {
        let now = self.now();
        let any = self.server.poll(now, &mut self.iface, &mut self.phy, &mut self.sockets);
        after_poll(&mut self.server, &mut self.sockets) | any
    }

    fn port(&mut self) -> u16 {
        self.next_port = if self.next_port == u16::MAX {
            49152
        } else {
            self.next_port + 1
        };
        self.next_port
    }

    /// Opens a client TCP connection to `port` on the device.
    pub fn connect(stack: &Shared, port: u16) -> std::io::Result<Conn> {
        let handle = {
            let mut st = stack.borrow_mut();
            let size = st.config.socket_buffer;
            let local = st.port();
            let mut socket = tcp_socket(size);
            let remote = IpEndpoint::new(IpAddress::Ipv4(DEVICE_IP), port);
            let Stack { iface, .. } = &mut *st;
            socket
                .connect(iface.context(), remote, local)
                .map_err(|e| std::io::Error::other(format!("{e}")))?;
            st.sockets.add(socket)
        };
        let conn = Conn {
            stack: stack.clone(),
            handle,
            timeout: Duration::from_secs(10),
        };
        conn.wait(|s| {
            if s.may_send() {
                Some(Ok(()))
            } else if !s.is_open() {
                Some(Err(std::io::ErrorKind::ConnectionRefused.into()))
            } else {
                None
            }
        })?;
        Ok(conn)
    }

    /// A protocol client on a new connection to the framed port.
    pub fn client(stack: &Shared) -> std::io::Result<Client<Conn>> {
        let port = stack.borrow().config.server.tcp_port;
        Ok(Client::new(Self::connect(stack, port)?))
    }
}

/// A client TCP connection inside a [`Stack`].
pub struct Conn {
    stack: Shared,
    handle: SocketHandle,
    timeout: Duration,
}

impl Conn {
    /// Polls the stack until `f` has an answer for the socket, or the timeout passes.
    fn wait<T>(&self, mut f: impl FnMut(&mut tcp::Socket<'_>) -> Option<std::io::Result<T>>) -> std::io::Result<T> {
        let start = std::time::Instant::now();
        loop {
            let mut st = self.stack.borrow_mut();
            if let Some(r) = f(st.sockets.get_mut::<tcp::Socket>(self.handle)) {
                return r;
            }
            if !st.poll() {
                if start.elapsed() > self.timeout {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                // Nothing moved: only a timer (retransmission, a waiting command) can help.
                if !st.skip_to_next_timer() {
                    drop(st);
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Sets how long a read or write may wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Closes the sending direction (FIN).
    pub fn close(&mut self) {
        self.stack
            .borrow_mut()
            .sockets
            .get_mut::<tcp::Socket>(self.handle)
            .close();
    }

    /// Resets the connection (RST), like a crashed peer.
    pub fn abort(&mut self) {
        let mut st = self.stack.borrow_mut();
        st.sockets.get_mut::<tcp::Socket>(self.handle).abort();
        st.poll();
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.stack
            .borrow_mut()
            .sockets
            .get_mut::<tcp::Socket>(self.handle)
            .is_open()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Ok(mut st) = self.stack.try_borrow_mut() {
            st.sockets.get_mut::<tcp::Socket>(self.handle).abort();
            st.poll();
            st.sockets.remove(self.handle);
        }
    }
}

impl embedded_io::ErrorType for Conn {
    type Error = std::io::Error;
}

impl embedded_io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.wait(|s| {
            if s.can_recv() {
                Some(s.recv_slice(buf).map_err(|e| std::io::Error::other(format!("{e}"))))
            } else if !s.may_recv() {
                Some(Ok(0))
            } else {
                None
            }
        })
    }
}

impl embedded_io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.wait(|s| {
            if !s.may_send() {
                Some(Err(std::io::ErrorKind::BrokenPipe.into()))
            } else if s.can_send() {
                Some(s.send_slice(buf).map_err(|e| std::io::Error::other(format!("{e}"))))
            } else {
                None
            }
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A client UDP socket inside a [`Stack`].
pub struct Datagrams {
    stack: Shared,
    handle: SocketHandle,
}

impl Stack {
    /// Opens a client UDP socket on the loopback interface.
    pub fn udp(stack: &Shared) -> Datagrams {
        let mut st = stack.borrow_mut();
        let port = st.port();
        let mut socket = udp_socket(16, 256 * 1024);
        socket.bind(port).expect("fresh port");
        let handle = st.sockets.add(socket);
        Datagrams {
            stack: stack.clone(),
            handle,
        }
    }
}

impl Datagrams {
    /// Sends one datagram to `port` on the device.
    pub fn send(&mut self, port: u16, data: &[u8]) -> std::io::Result<()> {
        let mut st = self.stack.borrow_mut();
        let to = IpEndpoint::new(IpAddress::Ipv4(DEVICE_IP), port);
        st.sockets
            .get_mut::<udp::Socket>(self.handle)
            .send_slice(data, to)
            .map_err(|e| std::io::Error::other(format!("{e}")))?;
        st.poll();
        Ok(())
    }

    /// Waits up to `timeout` for a datagram; returns it and the sender's port.
    pub fn recv(&mut self, timeout: Duration) -> Option<(Vec<u8>, u16)> {
        let start = std::time::Instant::now();
        loop {
            let mut st = self.stack.borrow_mut();
            if let Ok((data, meta)) = st.sockets.get_mut::<udp::Socket>(self.handle).recv() {
                return Some((data.to_vec(), meta.endpoint.port));
            }
            if !st.poll() && start.elapsed() > timeout {
                return None;
            }
        }
    }
}
