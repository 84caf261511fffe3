//! The plain-socket services in process (smoltcp's loopback, no OS networking, no forwarder in
//! between): the upper-echo pool, the remote-command framing byte for byte, hostile and slow
//! clients, and the anti-amplification cap of the time and chat ports. The tutorials' own client programs run
//! against the real binaries in `tutorial.rs`.

use std::io::ErrorKind;
use std::time::Duration;

use crate::common::*;
use embedded_io::{Read as _, Write as _};
use tether_core::server::PLAIN_REPLY_FLOOR;
use tether_sim::device::{PLAIN_CLIENTS, PLAIN_COMMAND_CLIENTS};
use tether_sim::inproc::{Conn, Shared, Stack};

fn ports(stack: &Shared) -> (u16, u16, u16, u16) {
    let c = *stack.borrow().server.config();
    (
        c.plain_tcp_port,
        c.plain_command_port,
        c.plain_command_json_port,
        c.plain_chat_port,
    )
}

fn read_exactly(conn: &mut Conn, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    conn.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("reading {want} bytes: {e:?}"));
    got
}

fn echo_once(conn: &mut Conn, text: &[u8]) {
    conn.write_all(text).unwrap();
    assert_eq!(read_exactly(conn, text.len()), text.to_ascii_uppercase());
}

/// One reply of the length-prefixed command port.
fn length_reply(conn: &mut Conn) -> String {
    let n = i32::from_le_bytes(read_exactly(conn, 4).try_into().unwrap());
    assert!(n >= 0, "negative length {n}");
    String::from_utf8(read_exactly(conn, n as usize)).expect("UTF-8 output")
}

/// One reply of the JSON-header command port: (header, output).
fn json_reply(conn: &mut Conn) -> (serde_json::Value, Vec<u8>) {
    let h = i32::from_le_bytes(read_exactly(conn, 4).try_into().unwrap());
    let header: serde_json::Value = serde_json::from_slice(&read_exactly(conn, h as usize)).expect("a JSON header");
    let n = header["total_size"].as_u64().expect("total_size") as usize;
    (header, read_exactly(conn, n))
}

#[test]
fn echo_pool_takes_an_immediate_reconnect_every_time() {
    let stack = stack();
    let (echo, ..) = ports(&stack);
    for round in 0..20u32 {
        let mut a = Stack::connect(&stack, echo).unwrap();
        echo_once(&mut a, format!("round {round}").as_bytes());
        // Close and connect again at once: the old connection is still closing (its socket is
        // not listening yet), so the new one needs another listening socket.
        if round % 2 == 0 {
            a.close();
        } else {
            a.abort();
        }
        let mut b = Stack::connect(&stack, echo).unwrap_or_else(|e| panic!("round {round}: reconnect refused: {e}"));
        echo_once(&mut b, b"again");
    }
}

#[test]
fn echo_serves_its_clients_at_once_and_refuses_only_past_the_pool() {
    let stack = stack();
    let (echo, ..) = ports(&stack);
    let pool = PLAIN_CLIENTS + 1;
    let mut conns: Vec<Conn> = (0..pool).map(|_| Stack::connect(&stack, echo).unwrap()).collect();
    // Interleaved: each client writes, then each reads back exactly its own bytes.
    for round in 0..10u32 {
        let sent: Vec<Vec<u8>> = (0..pool)
            .map(|i| format!("client {i} round {round} {}", "q".repeat(i * 300)).into_bytes())
            .collect();
        for (c, s) in conns.iter_mut().zip(&sent) {
            c.write_all(s).unwrap();
        }
        for (c, s) in conns.iter_mut().zip(&sent) {
            assert_eq!(read_exactly(c, s.len()), s.to_ascii_uppercase());
        }
    }
    // One more than the pool: refused, like a full listen backlog...
    match Stack::connect(&stack, echo) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a connection past the pool of {pool} was accepted"),
    }
    // ...and served once a client leaves.
    conns.pop().unwrap().close();
    let mut late = Stack::connect(&stack, echo).expect("served after a client left");
    echo_once(&mut late, b"late");
}

#[test]
fn idle_plain_connections_are_reset_and_free_their_socket() {
    let stack = stack();
    let (echo, cmd, ..) = ports(&stack);
    let mut held: Vec<Conn> = (0..=PLAIN_CLIENTS)
        .map(|_| Stack::connect(&stack, echo).unwrap())
        .collect();
    let mut held_cmd: Vec<Conn> = (0..=PLAIN_COMMAND_CLIENTS)
        .map(|_| Stack::connect(&stack, cmd).unwrap())
        .collect();
    assert!(Stack::connect(&stack, echo).is_err(), "the pool was not full");
    let idle = stack.borrow().server.config().limits.idle_ms;
    stack.borrow_mut().advance(Duration::from_millis(idle + 1000));
    stack.borrow_mut().poll();
    stack.borrow_mut().advance(Duration::from_millis(10));
    stack.borrow_mut().poll();
    for c in held.iter_mut().chain(held_cmd.iter_mut()) {
        c.set_timeout(Duration::from_secs(2));
        let mut b = [0u8; 8];
        let r = c.read(&mut b);
        assert!(
            matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() != ErrorKind::TimedOut),
            "an idle plain connection was not reset: {r:?}"
        );
    }
    let mut fresh = Stack::connect(&stack, echo).expect("a socket was freed");
    echo_once(&mut fresh, b"fresh");
}

#[test]
fn command_replies_byte_for_byte() {
    let stack = stack();
    let (_, cmd, json, _) = ports(&stack);
    let mut c = Stack::connect(&stack, cmd).unwrap();
    c.write_all(b"count 3\n").unwrap();
    assert_eq!(read_exactly(&mut c, 4 + 6), b"\x06\x00\x00\x001\n2\n3\n");
    let mut j = Stack::connect(&stack, json).unwrap();
    j.write_all(b"count 3\r\n").unwrap();
    let want = concat!(
        "{\"file_name\":\"count\",\"md5\":\"c0710d6b4f15dfa88f600b0e6b624077\",\"total_size\":6}",
        "1\n2\n3\n"
    );
    let got = read_exactly(&mut j, 4 + want.len());
    assert_eq!(&got[..4], &77i32.to_le_bytes());
    assert_eq!(std::str::from_utf8(&got[4..]).unwrap(), want);
}

#[test]
fn command_lines_in_any_segmentation_and_bad_lines_answered_in_order() {
    let stack = stack();
    let (_, cmd, ..) = ports(&stack);
    let mut c = Stack::connect(&stack, cmd).unwrap();
    // A command without a newline ends when the client pauses (the tutorials' client).
    c.write_all(b"led on").unwrap();
    assert_eq!(length_reply(&mut c), "led on\n");
    // Sticky: several lines (and blank ones) in one write, answered in order.
    let too_long = format!("{}\n", "x".repeat(300));
    let many_words = format!("{}\n", "w ".repeat(20));
    let mut batch = b"\n  \r\nled status\nnope\n".to_vec();
    batch.extend_from_slice(too_long.as_bytes());
    batch.extend_from_slice(b"\xff\xfe\n");
    batch.extend_from_slice(many_words.as_bytes());
    batch.extend_from_slice(b"fail 3\n");
    c.write_all(&batch).unwrap();
    assert_eq!(length_reply(&mut c), "led on\n");
    assert_eq!(length_reply(&mut c), "error: unknown command; try `help`\n");
    assert_eq!(
        length_reply(&mut c),
        "error: the command line is longer than 255 bytes\n"
    );
    assert_eq!(length_reply(&mut c), "error: the command line is not UTF-8\n");
    assert_eq!(length_reply(&mut c), "error: too many arguments (at most 15)\n");
    assert_eq!(length_reply(&mut c), "failing with status 3\n");
    // A line split into one-byte writes, with pauses longer than the grace between them:
    // after the first newline only a newline ends a line.
    for b in b"led toggle\n" {
        c.write_all(&[*b]).unwrap();
        stack.borrow_mut().poll();
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(length_reply(&mut c), "led off\n");
}

#[test]
fn command_output_past_the_transmit_buffer_is_an_error_never_a_wrong_length() {
    let stack = stack();
    let (_, cmd, json, _) = ports(&stack);
    let mut c = Stack::connect(&stack, cmd).unwrap();
    c.write_all(b"count 20000\ncount 5000\n").unwrap();
    let out = length_reply(&mut c);
    assert!(out.starts_with("error: the output is longer than "), "{out}");
    let out = length_reply(&mut c);
    assert_eq!(out.lines().count(), 5000, "a long output that fits comes whole");
    let mut j = Stack::connect(&stack, json).unwrap();
    j.write_all(b"count 20000\n").unwrap();
    let (header, body) = json_reply(&mut j);
    assert_eq!(header["file_name"], "error");
    assert!(body.starts_with(b"error: the output is longer"));
}

#[test]
fn a_waiting_command_and_a_client_that_never_reads_hold_up_no_one() {
    let stack = stack();
    let (_, cmd, json, _) = ports(&stack);
    // A client that pipelines long commands and never reads its replies.
    let mut hog = Stack::connect(&stack, cmd).unwrap();
    hog.set_timeout(Duration::from_millis(300));
    let mut written = 0;
    for _ in 0..200 {
        match hog.write(b"count 2000\n") {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    let lines = written / 11;
    assert!(lines >= 10, "only {lines} lines taken");
    // A sleeping command on the other port.
    let mut sleeper = Stack::connect(&stack, json).unwrap();
    sleeper.write_all(b"sleep 300\n").unwrap();
    // Meanwhile another client is answered at once.
    let mut other = Stack::connect(&stack, cmd).unwrap();
    other.write_all(b"uptime\n").unwrap();
    assert!(length_reply(&mut other).starts_with("up "));
    let (header, body) = json_reply(&mut sleeper);
    assert_eq!(
        (header["file_name"].as_str(), &body[..]),
        (Some("sleep"), &b"slept 300 ms\n"[..])
    );
    // The hog's replies were held back, not dropped: every whole line written is answered.
    hog.set_timeout(Duration::from_secs(10));
    let want: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    for i in 0..lines {
        assert_eq!(length_reply(&mut hog), want, "reply {i} of {lines}");
    }
}

#[test]
fn chat_answers_text_and_never_much_more_than_was_asked() {
    let stack = stack();
    let (.., chat) = ports(&stack);
    let mut d = Stack::udp(&stack);
    let reply = String::from_utf8(udp_exchange(&mut d, chat, b"hello device\n")).unwrap();
    assert!(reply.starts_with("got 12 bytes from 127.0.0.1:"), "{reply}");
    {
        let st = stack.borrow();
        let (from, text) = st.server.device.ctx.inbox.last().expect("the line reached the inbox");
        assert_eq!(text, "hello device");
        assert!(from.starts_with("127.0.0.1:"), "{from}");
    }
    // A long answer to a short request is cut to the floor; to a long request, to its size.
    let long = "é".repeat(400);
    for (request, cap) in [(&b"hi"[..], PLAIN_REPLY_FLOOR), (&[b'x'; 301][..], 301)] {
        stack.borrow_mut().server.device.ctx.replies = tether_sim::device::Replies::Fixed(long.clone());
        let reply = udp_exchange(&mut d, chat, request);
        assert!(
            reply.len() <= cap && reply.len() >= cap - 1,
            "{} bytes for {cap}",
            reply.len()
        );
        assert!(std::str::from_utf8(&reply).is_ok(), "cut inside a character");
    }
    stack.borrow_mut().server.device.ctx.replies = tether_sim::device::Replies::Auto;
    let reply = udp_exchange(&mut d, chat, b"\xff\xfe");
    assert_eq!(reply, b"error: the message is not UTF-8");
    // An empty datagram gets nothing; the next one is answered as usual.
    d.send(chat, b"").unwrap();
    assert!(
        d.recv(Duration::from_millis(200)).is_none(),
        "an empty datagram was answered"
    );
    assert!(udp_exchange(&mut d, chat, b"still there?").starts_with(b"got 12 bytes"));
}

#[test]
fn time_replies_are_never_longer_than_the_request_or_the_floor() {
    let stack = stack();
    let time = stack.borrow().server.config().plain_udp_port;
    let mut d = Stack::udp(&stack);
    let cap = |request: &[u8]| request.len().max(PLAIN_REPLY_FLOOR);
    // "%A" is 2 bytes and up to 9 ("Wednesday") in the reply: the amplifier to defuse.
    for n in 1..=150 {
        let request = "%A".repeat(n);
        let reply = udp_exchange(&mut d, time, request.as_bytes());
        assert!(
            reply.len() <= cap(request.as_bytes()),
            "{} bytes answered {} bytes of \"%A\" x {n}",
            reply.len(),
            request.len()
        );
        let text = String::from_utf8(reply).expect("a text reply");
        // Either the whole time (every name is 6 to 9 letters) or an error line, never a cut.
        let whole = text.len() >= 6 * n && text.len() <= 9 * n && text.chars().all(|c| c.is_ascii_alphabetic());
        assert!(whole || text.starts_with("error: "), "{n}: {text:?}");
        if 9 * n <= PLAIN_REPLY_FLOOR {
            assert!(whole, "a time that fits the floor was refused: {text:?}");
        }
    }
    // Too long for its request: said so, with the remedy.
    let request = "%A".repeat(20);
    let reply = String::from_utf8(udp_exchange(&mut d, time, request.as_bytes())).unwrap();
    assert_eq!(
        reply,
        "error: the time is longer than the request; pad it with newlines"
    );
    // Padded with newlines (ignored in the format), the same format gets the whole time.
    let padded = format!("{request}{}", "\n".repeat(200));
    let reply = String::from_utf8(udp_exchange(&mut d, time, padded.as_bytes())).unwrap();
    assert!(reply.len() >= 120 && reply.len() <= 180, "{reply:?}");
    assert!(reply.chars().all(|c| c.is_ascii_alphabetic()), "{reply:?}");
    // Error texts are capped too: an unsupported specifier names the whole set (over 64 bytes).
    let reply = udp_exchange(&mut d, time, b"%Q");
    assert!(reply.starts_with(b"error: unsupported specifier"), "{reply:?}");
    assert_eq!(reply.len(), PLAIN_REPLY_FLOOR, "the error line is cut to the floor");
    let reply = udp_exchange(&mut d, time, b"\xff");
    assert_eq!(reply, b"error: the format is not UTF-8");
    // The default format still answers an empty datagram.
    let reply = String::from_utf8(udp_exchange(&mut d, time, b"")).unwrap();
    assert_eq!(reply.len(), "1970-01-01 00:00:00".len(), "{reply:?}");
}

#[test]
fn a_reboot_resets_plain_connections_and_the_pools_listen_again() {
    let stack = stack();
    let (echo, cmd, ..) = ports(&stack);
    let mut e = Stack::connect(&stack, echo).unwrap();
    echo_once(&mut e, b"before");
    let mut c = Stack::connect(&stack, cmd).unwrap();
    // The reboot command through the plain command port itself.
    c.write_all(b"reboot\n").unwrap();
    assert_eq!(length_reply(&mut c), "rebooting\n");
    for conn in [&mut e, &mut c] {
        conn.set_timeout(Duration::from_secs(5));
        let mut b = [0u8; 8];
        let r = conn.read(&mut b);
        assert!(
            matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() != ErrorKind::TimedOut),
            "a plain connection outlived the reboot: {r:?}"
        );
    }
    let mut e = Stack::connect(&stack, echo).expect("the echo pool listens after the reboot");
    echo_once(&mut e, b"after");
    let mut c = Stack::connect(&stack, cmd).expect("the command pool listens after the reboot");
    c.write_all(b"led status\n").unwrap();
    assert_eq!(length_reply(&mut c), "led off\n");
}

#[test]
fn on_a_device_with_a_key_the_plain_ports_run_nothing_and_inject_nothing() {
    use tether_core::secure::{Lock, Psk};
    let stack = stack();
    stack
        .borrow_mut()
        .server
        .device
        .require_key(Lock::new(Psk::from_bytes([9; 32]), [3; 32]));
    let (echo, cmd, json, chat) = ports(&stack);
    let mut c = Stack::connect(&stack, cmd).unwrap();
    c.write_all(b"reboot\n").unwrap();
    let reply = length_reply(&mut c);
    assert!(reply.starts_with("error: this device requires its key"), "{reply}");
    let mut j = Stack::connect(&stack, json).unwrap();
    j.write_all(b"count 3\n").unwrap();
    let (header, output) = json_reply(&mut j);
    assert_eq!(header["file_name"], "error");
    assert!(output.starts_with(b"error: this device requires its key"));
    let mut d = Stack::udp(&stack);
    let reply = udp_exchange(&mut d, chat, b"spoofed message\n");
    assert_eq!(reply, b"error: this device requires its key");
    assert!(stack.borrow().server.device.ctx.inbox.is_empty(), "a message got in");
    // Changing nothing, the upper-echo still answers.
    let mut e = Stack::connect(&stack, echo).unwrap();
    echo_once(&mut e, b"still here");
}
