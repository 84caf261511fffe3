//! The UDP commands: `time`, `chat`, `listen`.

use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tether_core::codec::parse_datagram;
use tether_core::msg;
use tether_core::wire::Kind;
use tether_host::net::{self, UdpClient};
use tether_host::ClientError;

use super::{udp_addr, Result};
use crate::cli::Args;
use crate::report::Reporter;

const TRIES: u32 = 3;

fn client(args: &Args, out: &Reporter) -> Result<UdpClient> {
    let addr = udp_addr(args);
    out.detail(format_args!("UDP to {addr}"));
    // Each try gets a share of the timeout, so the whole call stays within it.
    UdpClient::new(&addr, args.timeout / TRIES)
}

fn clock(meta: &[u8]) -> Result<u64> {
    postcard_meta::<msg::Time>(meta).map(|c| c.unix_ms)
}

fn postcard_meta<'a, T: serde::Deserialize<'a>>(meta: &'a [u8]) -> Result<T> {
    postcard::from_bytes(meta).map_err(|_| ClientError::Protocol("unreadable response metadata".into()))
}

pub fn time_get(args: &Args, out: &Reporter, format: &str) -> Result<()> {
    let (text, unix_ms) = if net::is_serial(&args.to) {
        // A serial line has no UDP: the same service over the session.
        super::open(args, out)?.time(format)?
    } else {
        let d = client(args, out)?.call(Kind::TimeGet, &msg::TimeGet { format }, &[], TRIES)?;
        (String::from_utf8_lossy(&d.body).into_owned(), clock(&d.meta)?)
    };
    out.result(&text, json!({"ok": true, "time": text, "unix_ms": unix_ms}));
    Ok(())
}

pub fn time_set(args: &Args, out: &Reporter) -> Result<()> {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let set = if net::is_serial(&args.to) {
        super::open(args, out)?.set_time(unix_ms)?
    } else {
        let d = client(args, out)?.call(Kind::TimeSet, &msg::Clock { unix_ms }, &[], TRIES)?;
        clock(&d.meta)?
    };
    out.result(
        format_args!("device clock set to {set} ms since the epoch"),
        json!({"ok": true, "unix_ms": set}),
    );
    Ok(())
}

fn say(udp: &mut UdpClient, out: &Reporter, from: &str, text: &str) -> Result<()> {
    let d = udp.call(Kind::Message, &msg::Message { from }, text.as_bytes(), TRIES)?;
    let who = postcard_meta::<msg::Message<'_>>(&d.meta)
        .map(|m| m.from.to_string())
        .unwrap_or_default();
    let reply = String::from_utf8_lossy(&d.body);
    out.result(
        format_args!("{who}> {reply}"),
        json!({"ok": true, "from": who, "reply": reply}),
    );
    Ok(())
}

pub fn chat(args: &Args, out: &Reporter, message: Option<&str>, from: &str) -> Result<()> {
    let mut udp = client(args, out)?;
    if let Some(text) = message {
        return say(&mut udp, out, from, text);
    }
    out.note("type a message and press Enter; Ctrl-D ends the chat");
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| ClientError::Local(format!("cannot read stdin: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        say(&mut udp, out, from, &line)?;
    }
    Ok(())
}

pub fn listen(args: &Args, out: &Reporter, count: Option<u32>, duration: Option<Duration>) -> Result<()> {
    let mut udp = client(args, out)?;
    udp.call(Kind::Subscribe, &msg::Subscribe { on: true }, &[], TRIES)?;
    out.note("subscribed; waiting for events (Ctrl-C stops)");
    let start = Instant::now();
    let mut seen = 0u32;
    let mut buf = vec![0u8; 65536];
    let result = loop {
        if count.is_some_and(|n| seen >= n) {
            break Ok(());
        }
        let left = match duration {
            Some(d) if start.elapsed() >= d => break Ok(()),
            Some(d) => (d - start.elapsed()).min(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        let _ = udp.socket().set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let n = match udp.socket().recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => break Err(ClientError::Connection(format!("UDP receive failed: {e}"))),
        };
        let Ok(frame) = parse_datagram(&buf[..n], buf.len()) else {
            continue;
        };
        if frame.kind() != Kind::Event {
            continue;
        }
        let Ok(ev) = frame.meta::<msg::Event<'_>>() else {
            continue;
        };
        seen += 1;
        let data = String::from_utf8_lossy(frame.body);
        out.result(
            format_args!("[{}] {}: {data}", ev.seq, ev.topic),
            json!({"seq": ev.seq, "topic": ev.topic, "data": data}),
        );
    };
    let _ = udp.call(Kind::Subscribe, &msg::Subscribe { on: false }, &[], 1);
    result
}
