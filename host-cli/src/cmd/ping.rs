//! `send` and `ping`: the echo service.

use std::time::{Duration, Instant};

use serde_json::json;
use tether_host::units::plural;

use super::{open, Result, Target, CLIENT};
use crate::report::Reporter;

/// `send MESSAGE [--upper]`: the device's echo (or upper-case echo) of a message.
pub fn send(t: &Target, out: &Reporter, message: &str, upper: bool) -> Result<()> {
    let mut c = open(t, out)?;
    let reply = c.echo(message.as_bytes(), upper)?;
    let text = String::from_utf8_lossy(&reply);
    out.result(&text, json!({"reply": text}));
    Ok(())
}

/// `ping -c COUNT [-i INTERVAL] [--hello]`: empty echoes (or hellos), one at a time, `interval`
/// apart.
pub fn ping(t: &Target, out: &Reporter, count: u32, interval: Option<Duration>, hello: bool) -> Result<()> {
    let mut c = open(t, out)?;
    let mut rtts = Vec::new();
    for i in 0..count {
        if let Some(pause) = interval.filter(|_| i > 0) {
            std::thread::sleep(pause);
        }
        let start = Instant::now();
        if hello {
            c.hello(CLIENT)?;
        } else {
            c.echo(&[], false)?;
        }
        let us = start.elapsed().as_secs_f64() * 1e6;
        rtts.push(us);
        out.item(
            format_args!("reply {} from {}: time={us:.0} µs", i + 1, t.addr),
            json!({"seq": i + 1, "rtt_us": us}),
        );
    }
    let min = rtts.iter().cloned().fold(f64::MAX, f64::min);
    let max = rtts.iter().cloned().fold(0.0, f64::max);
    let avg = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
    out.result(
        format_args!(
            "{}: min {min:.0} µs, avg {avg:.0} µs, max {max:.0} µs",
            plural(u64::from(count), "round trip")
        ),
        json!({"count": count, "min_us": min, "avg_us": avg, "max_us": max}),
    );
    Ok(())
}
