//! Commands every device can register as they are: they read only what the server knows.
//!
//! ```
//! use tether_core::service::builtin;
//! use tether_core::service::exec::Command;
//!
//! struct MyCtx;
//! static COMMANDS: [Command<MyCtx>; 2] = [builtin::uptime_command(), builtin::stats_command()];
//! assert_eq!(COMMANDS[0].name, "uptime");
//! ```

use super::exec::{Call, Command, Status};
use super::stats::Service;
use crate::outln;

/// `uptime`: time since boot, as `up Dd HH:MM:SS (N ms)`.
pub fn uptime<C>(_: &mut C, call: &mut Call<'_>) -> Status {
    let s = call.uptime_ms / 1000;
    outln!(
        call.out,
        "up {}d {:02}:{:02}:{:02} ({} ms)",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        call.uptime_ms
    );
    Status::Done(0)
}

/// `stats`: sessions, bytes, errors, files and per-service request counters, one per line.
pub fn stats<C>(_: &mut C, call: &mut Call<'_>) -> Status {
    let st = call.stats;
    let lines = Service::COUNT + 4;
    for line in call.cursor as usize..lines {
        let ok = match line {
            0 => outln!(
                call.out,
                "sessions  open {}  opened {}  closed-by-device {}",
                st.sessions_active,
                st.sessions_opened,
                st.sessions_closed_by_device
            ),
            1 => outln!(call.out, "bytes     in {}  out {}", st.bytes_in, st.bytes_out),
            2 => outln!(
                call.out,
                "errors    responses {}  decode {}  udp-dropped {}",
                st.errors,
                st.decode_errors,
                st.udp_dropped
            ),
            3 => outln!(call.out, "files     uploads {}  downloads {}", st.uploads, st.downloads),
            n => outln!(
                call.out,
                "requests  {:<8} {}",
                Service::NAMES[n - 4],
                st.requests[n - 4]
            ),
        };
        if !ok {
            call.cursor = line as u32;
            return Status::More;
        }
    }
    Status::Done(0)
}

/// The `uptime` entry for a command table.
pub const fn uptime_command<C>() -> Command<C> {
    Command {
        name: "uptime",
        help: "time since boot",
        run: uptime,
    }
}

/// The `stats` entry for a command table.
pub const fn stats_command<C>() -> Command<C> {
    Command {
        name: "stats",
        help: "per-service counters, sessions, bytes, errors",
        run: stats,
    }
}

/// The argument handling of an on/off command such as `led`: `on`, `off`, `toggle`, or `status`
/// (also no argument) applied to `state`. On other arguments it writes a usage line naming
/// `name` and returns the status to end the command with (2, as a shell's usage error).
pub fn switch(name: &str, state: &mut bool, call: &mut Call<'_>) -> Result<(), Status> {
    match call.args {
        ["on"] => *state = true,
        ["off"] => *state = false,
        ["toggle"] => *state = !*state,
        ["status"] | [] => {}
        _ => {
            outln!(call.out, "usage: {name} on|off|toggle|status");
            return Err(Status::Done(2));
        }
    }
    Ok(())
}
