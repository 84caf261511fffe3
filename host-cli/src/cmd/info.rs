//! `info`: how the device stands (its hello, and the image it runs).

use serde_json::json;
use tether_host::net::Endpoint;
use tether_host::units::bytes;

use super::{connect, firmware, first_hello, learn, Need, Result, Target};
use crate::report::Reporter;

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

pub fn info(t: &Target, out: &Reporter) -> Result<()> {
    let mut c = connect(t, out)?;
    let i = first_hello(t, out, &mut c)?;
    let i = learn(t, out, i, Need::Report)?.clone();
    let sealed = t.sealed();
    let security = match (i.key_required, sealed) {
        (false, _) => "OPEN: no key, anyone who can reach it can change it (see `host-cli keygen`)",
        (true, true) => "key required; this session is sealed",
        (true, false) => {
            "key required; this session is not sealed, so only info and the time read work: pass --key-file FILE (or set TETHER_KEY_FILE, or key_file in the config)"
        }
    };
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
    // The hello counts TCP sessions; a serial line is a session of its own.
    let sessions = match (&t.addr, i.sessions) {
        (Endpoint::Tcp(_), n) => n.to_string(),
        (Endpoint::Serial(_), 0) => "1 (this serial line)".to_string(),
        (Endpoint::Serial(_), n) => format!("1 on this serial line ({n} more over TCP)"),
    };
    // The image running, from the update service where the device has one (`Info` itself is a
    // frozen v1 message).
    let (fw_line, fw_json) = firmware::running(&mut c, sealed || !i.key_required);
    let human = format!(
        "device     {}\naddress    {address}\nprotocol   v{}\nmax frame  {} ({} bytes; data chunks of {} bytes)\nsessions   {}\nstorage    {} used of {} ({} free)\nuptime     {}\nclock      {clock}\nsecurity   {security}\n{fw_line}commands   {}",
        i.device,
        i.version,
        bytes(u64::from(i.max_frame)),
        i.max_frame,
        i.max_chunk,
        sessions,
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
               "uptime_ms": i.uptime_ms, "clock_synced": i.clock_synced, "commands": i.commands,
               "key_required": i.key_required, "sealed": sealed, "firmware": fw_json}),
    );
    Ok(())
}
