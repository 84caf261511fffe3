//! `bench`: echo latency percentiles and transfer throughput against a live device.

use std::io::Cursor;
use std::time::Instant;

use serde_json::json;
use sha2::{Digest as _, Sha256};
use tether_host::client::sha256_of;

use super::transfer::start_bar;
use super::{open, Result, Target};
use crate::report::{FailKind, Failure, Reporter};
use tether_core::wire::ErrorCode;
use tether_host::units::{bytes, rate};

const NAME: &str = "host-cli-bench.bin";

/// The refusal of a test file that does not fit, with a size that does.
fn no_room(t: &Target, size: u64, free: u64) -> Failure {
    // The largest power of two that fits in half the room, at least 4 KiB.
    let fits = (free / 2).max(4096);
    let suggest = 1u64 << (63 - fits.leading_zeros());
    let size_arg = if suggest >= 1 << 20 {
        format!("{}M", suggest >> 20)
    } else {
        format!("{}K", suggest >> 10)
    };
    Failure::new(
        FailKind::Device,
        format!(
            "bench needs room for a {} test file, and {} has {} free",
            bytes(size),
            t.device_name(),
            bytes(free)
        ),
    )
    .with_code(ErrorCode::NoSpace)
    .hint(format!(
        "measure with a smaller file: {}",
        t.command(&format!("bench --size {size_arg}"))
    ))
}

/// Shows the bar at `n` the first time, then moves it.
fn start_or_move(bar: &Option<indicatif::ProgressBar>, n: u64) {
    if let Some(b) = bar {
        if b.is_hidden() {
            start_bar(bar, n);
        } else {
            b.set_position(n);
        }
    }
}

fn finish_bar(bar: Option<indicatif::ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// Microseconds to the nanosecond, not to the last bit of a binary fraction (99.999, not
/// 99.99900000000001, for an echo of 99 999 ns).
fn to_the_ns(us: f64) -> f64 {
    (us * 1000.0).round() / 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Pseudo-random bytes, so no layer can compress or shortcut them.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn run(t: &Target, out: &Reporter, rounds: u32, size: u64, repeat: u32) -> Result<()> {
    let mut c = open(t, out)?;
    let info = c.hello("host-cli bench")?;
    // Room for the test file, or say so now rather than after the echo rounds.
    let held = c.stat(NAME).map_or(0, |(s, _)| s);
    let free = info.storage_capacity.saturating_sub(info.storage_used) + held;
    if size > free {
        return Err(no_room(t, size, free));
    }
    let mut rtts = Vec::with_capacity(rounds as usize);
    let probe = [0x5Au8; 32];
    let bar = out.steps(u64::from(rounds), "bench echo");
    start_bar(&bar, 0);
    for _ in 0..rounds {
        let t = Instant::now();
        c.echo(&probe, false)?;
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    finish_bar(bar);
    rtts.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&rtts, 0.50), percentile(&rtts, 0.99));

    let data = payload(size as usize);
    let (sha, _) = sha256_of(&data[..]).map_err(|e| Failure::local(format!("cannot hash the test data ({e})")))?;
    let (mut up, mut down) = (0f64, 0f64);
    for _ in 0..repeat.max(1) {
        let bar = out.progress(size, "bench upload");
        let t0 = Instant::now();
        let put = c.put(NAME, &mut Cursor::new(&data), size, sha, true, |n| {
            start_or_move(&bar, n);
        });
        finish_bar(bar);
        put.map_err(|e| match e.code() {
            Some(ErrorCode::NoSpace) => no_room(t, size, free),
            _ => e.into(),
        })?;
        up = up.max(size as f64 / t0.elapsed().as_secs_f64());
        let bar = out.progress(size, "bench download");
        let t0 = Instant::now();
        c.get(NAME, 0, &mut std::io::sink(), Sha256::new(), |n| start_or_move(&bar, n))?;
        finish_bar(bar);
        down = down.max(size as f64 / t0.elapsed().as_secs_f64());
    }
    let _ = c.remove(NAME);
    let human = format!(
        "device      {} (max frame {})\necho 32 B   p50 {p50:.0} µs   p99 {p99:.0} µs   ({})\nupload      {}   ({}, best of {repeat})\ndownload    {}",
        info.device,
        bytes(u64::from(info.max_frame)),
        tether_host::units::plural(u64::from(rounds), "round trip"),
        rate(up),
        bytes(size),
        rate(down)
    );
    out.result(
        human,
        json!({"device": info.device, "rounds": rounds, "echo_p50_us": to_the_ns(p50),
               "echo_p99_us": to_the_ns(p99),
               "size": size, "upload_bytes_per_s": up, "download_bytes_per_s": down}),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_to_the_nanosecond() {
        let us = std::time::Duration::from_nanos(99_999).as_secs_f64() * 1e6;
        assert_eq!(json!(to_the_ns(us)).to_string(), "99.999");
        assert_eq!(json!(to_the_ns(1234.0)).to_string(), "1234.0");
    }
}
