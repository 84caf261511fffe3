//! Faults: broken frames, hostile and vanishing peers, idle and surplus connections.

use std::time::Duration;

use crate::common::*;
use sha2::{Digest as _, Sha256};
use tether_core::msg;
use tether_core::server::ServerConfig;
use tether_core::session::Limits;
use tether_core::wire::{ErrorCode, Flags, Header, Kind, HEADER_LEN, MAGIC, VERSION};
use tether_sim::inproc::{Stack, StackConfig};

/// Bytes that never contain a frame's first magic byte.
fn garbage(len: usize, seed: u32) -> Vec<u8> {
    data(len, seed)
        .into_iter()
        .map(|b| if b == MAGIC[0] { b'#' } else { b })
        .collect()
}

/// Sends an echo on a raw connection and reads replies until its answer (bounded), which must
/// come back intact. Returns the error replies read before it.
fn echo_through(raw: &mut Raw, id: u32, body: &[u8]) -> Vec<Reply> {
    raw.write(&frame!(Kind::Echo, id, &(), body));
    let mut before = Vec::new();
    for _ in 0..64 {
        let r = raw.read();
        if is_response(&r, Kind::Echo, id) {
            assert_eq!(r.error(), None, "{}", r.message());
            assert_eq!(r.body, body);
            return before;
        }
        before.push(r);
    }
    panic!("no answer to echo {id}: {before:?}");
}

fn closed_by_device(stack: &tether_sim::inproc::Shared) -> u32 {
    stack.borrow().server.device.stats.sessions_closed_by_device
}

#[test]
fn garbage_gets_a_malformed_reply_and_the_session_goes_on() {
    let stack = stack();
    let mut raw = Raw::connect(&stack);
    raw.write(b"GET / HTTP/1.1\r\nHost: device\r\n\r\n");
    let r = raw.read();
    assert_eq!(r.error(), Some(ErrorCode::Malformed), "{r:?}");
    assert_eq!(r.header.flags, Flags::RESPONSE | Flags::ERROR);
    assert_eq!(r.header.request_id, 0, "garbage has no request id to answer");
    assert!(echo_through(&mut raw, 1, b"after garbage").is_empty());

    // Garbage glued to the front of a valid frame: one error, then the frame's answer.
    let mut glued = b"noise".to_vec();
    glued.extend_from_slice(&frame!(Kind::Upper, 2, &(), b"glued"));
    raw.write(&glued);
    let r = raw.read();
    assert_eq!(r.error(), Some(ErrorCode::Malformed));
    let r = raw.read();
    assert!(is_response(&r, Kind::Upper, 2));
    assert_eq!(r.body, b"GLUED");

    // Up to the garbage limit in total (here in pieces) is tolerated.
    let limit = stack.borrow().server.config().limits.garbage;
    assert_eq!(limit, 4096);
    for piece in garbage(limit, 3).chunks(1024) {
        raw.write(piece);
        let r = raw.read();
        assert_eq!(r.error(), Some(ErrorCode::Malformed));
    }
    let errors = echo_through(&mut raw, 3, b"at the limit");
    assert!(
        errors.iter().all(|r| r.error() == Some(ErrorCode::Malformed)),
        "{errors:?}"
    );
    // A valid frame resets the count.
    for piece in garbage(limit, 4).chunks(2048) {
        raw.write(piece);
        raw.read();
    }
    echo_through(&mut raw, 4, b"again");
    assert_eq!(closed_by_device(&stack), 0);
    assert!(stack.borrow().server.device.stats.decode_errors >= 2 + 4 + 2);
}

#[test]
fn bad_payload_crc_is_answered_with_its_request_id() {
    let stack = stack();
    let mut raw = Raw::connect(&stack);
    let mut bad = frame!(Kind::Echo, 77, &(), b"payload");
    *bad.last_mut().unwrap() ^= 0x40;
    raw.write(&bad);
    let r = raw.read();
    assert_eq!((r.header.kind, r.header.request_id), (Kind::Echo, 77));
    assert_eq!(r.header.flags, Flags::RESPONSE | Flags::ERROR);
    assert_eq!(r.error(), Some(ErrorCode::BadCrc), "{}", r.message());
    assert!(r.body.is_empty());
    assert!(echo_through(&mut raw, 78, b"payload").is_empty());

    // Damaged metadata is a payload CRC error too.
    let mut bad = frame!(Kind::Stat, 79, &msg::NameRef { name: "abc" }, &[]);
    bad[HEADER_LEN + 1] ^= 1;
    raw.write(&bad);
    let r = raw.read();
    assert_eq!(
        (r.header.kind, r.header.request_id, r.error()),
        (Kind::Stat, 79, Some(ErrorCode::BadCrc))
    );

    // A damaged header cannot be trusted for a request id: the device resynchronises on the next
    // frame, answering only with unaddressed Malformed errors meanwhile.
    let mut bad = frame!(Kind::Echo, 80, &(), b"header hit");
    bad[12] ^= 0x80;
    raw.write(&bad);
    let before = echo_through(&mut raw, 81, b"resynchronised");
    assert!(!before.is_empty());
    for r in before {
        assert_eq!(
            (r.error(), r.header.request_id),
            (Some(ErrorCode::Malformed), 0),
            "{r:?}"
        );
    }
    assert_eq!(closed_by_device(&stack), 0);
}

#[test]
fn oversized_frame_is_too_large_and_the_session_goes_on() {
    let stack = stack();
    let mut raw = Raw::connect(&stack);
    for (id, len) in [(90, MAX_ECHO + 1), (91, 100_000), (92, 3 * MAX_FRAME + 17)] {
        raw.write(&frame!(Kind::Echo, id, &(), &data(len, id)));
        let r = raw.read();
        assert_eq!((r.header.kind, r.header.request_id), (Kind::Echo, id));
        assert_eq!(r.error(), Some(ErrorCode::TooLarge), "{}", r.message());
        // The refused frame was skipped exactly: the next one is found.
        assert!(echo_through(&mut raw, id + 100, b"next").is_empty());
    }
    // Large metadata counts too (built by hand: no encoder writes metadata above 512 bytes).
    let mut meta = vec![0x80, 0x80, 0x01]; // postcard varint 16384: a NameRef's name length
    meta.extend(std::iter::repeat_n(b'n', MAX_FRAME));
    let header = Header {
        version: VERSION,
        kind: Kind::Stat,
        flags: Flags::NONE,
        request_id: 93,
        meta_len: meta.len() as u16,
        body_len: 0,
        payload_crc: tether_core::crc32::checksum(&meta),
    };
    let mut big = vec![0u8; HEADER_LEN];
    header.emit(&mut big);
    big.extend_from_slice(&meta);
    raw.write(&big);
    let r = raw.read();
    assert_eq!((r.header.request_id, r.error()), (93, Some(ErrorCode::TooLarge)));
    assert!(echo_through(&mut raw, 193, b"next").is_empty());

    // A version this device does not speak is refused and skipped the same way.
    let mut v2 = frame!(Kind::Echo, 94, &(), b"from the future");
    v2[2] = 2;
    let crc = tether_core::crc32::checksum(&v2[..20]);
    v2[20..24].copy_from_slice(&crc.to_le_bytes());
    raw.write(&v2);
    let r = raw.read();
    assert_eq!((r.header.kind, r.header.request_id), (Kind::Echo, 94));
    assert_eq!(r.error(), Some(ErrorCode::UnsupportedVersion));
    assert!(echo_through(&mut raw, 95, b"still v1").is_empty());
    assert_eq!(closed_by_device(&stack), 0);
}

#[test]
fn misdirected_frames_are_refused() {
    let stack = stack();
    let mut raw = Raw::connect(&stack);
    // An unknown kind.
    raw.write(&frame!(Kind::Unknown(0x6f), 5, &(), b"?"));
    let r = raw.read();
    assert_eq!((r.header.kind, r.header.request_id), (Kind::Unknown(0x6f), 5));
    assert_eq!(r.error(), Some(ErrorCode::UnknownKind));
    // A response sent to the device.
    let mut resp = vec![0u8; 64];
    let spec = tether_core::wire::FrameSpec::response(Kind::Echo, 6);
    let n = tether_core::codec::encode(&mut resp, spec, &(), b"hi").unwrap();
    raw.write(&resp[..n]);
    let r = raw.read();
    assert_eq!((r.header.request_id, r.error()), (6, Some(ErrorCode::InvalidArgument)));
    // An event sent to the device.
    raw.write(&frame!(Kind::Event, 7, &msg::Event { topic: "x", seq: 1 }, &[]));
    assert_eq!(raw.read().error(), Some(ErrorCode::UnknownKind));
    assert!(echo_through(&mut raw, 8, b"fine").is_empty());
}

#[test]
fn a_garbage_only_peer_is_cut_off_while_another_session_works() {
    let stack = stack();
    let mut good = client(&stack);
    assert_eq!(good.echo(b"before", false).unwrap(), b"before");
    let mut raw = Raw::connect(&stack);
    assert_eq!(stack.borrow().server.connected(), 2);
    let limit = stack.borrow().server.config().limits.garbage;
    // More than the limit, in pieces; writes may fail once the device has reset us.
    let junk = garbage(limit + 1000, 7);
    let mut refused = false;
    for piece in junk.chunks(500) {
        if embedded_io::Write::write_all(&mut raw.conn, piece).is_err() {
            refused = true;
            break;
        }
    }
    // Whatever error replies got out first, the connection then ends (EOF or reset).
    let tail = raw.read_to_close(Duration::from_secs(5));
    assert!(tail.len() < limit, "{} bytes of replies", tail.len());
    assert!(!raw.conn.is_open());
    assert_eq!(closed_by_device(&stack), 1, "refused a write: {refused}");
    // The other session did not notice.
    assert_eq!(good.echo(b"after", true).unwrap(), b"AFTER");
    assert_eq!(stack.borrow().server.connected(), 1);
    // The freed session slot takes a new peer.
    let mut next = client(&stack);
    assert_eq!(next.echo(b"next", false).unwrap(), b"next");
}

#[test]
fn an_upload_broken_off_is_invisible_and_resumes_on_a_new_connection() {
    let stack = stack();
    let file = data(10 * MAX_CHUNK + 77, 11);
    let digest = sha(&file);
    let mut a = client(&stack);
    let begin = msg::PutBegin {
        name: "resume.bin",
        size: file.len() as u64,
        sha256: digest,
        overwrite: false,
    };
    let id = a.send(Kind::PutBegin, &begin, &[]).unwrap();
    assert_eq!(answer!(a, id, msg::PutReady).unwrap().offset, 0);
    let held = 4 * MAX_CHUNK;
    send_rest(&mut a, &file[..held], 0);
    // A chunk in flight when the peer crashes may or may not arrive; either way the device
    // resumes from what it holds.
    a.send(
        Kind::PutData,
        &msg::PutData { offset: held as u64 },
        &file[held..held + 100],
    )
    .unwrap();
    let mut conn = a.into_inner();
    conn.abort();
    drop(conn);

    let mut b = client(&stack);
    assert_eq!(code(b.stat("resume.bin")), ErrorCode::NotFound, "not visible");
    assert!(names(&mut b).is_empty());
    assert_eq!(code(get(&mut b, "resume.bin")), ErrorCode::NotFound);
    let mut acked = Vec::new();
    let t = b
        .put(
            "resume.bin",
            &mut std::io::Cursor::new(&file),
            file.len() as u64,
            digest,
            false,
            |n| acked.push(n),
        )
        .unwrap();
    assert!(
        t.resumed_from == held as u64 || t.resumed_from == held as u64 + 100,
        "resumed from {}",
        t.resumed_from
    );
    assert_eq!(acked.first(), Some(&t.resumed_from));
    assert_eq!(acked.last(), Some(&(file.len() as u64)));
    let back = get(&mut b, "resume.bin").unwrap();
    assert!(back == file, "resumed upload is bit-exact");
    assert_eq!(b.stat("resume.bin").unwrap(), (file.len() as u64, digest));
    assert_eq!(
        b.hello("t").unwrap().storage_used,
        file.len() as u64,
        "no leftover pending bytes"
    );

    // A different digest does not resume: it starts over.
    let mut c = client(&stack);
    let other = data(file.len(), 12);
    let begin = msg::PutBegin {
        name: "second.bin",
        size: other.len() as u64,
        sha256: sha(&other),
        overwrite: false,
    };
    let id = c.send(Kind::PutBegin, &begin, &[]).unwrap();
    answer!(c, id, msg::PutReady).unwrap();
    send_rest(&mut c, &other[..2 * MAX_CHUNK], 0);
    drop(c);
    let changed = data(file.len(), 13);
    let t = put(&mut b, "second.bin", &changed, false).unwrap();
    assert_eq!(t.resumed_from, 0);
    assert!(get(&mut b, "second.bin").unwrap() == changed);

    // A download broken off resumes from an offset, checked against the whole file's digest.
    let mut hasher = Sha256::new();
    hasher.update(&file[..5000]);
    let mut rest = Vec::new();
    let t = b.get("resume.bin", 5000, &mut rest, hasher, |_| {}).unwrap();
    assert_eq!((t.resumed_from, t.sha256), (5000, digest));
    assert!(rest == file[5000..]);
}

#[test]
fn an_idle_session_is_closed_by_the_device() {
    let server = ServerConfig {
        limits: Limits {
            idle_ms: 5000,
            ..Limits::DEFAULT
        },
        ..ServerConfig::default()
    };
    let stack = Stack::new(StackConfig {
        server,
        ..StackConfig::default()
    });
    let mut idle = Raw::connect(&stack);
    let mut busy = client(&stack);
    assert_eq!(busy.echo(b"hi", false).unwrap(), b"hi");
    assert!(echo_through(&mut idle, 1, b"once").is_empty());
    assert_eq!(stack.borrow().server.connected(), 2);
    // Both sessions are younger than the timeout, then only the busy one stays active.
    stack.borrow_mut().advance(Duration::from_millis(3500));
    assert_eq!(busy.echo(b"still", false).unwrap(), b"still");
    assert!(idle.conn.is_open());
    assert_eq!(closed_by_device(&stack), 0);
    stack.borrow_mut().advance(Duration::from_millis(3500));
    let tail = idle.read_to_close(Duration::from_secs(5));
    assert!(tail.is_empty(), "{tail:?}");
    assert_eq!(closed_by_device(&stack), 1);
    assert_eq!(busy.echo(b"alive", true).unwrap(), b"ALIVE");
    assert_eq!(stack.borrow().server.connected(), 1);
    let stats = stack.borrow().server.device.stats.clone();
    assert_eq!((stats.sessions_opened, stats.sessions_active), (2, 1));
}
