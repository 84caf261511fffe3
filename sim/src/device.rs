//! The simulated device: its application state, command set and server type.

use std::fmt::Write as _;

use tether_core::outln;
use tether_core::server::Server;
use tether_core::service::exec::{Call, Command, Output, Status};
use tether_core::service::{builtin, Context};

/// The largest frame the simulated device accepts.
pub const MAX_FRAME: usize = 16 * 1024;
/// TCP sessions served at once.
pub const SESSIONS: usize = 4;
/// Clients the plain upper-echo port serves at once by default (`sim --plain-clients`; its pool
/// has one socket more, for immediate reconnects).
pub const PLAIN_CLIENTS: usize = 4;
/// Clients each plain remote-command port serves at once (one socket more, likewise).
pub const PLAIN_COMMAND_CLIENTS: usize = 2;
/// Most files (and pending uploads) in the RAM store.
pub const FILES: usize = 64;

/// The simulator's storage: a RAM store or a directory (see [`crate::store`]).
pub type Store = crate::store::SimStore;
/// The simulator's server type.
pub type SimServer = Server<'static, SimCtx, Store, MAX_FRAME, SESSIONS>;

/// How the device answers datagram messages.
#[derive(Debug, Clone, Default)]
pub enum Replies {
    /// An automatic acknowledgement quoting the message.
    #[default]
    Auto,
    /// No reply text: an operator answers later (`sim --chat`), as a `chat` event.
    Silent,
    /// Every message is answered with this text (tests of reply limits).
    Fixed(String),
}

/// The application state the commands work on.
#[derive(Debug, Default)]
pub struct SimCtx {
    /// The virtual LED.
    pub led: bool,
    /// Set by `reboot`: the main loop drops every session and resets the device.
    pub reboot_requested: bool,
    /// When the requested reboot happens (uptime ms).
    pub reboot_at: Option<u64>,
    /// Events for the main loop to publish: (topic, data).
    pub events: Vec<(String, Vec<u8>)>,
    /// Events published on the network, kept for the serial line's session when there is one
    /// (`Some`): (topic, data, sequence number).
    pub serial_events: Option<Vec<(String, Vec<u8>, u32)>>,
    /// Messages received: (from, text), for an operator to see.
    pub inbox: Vec<(String, String)>,
    /// How messages are answered.
    pub replies: Replies,
    /// The board has a battery-backed real-time clock: the wall clock is read from the host's
    /// at boot and after every reboot (`sim --no-rtc` leaves it off: the clock then starts at
    /// 1970 and says it was never set, like a board without one).
    pub rtc: bool,
    /// The firmware slots (`sim --fw-key`): the update service is on when they are there.
    pub firmware: Option<crate::firmware::Firmware>,
}

/// Sets the device's wall clock from the host's UTC clock, as a board reads its RTC at boot;
/// `mono_ms` is the device's uptime now (0 at boot).
pub fn read_rtc(server: &mut SimServer, mono_ms: u64) {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    server.device.clock.set(unix_ms, mono_ms);
}

impl Context for SimCtx {
    fn board(&mut self) -> Option<&mut dyn tether_core::update::Board> {
        self.firmware
            .as_mut()
            .map(|f| &mut f.slots as &mut dyn tether_core::update::Board)
    }

    fn on_message(&mut self, from: &str, text: &str, reply: &mut Output<'_>) {
        self.inbox.push((from.to_string(), text.to_string()));
        self.events
            .push(("message".into(), format!("{from}: {text}").into_bytes()));
        // A datagram is answered at once, before anyone could type; so `--chat` answers come
        // later as `chat` events, which the sender sees right after its own line.
        match &self.replies {
            Replies::Auto => {
                let unit = if text.len() == 1 { "byte" } else { "bytes" };
                let _ = write!(reply, "got {} {unit} from {from}", text.len());
            }
            Replies::Fixed(answer) => {
                // Whatever fits: the transport caps replies and must not cut a character.
                let _ = reply.write_str(answer);
            }
            Replies::Silent => {}
        }
    }
}

fn led(ctx: &mut SimCtx, call: &mut Call<'_>) -> Status {
    let before = ctx.led;
    if let Err(status) = builtin::switch("led", &mut ctx.led, call) {
        return status;
    }
    let state = if ctx.led { "on" } else { "off" };
    if ctx.led != before {
        ctx.events.push(("led".into(), state.as_bytes().to_vec()));
    }
    outln!(call.out, "led {state}");
    Status::Done(0)
}

fn reboot(ctx: &mut SimCtx, call: &mut Call<'_>) -> Status {
    ctx.reboot_requested = true;
    outln!(call.out, "rebooting");
    Status::Done(0)
}

fn sleep(_: &mut SimCtx, call: &mut Call<'_>) -> Status {
    let Some(ms) = call
        .args
        .first()
        .and_then(|a| a.parse::<u32>().ok())
        .filter(|_| call.args.len() == 1)
    else {
        outln!(call.out, "usage: sleep MS");
        return Status::Done(2);
    };
    // The cursor holds the deadline (uptime in ms, plus one so that 0 means "not started").
    // Uptime is truncated to whole milliseconds, so one more keeps the sleep from ending early.
    let now = call.uptime_ms as u32;
    if call.cursor == 0 {
        call.cursor = now.wrapping_add(ms).wrapping_add(2);
    }
    let deadline = call.cursor.wrapping_sub(1);
    if (deadline.wrapping_sub(now) as i32) > 0 {
        return Status::Wait;
    }
    outln!(call.out, "slept {ms} ms");
    Status::Done(0)
}

fn count(_: &mut SimCtx, call: &mut Call<'_>) -> Status {
    let Some(n) = call.args.first().and_then(|a| a.parse::<u32>().ok()) else {
        outln!(call.out, "usage: count N");
        return Status::Done(2);
    };
    for i in call.cursor..n {
        if !outln!(call.out, "{}", i + 1) {
            call.cursor = i;
            return Status::More;
        }
    }
    Status::Done(0)
}

fn fail(_: &mut SimCtx, call: &mut Call<'_>) -> Status {
    let code = call.args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    outln!(call.out, "failing with status {code}");
    Status::Done(code)
}

/// The simulator's commands (`help` is built in).
pub static COMMANDS: [Command<SimCtx>; 7] = [
    builtin::uptime_command(),
    builtin::stats_command(),
    Command {
        name: "led",
        help: "on|off|toggle|status: the virtual LED",
        run: led,
    },
    Command {
        name: "reboot",
        help: "drop every session and reset the device",
        run: reboot,
    },
    Command {
        name: "sleep",
        help: "MS: answer after MS milliseconds (for timeout tests)",
        run: sleep,
    },
    Command {
        name: "count",
        help: "N: print 1..N, one per line (long output)",
        run: count,
    },
    Command {
        name: "fail",
        help: "[STATUS]: exit with STATUS (default 1)",
        run: fail,
    },
];

/// Work the main loop does after each poll: publish queued events, carry out a requested reboot.
/// Returns whether the device rebooted.
pub fn after_poll(server: &mut SimServer, sockets: &mut smoltcp::iface::SocketSet<'_>) -> bool {
    for (topic, data) in std::mem::take(&mut server.device.ctx.events) {
        server.publish(sockets, &topic, &data);
        let seq = server.last_event_seq();
        if let Some(line) = &mut server.device.ctx.serial_events {
            line.push((topic, data, seq));
        }
    }
    let now = server.device.uptime_ms();
    let ctx = &mut server.device.ctx;
    // A `Reset` request (update service): the same reboot as the `reboot` command.
    if ctx.firmware.as_mut().is_some_and(|f| f.slots.take_reset()) {
        ctx.reboot_requested = true;
    }
    if !ctx.reboot_requested {
        return false;
    }
    match ctx.reboot_at {
        None => {
            // Give the `rebooting` reply a moment to leave before the sessions are reset.
            ctx.reboot_at = Some(now + 50);
            false
        }
        Some(at) if now < at => false,
        Some(_) => {
            log::info!("reboot: dropping every session, clearing volatile storage");
            server.restart(sockets);
            server.device.storage.clear_volatile();
            let rtc = server.device.ctx.rtc;
            server.device.ctx = SimCtx {
                replies: std::mem::take(&mut server.device.ctx.replies),
                rtc,
                firmware: server.device.ctx.firmware.take(),
                ..SimCtx::default()
            };
            // The board boots the image its slots pick (the simulator runs none: it reports it).
            if let Some(fw) = &mut server.device.ctx.firmware {
                match fw.boot() {
                    Ok(running) => {
                        let config = fw.config;
                        server.device.enable_update(config, running);
                    }
                    Err(e) => log::error!("firmware: {e}"),
                }
            }
            if rtc {
                // The uptime starts again from 0 on the next poll.
                read_rtc(server, 0);
            }
            true
        }
    }
}
