//! The framed UDP port against hostile peers: it never answers with more bytes than it was
//! sent, and subscriptions are leases that lapse when their subscribers vanish.

use std::time::Duration;

use crate::common::*;
use tether_core::msg;
use tether_core::server::MAX_SUBSCRIBERS;
use tether_core::wire::{ErrorCode, Kind};
use tether_sim::inproc::{Datagrams, Shared, Stack};

const QUIET: Duration = Duration::from_millis(200);

fn udp_port(stack: &Shared) -> u16 {
    stack.borrow().server.config().udp_port
}

/// `frame` padded with zeros to `len` bytes.
fn pad_to(frame: &[u8], len: usize) -> Vec<u8> {
    let mut d = frame.to_vec();
    d.resize(len.max(frame.len()), 0);
    d
}

fn dropped(stack: &Shared) -> u32 {
    stack.borrow().server.device.stats.udp_dropped
}

#[test]
fn an_answer_is_never_larger_than_its_request() {
    let stack = stack();
    // Info carries the uptime as a varint: hold its width steady (3 bytes from 16.4 s on).
    stack.borrow_mut().poll();
    stack.borrow_mut().advance(Duration::from_secs(20));
    let port = udp_port(&stack);
    let mut d = Stack::udp(&stack);
    let hello = frame!(Kind::Hello, 1, &msg::Hello { client: "" }, &[]);
    assert_eq!(hello.len(), 25, "the smallest Hello");
    // Padded to the full datagram size, the Hello gets its Info.
    let info = udp_call(&mut d, port, &hello);
    let r = parse(&info);
    assert!(
        is_response(&r, Kind::Hello, 1) && r.error().is_none(),
        "{}",
        r.message()
    );
    assert!(
        info.len() > hello.len() * 2,
        "Info ({} bytes) would amplify a bare Hello",
        info.len()
    );
    // Bare: no answer at all (not even the short error fits in 25 bytes), and counted.
    let before = dropped(&stack);
    udp_silence(&mut d, port, &hello, QUIET);
    assert_eq!(dropped(&stack), before + 1);
    // Too short for Info but not for the short error: the error says what size it needs.
    let short = udp_exchange(&mut d, port, &pad_to(&hello, 64));
    assert!(short.len() <= 64, "{} bytes", short.len());
    let r = parse(&short);
    assert!(is_response(&r, Kind::Hello, 1));
    assert_eq!(r.error(), Some(ErrorCode::PadRequest));
    let need: usize = r
        .message()
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no size in {:?}", r.message()));
    assert_eq!(need, info.len(), "{}", r.message());
    // Padded to exactly that: answered; one byte less: refused again.
    let exact = udp_exchange(&mut d, port, &pad_to(&hello, need));
    assert_eq!((exact.len(), parse(&exact).error()), (need, None));
    let r = parse(&udp_exchange(&mut d, port, &pad_to(&hello, need - 1)));
    assert_eq!(r.error(), Some(ErrorCode::PadRequest));
    // An answer exactly as large as its request is allowed: an unpadded Echo comes back whole.
    let echo = frame!(Kind::Echo, 2, &(), b"same size");
    let back = udp_exchange(&mut d, port, &echo);
    assert_eq!((back.len(), parse(&back).body), (echo.len(), b"same size".to_vec()));
}

#[test]
fn no_request_of_any_size_is_amplified() {
    let stack = stack();
    let port = udp_port(&stack);
    let mut d = Stack::udp(&stack);
    let requests = [
        frame!(Kind::Hello, 1, &msg::Hello { client: "x" }, &[]),
        frame!(Kind::Echo, 2, &(), b"0123456789"),
        frame!(Kind::TimeGet, 3, &msg::TimeGet { format: "%A %B" }, &[]),
        frame!(Kind::TimeSet, 4, &msg::Clock { unix_ms: 1 }, &[]),
        frame!(
            Kind::TimeSet,
            5,
            &msg::Clock {
                unix_ms: 1_795_306_516_000
            },
            &[]
        ),
        frame!(Kind::Message, 6, &msg::Message { from: "a" }, b"b"),
        frame!(Kind::Subscribe, 7, &msg::Subscribe { on: true }, &[]),
        frame!(Kind::Subscribe, 8, &msg::Subscribe { on: false }, &[]),
        frame!(Kind::Exec, 9, &("help", &[] as &[&str]), &[]),
        frame!(Kind::Unknown(0x7e), 10, &(), &[]),
        frame!(Kind::TimeGet, 11, &(), &[]),
    ];
    let mut answered = 0;
    for req in &requests {
        for len in [req.len(), 40, 64, 100, 200, 400, msg::MAX_DATAGRAM] {
            let datagram = pad_to(req, len);
            d.send(port, &datagram).unwrap();
            if let Some((reply, _)) = d.recv(QUIET) {
                assert!(
                    reply.len() <= datagram.len(),
                    "{:?}: {} bytes answered with {}",
                    parse(req).header.kind,
                    datagram.len(),
                    reply.len()
                );
                answered += 1;
            }
        }
    }
    assert!(answered >= requests.len(), "full-size requests are all answered");
    // A datagram larger than the protocol's limit is dropped even if it is only padding.
    let before = dropped(&stack);
    udp_silence(&mut d, port, &pad_to(&requests[1], msg::MAX_DATAGRAM + 1), QUIET);
    assert_eq!(dropped(&stack), before + 1);
}

#[test]
fn a_subscription_needs_a_full_datagram() {
    let stack = stack();
    let port = udp_port(&stack);
    let mut d = Stack::udp(&stack);
    let sub = frame!(Kind::Subscribe, 1, &msg::Subscribe { on: true }, &[]);
    // A bare Subscribe is answered by an empty response no larger than itself, but granting
    // it would let a forged source be sent events unasked.
    udp_silence(&mut d, port, &sub, QUIET);
    let r = parse(&udp_exchange(&mut d, port, &pad_to(&sub, 512)));
    assert_eq!(r.error(), Some(ErrorCode::PadRequest));
    assert!(r.message().contains("1024"), "{}", r.message());
    assert!(stack.borrow().server.subscribers().is_empty());
    let r = parse(&udp_call(&mut d, port, &sub));
    assert_eq!(r.error(), None, "{}", r.message());
    assert_eq!(stack.borrow().server.subscribers().len(), 1);
}

fn subscribe(d: &mut Datagrams, port: u16, id: u32) -> Option<ErrorCode> {
    parse(&udp_call(
        d,
        port,
        &frame!(Kind::Subscribe, id, &msg::Subscribe { on: true }, &[]),
    ))
    .error()
}

/// Triggers an event (the message's echo to subscribers) from a peer that is not subscribed.
fn event(stack: &Shared) {
    let port = udp_port(stack);
    let mut other = Stack::udp(stack);
    let r = parse(&udp_call(
        &mut other,
        port,
        &frame!(Kind::Message, 99, &msg::Message { from: "t" }, b"e"),
    ));
    assert_eq!(r.error(), None);
}

#[test]
fn vanished_subscribers_lapse_and_free_their_slots() {
    let stack = stack();
    let port = udp_port(&stack);
    // Four peers subscribe and vanish.
    for i in 0..MAX_SUBSCRIBERS {
        let mut gone = Stack::udp(&stack);
        assert_eq!(subscribe(&mut gone, port, i as u32 + 1), None);
    }
    let mut late = Stack::udp(&stack);
    assert_eq!(subscribe(&mut late, port, 10), Some(ErrorCode::NoSpace));
    // Just before the lease ends the slots are still taken; after it they are free.
    stack
        .borrow_mut()
        .advance(Duration::from_millis(msg::SUBSCRIBE_LEASE_MS - 1_000));
    assert_eq!(subscribe(&mut late, port, 11), Some(ErrorCode::NoSpace));
    stack.borrow_mut().advance(Duration::from_millis(1_500));
    assert_eq!(subscribe(&mut late, port, 12), None);
    assert_eq!(stack.borrow().server.subscribers().len(), 1);
}

#[test]
fn renewing_keeps_a_subscription_and_a_lapsed_one_gets_no_events() {
    let stack = stack();
    let port = udp_port(&stack);
    let mut d = Stack::udp(&stack);
    let third = Duration::from_millis(msg::SUBSCRIBE_LEASE_MS / 3);
    assert_eq!(subscribe(&mut d, port, 1), None);
    for i in 0..4 {
        // Renewed every third of a lease, it outlives several leases.
        stack.borrow_mut().advance(third * 2);
        assert_eq!(subscribe(&mut d, port, 2 + i), None);
    }
    event(&stack);
    let (bytes, _) = d
        .recv(Duration::from_secs(5))
        .expect("an event for a renewed subscription");
    assert_eq!(parse(&bytes).header.kind, Kind::Event);
    // Not renewed: the lease lapses and the events stop, though nobody unsubscribed.
    stack
        .borrow_mut()
        .advance(Duration::from_millis(msg::SUBSCRIBE_LEASE_MS + 1));
    event(&stack);
    assert!(d.recv(QUIET).is_none(), "an event after the lease ran out");
    assert!(stack.borrow().server.subscribers().is_empty());
}

#[test]
fn a_device_with_a_key_grants_no_datagram_subscription_and_takes_no_datagram_change() {
    use tether_core::secure::{Lock, Psk};
    let stack = stack();
    stack
        .borrow_mut()
        .server
        .device
        .require_key(Lock::new(Psk::from_bytes([4; 32]), [5; 32]));
    let port = udp_port(&stack);
    let mut d = Stack::udp(&stack);
    assert_eq!(subscribe(&mut d, port, 1), Some(ErrorCode::Unauthorized));
    assert!(
        stack.borrow().server.subscribers().is_empty(),
        "a forged source could be sent events"
    );
    let set = frame!(
        Kind::TimeSet,
        2,
        &msg::Clock {
            unix_ms: 1_800_000_000_000
        },
        &[]
    );
    assert_eq!(
        parse(&udp_call(&mut d, port, &set)).error(),
        Some(ErrorCode::Unauthorized)
    );
    let message = frame!(Kind::Message, 3, &msg::Message { from: "spoof" }, b"hi");
    assert_eq!(
        parse(&udp_call(&mut d, port, &message)).error(),
        Some(ErrorCode::Unauthorized)
    );
    assert!(stack.borrow().server.device.ctx.inbox.is_empty());
    let read = frame!(Kind::TimeGet, 4, &msg::TimeGet { format: "%F" }, &[]);
    assert_eq!(
        parse(&udp_call(&mut d, port, &read)).error(),
        None,
        "reading still works"
    );
}

#[test]
fn event_numbers_count_from_one_again_after_a_soft_reboot() {
    let stack = stack();
    {
        let mut st = stack.borrow_mut();
        let tether_sim::inproc::Stack { server, sockets, .. } = &mut *st;
        server.publish(sockets, "t", b"1");
        server.publish(sockets, "t", b"2");
        assert_eq!(server.last_event_seq(), 2);
        server.restart(sockets);
        server.publish(sockets, "t", b"after");
        assert_eq!(
            server.last_event_seq(),
            1,
            "PROTOCOL.md §11.10: seq counts from 1 since boot"
        );
    }
}
