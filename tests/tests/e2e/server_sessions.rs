//! Session rules against hostile or careless peers, on the real server and a real smoltcp peer in
//! one process: the frame deadline, eviction of idle sessions for a new peer, the `Busy` answer
//! when nobody can be evicted, a peer's FIN ending a waiting command, and the garbage budget
//! counting every undecodable frame. The stack's clock is moved forward by hand, so no test waits
//! for real timeouts.

use std::time::Duration;

use crate::common::*;
use tether_core::msg;
use tether_core::server::ServerConfig;
use tether_core::wire::{ErrorCode, Kind};
use tether_sim::device::SESSIONS;
use tether_sim::inproc::{Shared, Stack, StackConfig};

fn stats(stack: &Shared) -> tether_core::service::stats::Stats {
    stack.borrow().server.device.stats.clone()
}

fn advance(stack: &Shared, by: Duration) {
    stack.borrow_mut().advance(by);
    stack.borrow_mut().poll();
}

fn echo_frame(id: u32, body: &[u8]) -> Vec<u8> {
    frame!(Kind::Echo, id, &(), body)
}

#[test]
fn a_new_peer_evicts_the_session_idle_longest() {
    let stack = stack();
    let mut clients: Vec<_> = (0..SESSIONS).map(|_| client(&stack)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.echo(format!("client {i}").as_bytes(), false).unwrap().len(), 8);
        // Client 0 has been quiet longest, then 1, ...
        advance(&stack, Duration::from_millis(300));
    }
    assert_eq!(stack.borrow().server.connected(), SESSIONS);
    let min_idle = ServerConfig::default().limits.evict_idle_ms;
    advance(&stack, Duration::from_millis(min_idle));

    // Every session is taken, yet the new peer is accepted (the spare socket) and served.
    let mut late = client(&stack);
    assert_eq!(late.echo(b"let me in", false).unwrap(), b"let me in");
    assert_eq!(stats(&stack).sessions_evicted, 1);
    assert_eq!(stack.borrow().server.connected(), SESSIONS);

    // The one idle longest was the one dropped; the others carry on.
    assert!(clients[0].echo(b"gone?", false).is_err(), "client 0 was evicted");
    for c in &mut clients[1..] {
        assert_eq!(c.echo(b"still here", false).unwrap(), b"still here");
    }
}

#[test]
fn an_idle_session_is_not_evicted_before_its_minimum() {
    let stack = stack();
    let mut clients: Vec<_> = (0..SESSIONS).map(|_| client(&stack)).collect();
    for c in &mut clients {
        c.hello("t").unwrap();
    }
    // A new peer arrives while every session was active a moment ago: it waits (accepted, not
    // refused, not answered) instead of evicting anybody.
    let mut late = Raw::connect(&stack);
    late.write(&echo_frame(1, b"waiting"));
    stack.borrow_mut().poll();
    assert_eq!(stats(&stack).sessions_evicted, 0);
    for c in &mut clients {
        assert_eq!(c.echo(b"fine", false).unwrap(), b"fine");
    }
    // Once one session has been quiet for the minimum, the waiting peer gets it and its request
    // is answered.
    advance(
        &stack,
        Duration::from_millis(ServerConfig::default().limits.evict_idle_ms),
    );
    let r = late.read();
    assert!(is_response(&r, Kind::Echo, 1) && r.body == b"waiting", "{r:?}");
    assert_eq!(stats(&stack).sessions_evicted, 1);
}

#[test]
fn a_new_peer_gets_busy_when_every_session_stays_active() {
    let stack = stack();
    let config = ServerConfig::default();
    let mut clients: Vec<_> = (0..SESSIONS).map(|_| client(&stack)).collect();
    let mut late = Raw::connect(&stack);
    // Every session moves bytes more often than the eviction minimum, for longer than a new peer
    // may wait.
    let step = Duration::from_millis(config.limits.evict_idle_ms / 2);
    let steps = config.busy_wait_ms / (config.limits.evict_idle_ms / 2) + 2;
    for _ in 0..steps {
        advance(&stack, step);
        for c in &mut clients {
            assert_eq!(c.echo(b"busy", false).unwrap(), b"busy");
        }
    }
    let r = late.read();
    assert_eq!(r.error(), Some(ErrorCode::Busy), "{r:?}");
    assert!(r.message().contains("every session"), "{}", r.message());
    assert!(late.read_to_close(Duration::from_secs(5)).is_empty());
    let st = stats(&stack);
    assert_eq!((st.sessions_refused, st.sessions_evicted), (1, 0));

    // The refused peer cost nobody anything, and the port listens again.
    for c in &mut clients {
        assert_eq!(c.echo(b"unaffected", false).unwrap(), b"unaffected");
    }
    drop(clients.pop());
    let mut next = client(&stack);
    assert_eq!(next.echo(b"in", false).unwrap(), b"in");
}

/// PROTOCOL.md §7, §13: the `Busy` refusal is one of the frames a device sends unasked (request id
/// 0), so a client waiting for the answer to its own request recognises it and reports the busy
/// device, not a protocol error.
#[test]
fn a_client_waiting_for_its_answer_recognises_the_unasked_busy_refusal() {
    let stack = stack();
    let config = ServerConfig::default();
    let mut clients: Vec<_> = (0..SESSIONS).map(|_| client(&stack)).collect();
    let mut late = client(&stack);
    let id = late.send(Kind::Hello, &msg::Hello { client: "late" }, &[]).unwrap();
    let step = Duration::from_millis(config.limits.evict_idle_ms / 2);
    for _ in 0..config.busy_wait_ms / (config.limits.evict_idle_ms / 2) + 2 {
        advance(&stack, step);
        for c in &mut clients {
            assert_eq!(c.echo(b"busy", false).unwrap(), b"busy");
        }
    }
    assert_eq!(stats(&stack).sessions_refused, 1);
    let e = late.receive(id).map(|_| ()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
    // The refusal of the connection, not a `Busy` answer to the request.
    assert!(matches!(e, tether_host::ClientError::Full(_)), "{e:?}");
    assert!(e.to_string().contains("every session is in use"), "{e}");
}

#[test]
fn a_drip_fed_frame_is_cut_off_at_the_frame_deadline() {
    let stack = stack();
    let deadline = ServerConfig::default().limits.frame_ms;
    let request = echo_frame(7, b"one byte at a time");

    // A frame that arrives in pieces but within the deadline is answered.
    let mut patient = Raw::connect(&stack);
    let (head, tail) = request.split_at(10);
    patient.write(head);
    advance(&stack, Duration::from_millis(deadline - 1000));
    patient.write(tail);
    let r = patient.read();
    assert!(is_response(&r, Kind::Echo, 7), "{r:?}");

    // One byte a second never finishes the frame: the session is reset once the deadline
    // passes, although bytes keep arriving (so the idle timeout alone would never fire).
    let mut drip = Raw::connect(&stack);
    let mut cut = false;
    for (i, b) in request.iter().enumerate() {
        if !drip.conn.is_open() {
            cut = true;
            assert!(i as u64 * 1000 > deadline, "cut after {i} s, before the deadline");
            break;
        }
        let _ = embedded_io::Write::write(&mut drip.conn, &[*b]);
        advance(&stack, Duration::from_secs(1));
    }
    assert!(cut, "a drip-fed frame must not be served");
    assert_eq!(stats(&stack).frame_timeouts, 1);
    // The patient session was not affected.
    patient.write(&echo_frame(8, b"ok"));
    assert!(is_response(&patient.read(), Kind::Echo, 8));
}

#[test]
fn a_fin_ends_a_waiting_command_and_frees_the_session() {
    let stack = stack();
    let mut raw = Raw::connect(&stack);
    let req = msg::ExecRequest {
        command: "sleep",
        args: ["999999999"].into_iter().collect(),
    };
    raw.write(&frame!(Kind::Exec, 1, &req, &[]));
    for _ in 0..20 {
        stack.borrow_mut().poll();
    }
    assert_eq!(stack.borrow().server.connected(), 1);
    raw.conn.close();
    // No answer for the sleep ever comes; the device closes its side at once instead of holding
    // the session in CLOSE-WAIT until the idle timeout.
    assert!(raw.read_to_close(Duration::from_secs(5)).is_empty());
    assert_eq!(stack.borrow().server.connected(), 0);
    assert_eq!(stats(&stack).sessions_active, 0);
}

#[test]
fn requests_sent_before_a_fin_are_still_answered() {
    let stack = stack();
    let mut raw = Raw::connect(&stack);
    let mut both = echo_frame(1, b"first");
    both.extend(echo_frame(2, b"second"));
    raw.write(&both);
    raw.conn.close();
    let a = raw.read();
    let b = raw.read();
    assert_eq!((a.body.as_slice(), b.body.as_slice()), (&b"first"[..], &b"second"[..]));
    assert!(raw.read_to_close(Duration::from_secs(5)).is_empty());
}

#[test]
fn a_peer_reconnecting_at_once_always_finds_a_listener() {
    let stack = Stack::new(StackConfig::default());
    let mut keep: Vec<_> = (0..SESSIONS - 1).map(|_| client(&stack)).collect();
    for c in &mut keep {
        c.hello("t").unwrap();
    }
    for round in 0..20 {
        let mut c = client(&stack);
        assert_eq!(c.echo(b"hi", false).unwrap(), b"hi", "round {round}");
        c.into_inner().close();
    }
}

/// A keyed device whose every session holds a message 1 it answered (replays of recordings it
/// has forgotten, or key holders mid-handshake), each within its answer grace.
mod answered {
    use super::*;
    use tether_core::codec::encode_raw;
    use tether_core::secure::{Handshake, Lock, Psk, Role, MSG1_LEN};
    use tether_core::wire::FrameSpec;

    const KEY: [u8; 32] = [0x42; 32];

    /// A `Handshake` request with a message 1 of `key`, its ephemeral drawn from `seed`.
    fn message1(key: [u8; 32], seed: u8) -> Vec<u8> {
        let mut client = Handshake::with_fixed_ephemeral(Role::Initiator, &Psk::from_bytes(key), [seed; 32]);
        let mut m1 = [0u8; MSG1_LEN];
        client.write_message(&mut m1).unwrap();
        let mut frame = vec![0u8; 128];
        let n = encode_raw(&mut frame, FrameSpec::request(Kind::Handshake, 1), &[], &m1).unwrap();
        frame.truncate(n);
        frame
    }

    /// A keyed stack with every session answered, the oldest first; and their message 1s.
    fn full_of_answered() -> (Shared, Vec<Raw>, Vec<Vec<u8>>) {
        let stack = stack();
        stack
            .borrow_mut()
            .server
            .device
            .require_key(Lock::new(Psk::from_bytes(KEY), [5; 32]));
        let mut held = Vec::new();
        let mut sent = Vec::new();
        for i in 0..SESSIONS {
            let m1 = message1(KEY, 10 + i as u8);
            let mut r = Raw::connect(&stack);
            r.write(&m1);
            let answer = r.read();
            assert_eq!(answer.header.kind, Kind::Handshake, "answered");
            assert!(answer.error().is_none(), "{answer:?}");
            held.push(r);
            sent.push(m1);
            stack.borrow_mut().advance(Duration::from_millis(10));
        }
        (stack, held, sent)
    }

    /// Whether `r` gets a frame within `wait` (real time: the answer grace is 1 s of it).
    fn answered_within(r: &mut Raw, wait: Duration) -> Option<Reply> {
        r.conn.set_timeout(wait);
        let mut head = [0u8; 1];
        match embedded_io::Read::read(&mut r.conn, &mut head) {
            Ok(1) => {
                r.conn.set_timeout(Duration::from_secs(5));
                let mut rest = vec![head[0]];
                let mut buf = [0u8; 256];
                let n = embedded_io::Read::read(&mut r.conn, &mut buf).unwrap();
                rest.extend_from_slice(&buf[..n]);
                let f = tether_core::codec::parse_frame(&rest, 4096).expect("one frame");
                Some(Reply {
                    header: f.header,
                    meta: f.meta.to_vec(),
                    body: f.body.to_vec(),
                })
            }
            _ => None,
        }
    }

    /// PROTOCOL.md §13 rule 5: a key holder's fresh message 1 does not wait out the grace of
    /// sessions a replayed (forgotten) message 1 holds: the one answered longest ago gives way at
    /// once. Before, every such session held its place for the grace, and an attacker with a few
    /// dozen recordings, replaying one a second per session, kept key holders out for good.
    #[test]
    fn a_key_holders_fresh_message_1_takes_the_place_of_the_session_answered_longest_ago() {
        let (stack, mut held, _) = full_of_answered();
        let mut holder = Raw::connect(&stack);
        holder.write(&message1(KEY, 99));
        let answer = answered_within(&mut holder, Duration::from_millis(400))
            .expect("message 2 at once, not after the others' grace");
        assert_eq!(answer.header.kind, Kind::Handshake);
        assert!(answer.error().is_none(), "{answer:?}");
        assert_eq!(stats(&stack).sessions_evicted, 1);
        assert!(
            held[0].read_to_close(Duration::from_secs(2)).is_empty(),
            "the oldest gave way"
        );
        for r in &mut held[1..] {
            assert!(r.conn.is_open(), "the others are kept");
        }
    }

    /// What cannot prove the key is answered `Busy` at once and takes no answered session's place:
    /// garbage, a hello, a message 1 of another key, and a message 1 the device answered lately (a
    /// replay it remembers). It waited out the grace on the one listening socket instead, where it
    /// kept every later peer out: behind a queue of such peers and replays of forgotten messages
    /// 1 (`e2e_secure`), a key holder's connection waited until it gave up.
    #[test]
    fn without_a_fresh_message_1_a_new_peer_is_answered_busy_at_once() {
        // Each the first bytes of a new peer, from the message 1s the device answered.
        type First = fn(&[Vec<u8>]) -> Vec<u8>;
        let firsts: [First; 4] = [
            |_| b"garbage and more garbage, seventy-two bytes of it at the very least....".to_vec(),
            |_| frame!(Kind::Hello, 1, &msg::Hello { client: "x" }, &[]),
            |_| message1([7; 32], 1),
            |answered| answered[2].clone(),
        ];
        for first in firsts {
            // A stack each: the grace runs on the real clock.
            let (stack, mut held, sent) = full_of_answered();
            let first = first(&sent);
            let mut late = Raw::connect(&stack);
            late.write(&first);
            let answer = answered_within(&mut late, Duration::from_millis(300)).expect("an answer at once");
            assert_eq!(answer.error(), Some(ErrorCode::Busy), "{first:?}: {answer:?}");
            assert_eq!(stats(&stack).sessions_evicted, 0, "{first:?}");
            for r in &mut held {
                assert!(r.conn.is_open(), "{first:?}: an answered session gave way");
            }
        }
    }

    /// A new peer that says nothing while no session can give way is reset once a key holder's
    /// message 1 would have come (20 ms), so the listening socket is back for the next peer: a key
    /// holder behind it gets in at once.
    #[test]
    fn a_silent_new_peer_is_reset_and_a_key_holder_after_it_gets_in() {
        let (stack, _held, _) = full_of_answered();
        let mut silent = Raw::connect(&stack);
        let start = std::time::Instant::now();
        assert!(silent.read_to_close(Duration::from_secs(2)).is_empty());
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
        let mut holder = Raw::connect(&stack);
        holder.write(&message1(KEY, 99));
        let answer = answered_within(&mut holder, Duration::from_millis(400)).expect("message 2");
        assert_eq!(answer.header.kind, Kind::Handshake);
        assert!(answer.error().is_none(), "{answer:?}");
        assert_eq!(stats(&stack).sessions_evicted, 1);
    }
}
