//! Several sessions at once: interleaved requests, and a stalled reader among busy peers.

use crate::common::*;
use tether_core::msg;
use tether_core::wire::Kind;
use tether_host::Client;
use tether_sim::inproc::Conn;

/// Requests sent on one client and not yet answered.
enum Pending {
    Echo {
        id: u32,
        body: Vec<u8>,
        upper: bool,
    },
    Put {
        ids: Vec<u32>,
        name: String,
        bytes: Vec<u8>,
    },
    Get {
        id: u32,
    },
}

fn send_op(c: &mut Client<Conn>, op: usize, tag: u32) -> Pending {
    match op {
        0 | 1 => {
            let upper = op == 1;
            let body = data(500 + tag as usize * 7, tag);
            let id = c
                .send(if upper { Kind::Upper } else { Kind::Echo }, &(), &body)
                .unwrap();
            Pending::Echo { id, body, upper }
        }
        2 => {
            // The whole upload pipelined: begin, every chunk and the commit before any answer
            // (the window of 16 allows it; a new upload starts at offset 0).
            let name = format!("up-{tag}.bin");
            let bytes = data(2 * MAX_CHUNK + tag as usize * 13, tag);
            let begin = msg::PutBegin {
                name: &name,
                size: bytes.len() as u64,
                sha256: sha(&bytes),
                overwrite: false,
            };
            let mut ids = vec![c.send(Kind::PutBegin, &begin, &[]).unwrap()];
            for (k, chunk) in bytes.chunks(MAX_CHUNK).enumerate() {
                let offset = (k * MAX_CHUNK) as u64;
                ids.push(c.send(Kind::PutData, &msg::PutData { offset }, chunk).unwrap());
            }
            ids.push(c.send(Kind::PutCommit, &msg::NameRef { name: &name }, &[]).unwrap());
            Pending::Put { ids, name, bytes }
        }
        _ => Pending::Get {
            id: c
                .send(
                    Kind::Get,
                    &msg::Get {
                        name: "shared.bin",
                        offset: 0,
                    },
                    &[],
                )
                .unwrap(),
        },
    }
}

fn finish_op(c: &mut Client<Conn>, pending: Pending, shared: &[u8], uploaded: &mut Vec<(String, Vec<u8>)>) {
    match pending {
        Pending::Echo { id, body, upper } => {
            let f = c.receive(id).unwrap();
            assert_eq!(frame_error(&f), None);
            let expect: Vec<u8> = if upper {
                body.iter().map(u8::to_ascii_uppercase).collect()
            } else {
                body
            };
            assert!(f.body == expect, "echo {id}");
        }
        Pending::Put { ids, name, bytes } => {
            let (begin, rest) = ids.split_first().unwrap();
            let (commit, chunks) = rest.split_last().unwrap();
            assert_eq!(answer!(c, *begin, msg::PutReady).unwrap().offset, 0);
            let mut received = 0;
            for id in chunks {
                received = (received + MAX_CHUNK).min(bytes.len());
                assert_eq!(answer!(c, *id, msg::PutAck).unwrap().received, received as u64);
            }
            let done = answer!(c, *commit, msg::FileDone).unwrap();
            assert_eq!((done.size, done.sha256), (bytes.len() as u64, sha(&bytes)));
            uploaded.push((name, bytes));
        }
        Pending::Get { id } => {
            let (got, done) = finish_get(c, id, 0, 16).unwrap();
            assert_eq!(done.sha256, sha(shared));
            assert!(got == shared, "shared.bin downloaded bit-exact");
        }
    }
}

#[test]
fn four_sessions_interleave_echo_put_and_get() {
    let stack = stack();
    let mut clients: Vec<_> = (0..4).map(|_| client(&stack)).collect();
    let shared = data(3 * MAX_CHUNK + 999, 100);
    put(&mut clients[0], "shared.bin", &shared, false).unwrap();
    assert_eq!(stack.borrow().server.connected(), 4);
    let mut uploaded = Vec::new();
    for round in 0..8 {
        // Every client sends before any reads, so the device has all four sessions' requests
        // in hand together; each round rotates which client does what.
        let pending: Vec<Pending> = clients
            .iter_mut()
            .enumerate()
            .map(|(i, c)| send_op(c, (i + round) % 4, (round * 4 + i) as u32))
            .collect();
        // Collect the answers in a different order each round.
        let mut order: Vec<(usize, Pending)> = pending.into_iter().enumerate().collect();
        order.rotate_left(round % 4);
        if round % 2 == 1 {
            order.reverse();
        }
        for (i, p) in order {
            finish_op(&mut clients[i], p, &shared, &mut uploaded);
        }
    }
    assert_eq!(uploaded.len(), 8);
    // Everything landed where it belongs.
    let mut listed = names(&mut clients[1]);
    listed.sort();
    let mut expect: Vec<String> = uploaded
        .iter()
        .map(|(n, _)| n.clone())
        .chain(["shared.bin".to_string()])
        .collect();
    expect.sort();
    assert_eq!(listed, expect);
    for (i, (name, bytes)) in uploaded.iter().enumerate() {
        assert!(get(&mut clients[i % 4], name).unwrap() == *bytes, "{name}");
    }
    let stats = stack.borrow().server.device.stats.clone();
    assert_eq!((stats.uploads, stats.downloads), (9, 8 + 8));
    assert_eq!(
        (stats.errors, stats.decode_errors, stats.sessions_closed_by_device),
        (0, 0, 0)
    );
}

#[test]
fn a_stalled_reader_does_not_hold_up_the_others() {
    let stack = stack();
    let big = data(3 << 20, 5);
    let mut slow = client(&stack);
    put(&mut slow, "big.bin", &big, false).unwrap();
    let (downloads, bytes_out) = {
        let st = &stack.borrow().server.device.stats;
        (st.downloads, st.bytes_out)
    };
    // Ask for the whole file and read nothing: the device fills the socket buffers and then
    // has to hold its place in the stream.
    let id = slow
        .send(
            Kind::Get,
            &msg::Get {
                name: "big.bin",
                offset: 0,
            },
            &[],
        )
        .unwrap();

    let mut others: Vec<_> = (0..3).map(|_| client(&stack)).collect();
    let mut round_trips = 0;
    for round in 0..5u32 {
        for (i, c) in others.iter_mut().enumerate() {
            let tag = round * 3 + i as u32;
            let body = data(300, tag);
            assert_eq!(c.echo(&body, false).unwrap(), body);
            let name = format!("small-{tag}.bin");
            let bytes = data(5000 + tag as usize, tag);
            put(c, &name, &bytes, false).unwrap();
            assert!(get(c, &name).unwrap() == bytes);
            round_trips += 1;
        }
    }
    {
        let st = &stack.borrow().server.device.stats;
        assert_eq!(
            st.downloads,
            downloads + round_trips,
            "only the small downloads finished"
        );
        let sent = st.bytes_out - bytes_out;
        assert!(
            sent < big.len() as u64 / 4,
            "{sent} bytes out: the big download must be stalled"
        );
    }
    // Now the slow reader reads: the download resumes where it stood and is complete.
    let (got, done) = finish_get(&mut slow, id, 0, big.len() / MAX_CHUNK + 8).unwrap();
    assert_eq!((done.size, done.sha256), (big.len() as u64, sha(&big)));
    assert!(got == big, "the stalled download is bit-exact");
    assert_eq!(
        stack.borrow().server.device.stats.downloads,
        downloads + round_trips + 1
    );
    assert_eq!(slow.echo(b"done", true).unwrap(), b"DONE");
}
