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
