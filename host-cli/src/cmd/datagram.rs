//! The UDP commands: `time`, `chat`, `listen`. They talk to the host of `--to`, on the UDP port
//! the device advertises in its hello (or `--udp-port`): never to another device. A serial line
//! has no UDP: `time` goes over its session instead, and `chat`/`listen`, which need the
//! device's events, are refused.
//!
//! A device with a key serves over UDP only what changes nothing (hello, echo, time read): a
//! datagram's sender cannot prove the key. So with a key, `time set` and `chat -m` go over a
//! sealed session instead, and `listen` and interactive `chat`, whose events only UDP
//! subscribers get, are refused with exit code 6 until events can reach a sealed session.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tether_core::codec::parse_datagram;
use tether_core::msg;
use tether_core::wire::Kind;
use tether_host::error::ClientError;
use tether_host::net::{Endpoint, UdpClient};

use tether_host::client::DeviceInfo;

use super::{connect, date, first_hello, learn, open, Need, Result, Target, CLIENT};
use crate::report::{FailKind, Failure, Reporter};

const TRIES: u32 = 3;

/// Learns the device (its hello) for a UDP command, once, and checks what `need` says
/// ([`learn`]): over a session when the UDP port must come from the hello anyway, else with a
/// hello datagram to the given port. Returns the device's framed UDP port.
fn probe(t: &Target, out: &Reporter, need: Need) -> Result<u16> {
    let info = match (t.device_info(), t.udp_port, &t.addr) {
        (Some(i), _, _) => i.clone(),
        (None, Some(p), Endpoint::Tcp(a)) => {
            let mut udp = UdpClient::new(&a.with_port(p), t.timeout / TRIES)?;
            let d = udp.call(Kind::Hello, &msg::Hello { client: CLIENT }, &[], TRIES)?;
            let hello: msg::Info<'_> = postcard_meta(&d.meta)?;
            DeviceInfo::from(&hello)
        }
        (None, _, _) => first_hello(t, out, &mut connect(t, out)?)?,
    };
    let info = learn(t, out, info, need)?;
    if let Some(p) = t.udp_port {
        return Ok(p);
    }
    if info.udp_port == 0 {
        return Err(Failure::new(
            FailKind::Device,
            format!("the device {} has no framed UDP port", t.addr),
        )
        .hint("time, chat and listen need one; if it is behind a port forward, give it with --udp-port"));
    }
    out.detail(format_args!("{} advertises UDP port {}", t.addr, info.udp_port));
    Ok(info.udp_port)
}

fn client(t: &Target, out: &Reporter, command: &str, need: Need) -> Result<UdpClient> {
    let Endpoint::Tcp(a) = &t.addr else {
        return Err(Failure::usage(format!(
            "`{command}` needs the device's UDP port, and {} is a serial line: a serial line carries one session",
            t.addr
        ))
        .hint("use the device's network address in --to for chat; info, exec, put, get, time and listen work over the serial line"));
    };
    let addr = a.with_port(probe(t, out, need)?);
    out.detail(format_args!("UDP to {addr}"));
    // Each try gets a share of the timeout, so the whole call stays within it.
    Ok(UdpClient::new(&addr, t.timeout / TRIES)?)
}

/// The refusal of interactive `chat` on a device with a key: it accepts no subscription over UDP
/// (its sender could not prove the key), and interactive chat runs on UDP.
fn no_events(t: &Target, command: &str) -> Failure {
    Failure::new(
        FailKind::Auth,
        format!(
            "`{command}` cannot work with {}: a device with a key accepts no subscription to its events over UDP",
            t.device_name()
        ),
    )
    .hint(format!(
        "`{}` sends one message over a sealed session, and `{}` prints its events",
        t.command("--key-file FILE chat -m TEXT"),
        t.command("--key-file FILE listen")
    ))
}

/// Whether the device requires its key: known from a key given (the handshake will tell), else
/// from its hello.
fn keyed(t: &Target, out: &Reporter) -> Result<bool> {
    if t.has_key() {
        return Ok(true);
    }
    probe(t, out, Need::Read)?;
    Ok(t.device_info().is_some_and(|i| i.key_required))
}

fn postcard_meta<'a, T: serde::Deserialize<'a>>(meta: &'a [u8]) -> Result<T> {
    postcard::from_bytes(meta)
        .map_err(|_| Failure::new(FailKind::Protocol, "the device's UDP answer has unreadable metadata"))
}

fn unsynced_hint(t: &Target) -> String {
    format!(
        "the device clock was never set: it counts from 1970 since boot; set it with `{}`",
        t.command("time set")
    )
}

pub fn time_get(t: &Target, out: &Reporter, format: &str) -> Result<()> {
    let (text, clock) = if t.addr.is_serial() {
        // A serial line has no UDP: the same service over the session.
        let c = open(t, out)?.clock(format)?;
        let synced = c.synced;
        (
            c.text,
            msg::Time {
                unix_ms: c.unix_ms,
                synced,
            },
        )
    } else {
        let d = client(t, out, "time", Need::Read)?.call(Kind::TimeGet, &msg::TimeGet { format }, &[], TRIES)?;
        let clock: msg::Time = postcard_meta(&d.meta)?;
        (String::from_utf8_lossy(&d.body).into_owned(), clock)
    };
    out.result(
        &text,
        json!({"time": text, "unix_ms": clock.unix_ms, "clock_synced": clock.synced}),
    );
    if !clock.synced {
        out.note(format_args!("note: {}", unsynced_hint(t)));
    }
    Ok(())
}

pub fn time_set(t: &Target, out: &Reporter) -> Result<()> {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // With a key, over the sealed session: a device with a key sets its clock only for a peer
    // that proved the key.
    let clock = if t.addr.is_serial() || t.has_key() {
        let c = open(t, out)?.set_clock(unix_ms)?;
        msg::Time {
            unix_ms: c.unix_ms,
            synced: c.synced,
        }
    } else {
        let d = client(t, out, "time set", Need::Key)?.call(Kind::TimeSet, &msg::Clock { unix_ms }, &[], TRIES)?;
        postcard_meta(&d.meta)?
    };
    out.result(
        format_args!("device clock set to {}", date(clock.unix_ms)),
        json!({"unix_ms": clock.unix_ms, "time": date(clock.unix_ms), "clock_synced": clock.synced}),
    );
    Ok(())
}

/// Sends one chat line over UDP; prints the device's reply (none when it has none now).
fn say(udp: &mut UdpClient, out: &Reporter, from: &str, text: &str, last: bool) -> Result<()> {
    let d = udp.call(Kind::Message, &msg::Message { from }, text.as_bytes(), TRIES)?;
    show_reply(out, &d.meta, &d.body, last)
}

/// Prints the device's answer to a chat line: its metadata names who answers.
fn show_reply(out: &Reporter, meta: &[u8], body: &[u8], last: bool) -> Result<()> {
    let who = postcard_meta::<msg::Message<'_>>(meta)
        .map(|m| m.from.to_string())
        .unwrap_or_default();
    let reply = String::from_utf8_lossy(body);
    let value = json!({"from": who, "reply": reply});
    if last {
        out.result(format_args!("{who}> {reply}"), value);
    } else if !reply.is_empty() {
        out.item(format_args!("{who}> {reply}"), value);
    }
    Ok(())
}

/// (Un)subscribes to the device's events. The one place a subscription is made or renewed.
fn subscribe(udp: &mut UdpClient, on: bool, tries: u32) -> Result<()> {
    udp.call(Kind::Subscribe, &msg::Subscribe { on }, &[], tries)?;
    Ok(())
}

/// The device's refusal of a lease renewal, if `bytes` is one (renewals are sent without waiting).
fn renewal_refused(bytes: &[u8]) -> Option<ClientError> {
    let frame = parse_datagram(bytes, bytes.len().max(64)).ok()?;
    let e = (frame.kind() == Kind::Subscribe).then(|| frame.error()).flatten()?;
    Some(ClientError::Device {
        code: e.code,
        message: e.message.to_string(),
    })
}

/// An event datagram, if `bytes` is one: (seq, topic, data).
fn event(bytes: &[u8]) -> Option<(u32, String, String)> {
    let frame = parse_datagram(bytes, bytes.len().max(64)).ok()?;
    if frame.kind() != Kind::Event {
        return None;
    }
    let ev = frame.meta::<msg::Event<'_>>().ok()?;
    Some((
        ev.seq,
        ev.topic.to_string(),
        String::from_utf8_lossy(frame.body).into_owned(),
    ))
}

/// An event as people read it: `[seq] topic  who: text` (the sim's data is `who: text`).
fn show_event(out: &Reporter, seq: u32, topic: &str, data: &str) {
    let (who, text) = match data.split_once(": ") {
        Some((w, t)) if !w.is_empty() && !w.contains(' ') => (Some(w), t),
        _ => (None, data),
    };
    let human = match who {
        Some(w) => format!("[{seq}] {topic}  {w}: {text}"),
        None => format!("[{seq}] {topic}: {text}"),
    };
    out.item(
        human,
        json!({"seq": seq, "topic": topic, "from": who, "text": text, "data": data}),
    );
}

pub fn chat(t: &Target, out: &Reporter, message: Option<&str>, from: &str) -> Result<()> {
    if let Some(text) = message {
        if t.has_key() && !t.addr.is_serial() {
            // A device with a key takes messages only from a peer that proved the key.
            let mut c = open(t, out)?;
            let frame = c.call(Kind::Message, &msg::Message { from }, text.as_bytes())?;
            return show_reply(out, frame.meta, frame.body, true);
        }
        let mut udp = client(t, out, "chat", Need::Key)?;
        return say(&mut udp, out, from, text, true);
    }
    if !t.addr.is_serial() && keyed(t, out)? {
        return Err(no_events(t, "chat"));
    }
    let mut udp = client(t, out, "chat", Need::Key)?;
    // Interactive: the device's answers may come later, as `chat` events (an operator typing
    // on `sim --chat`), so stay subscribed while reading stdin.
    subscribe(&mut udp, true, TRIES)?;
    out.note("type a message and press Enter; Ctrl-D ends the chat");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 65536];
    let mut sent = 0u32;
    let result = loop {
        match rx.try_recv() {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => {
                if let Err(e) = say(&mut udp, out, from, &line, false) {
                    break Err(e);
                }
                sent += 1;
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => break Ok(()),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let _ = udp.socket().set_read_timeout(Some(Duration::from_millis(50)));
        if let Ok(n) = udp.socket().recv(&mut buf) {
            if let Some((seq, topic, data)) = event(&buf[..n]) {
                // Our own lines come back as `message` events: people saw them as they typed.
                if topic != "message" {
                    show_event(out, seq, &topic, &data);
                }
            }
        }
    };
    let _ = subscribe(&mut udp, false, 1);
    result?;
    out.result(
        format_args!(
            "chat ended after {}",
            tether_host::units::plural(u64::from(sent), "message")
        ),
        json!({"sent": sent}),
    );
    Ok(())
}

pub fn listen(t: &Target, out: &Reporter, count: Option<u32>, duration: Option<Duration>) -> Result<()> {
    if t.addr.is_serial() || t.key_file.is_some() {
        // A serial line has no UDP, and a device with a key pushes events only into a sealed
        // session: subscribe on the session itself.
        return listen_session(t, out, count, duration);
    }
    let mut udp = client(t, out, "listen", Need::Key)?;
    subscribe(&mut udp, true, TRIES)?;
    out.note(format_args!(
        "subscribed to {}; waiting for events (Ctrl-C stops)",
        udp.peer()
    ));
    let start = Instant::now();
    // A subscription is a lease: renew it well before it runs out (a lost renewal has two more
    // chances), without waiting for the answer so that no event is missed meanwhile.
    let renew_every = Duration::from_millis(msg::SUBSCRIBE_LEASE_MS / 3);
    let mut renewed = Instant::now();
    let mut seen = 0u32;
    let mut buf = vec![0u8; 65536];
    let result = loop {
        if count.is_some_and(|n| seen >= n) {
            break Ok(());
        }
        if renewed.elapsed() >= renew_every {
            udp.send(Kind::Subscribe, &msg::Subscribe { on: true }, &[])?;
            renewed = Instant::now();
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
            Err(e) => {
                break Err(Failure::new(
                    FailKind::Connection,
                    format!("receiving events from UDP {} failed ({e})", udp.peer()),
                ))
            }
        };
        if let Some(refused) = renewal_refused(&buf[..n]) {
            break Err(Failure::from(refused));
        }
        let Some((seq, topic, data)) = event(&buf[..n]) else {
            continue;
        };
        seen += 1;
        show_event(out, seq, &topic, &data);
    };
    let _ = subscribe(&mut udp, false, 1);
    result?;
    out.result(
        format_args!("{} received", tether_host::units::plural(u64::from(seen), "event")),
        json!({"events": seen}),
    );
    Ok(())
}

/// How often a quiet `listen` session sends something to stay within the device's idle timeout.
const SESSION_KEEPALIVE: Duration = Duration::from_secs(30);

/// `listen` over a session (TCP or serial, sealed with a key): the session is the subscription,
/// for as long as it lasts.
fn listen_session(t: &Target, out: &Reporter, count: Option<u32>, duration: Option<Duration>) -> Result<()> {
    let mut session = super::open(t, out)?;
    session.call(Kind::Subscribe, &msg::Subscribe { on: true }, &[])?;
    out.note(format_args!(
        "subscribed on the session to {}; waiting for events (Ctrl-C stops)",
        session.peer()
    ));
    let start = Instant::now();
    let mut seen = 0u32;
    let mut last_sent = Instant::now();
    while count.is_none_or(|n| seen < n) && duration.is_none_or(|d| start.elapsed() < d) {
        if last_sent.elapsed() >= SESSION_KEEPALIVE {
            // The device ends sessions that move no byte for its idle timeout (2 min by
            // default); an echo now and then keeps a quiet subscription alive.
            session.send(Kind::Echo, &(), b"")?;
            last_sent = Instant::now();
        }
        // Wait no longer than what is left of --duration (and the next keepalive): the
        // session's timeout would round --duration up to a multiple of itself.
        let mut wait = t.timeout.min(SESSION_KEEPALIVE.saturating_sub(last_sent.elapsed()));
        if let Some(d) = duration {
            wait = wait.min(d.saturating_sub(start.elapsed()));
        }
        let _ = session
            .get_mut()
            .inner_mut()
            .set_read_timeout(wait.max(Duration::from_millis(1)));
        match session.next_event() {
            Ok(Some((seq, topic, data))) => {
                seen += 1;
                show_event(out, seq, &topic, &String::from_utf8_lossy(&data));
            }
            Ok(None) => {}
            // No event within the link's timeout: wait on (the device ends an idle session after
            // its idle timeout, which then shows as a broken connection).
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.result(
        format_args!("{} received", tether_host::units::plural(u64::from(seen), "event")),
        json!({"events": seen}),
    );
    Ok(())
}
