//! The seed corpus: real frames, from the test vectors of `docs/PROTOCOL.md` §15 and from the
//! real encoder. `tests/corpus.rs` checks that `corpus/` holds exactly these files and rewrites
//! them with `TETHER_FUZZ_WRITE_SEEDS=1`.

use sha2::{Digest as _, Sha256};
use tether_core::msg;
use tether_core::wire::{Kind, HEADER_LEN};

use crate::decoder::{self, PLAIN_4096, REPAIR_HEADERS, REPAIR_PAYLOADS};
use crate::server::{self, Body, FrameOp, Op};

const PROTOCOL: &str = include_str!("../../docs/PROTOCOL.md");

/// A test vector of the protocol document: its name and bytes.
pub struct Vector {
    /// The name in backquotes in its heading, e.g. `echo-request`.
    pub name: String,
    /// The bytes of its hex block.
    pub bytes: Vec<u8>,
}

/// The test vectors of `docs/PROTOCOL.md`, in document order: each `### V` heading of §15 with
/// the first ```` ```hex ```` block after it.
pub fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    let mut hex: Option<String> = None;
    for line in PROTOCOL.lines() {
        let line = line.trim();
        if let Some(h) = hex.as_mut() {
            if line == "```" {
                let bytes = h
                    .split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
                    .collect();
                if let Some(name) = name.take() {
                    out.push(Vector { name, bytes });
                }
                hex = None;
            } else {
                h.push(' ');
                h.push_str(line);
            }
        } else if line.starts_with("### V") {
            name = line
                .rsplit_once("(`")
                .map(|(_, n)| n.trim_end_matches("`)").to_string());
        } else if line == "```hex" {
            hex = Some(String::new());
        }
    }
    assert!(out.len() >= 20, "docs/PROTOCOL.md §15 has {} vectors", out.len());
    out
}

fn vector(name: &str) -> Vec<u8> {
    vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name} in docs/PROTOCOL.md"))
        .bytes
}

/// Seeds of the `decoder` target: (file name, contents).
pub fn decoder_seeds() -> Vec<(String, Vec<u8>)> {
    let vectors = vectors();
    let mut seeds: Vec<(String, Vec<u8>)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("v{:02}-{}", i + 1, v.name),
                decoder::input(PLAIN_4096, &[], &v.bytes),
            )
        })
        .collect();
    let all: Vec<u8> = vectors.iter().flat_map(|v| v.bytes.iter().copied()).collect();
    let echo = vector("echo-request");
    let mut glued = b"GET / HTTP/1.1\r\n\xE7".to_vec();
    glued.extend_from_slice(&echo);
    glued.extend_from_slice(&[0xE7, 0x54, 0x01]);
    glued.extend_from_slice(&echo);
    glued.push(0xE7);
    // A frame whose CRCs are all wrong, for the repair modes to fix.
    let mut broken = echo.clone();
    broken[16..HEADER_LEN].fill(0);
    broken.extend_from_slice(&vector("put-data"));
    broken[29 + 16..29 + HEADER_LEN].fill(0xAA);
    seeds.extend([
        (
            "all-vectors-n512-chunked".into(),
            decoder::input(2, &[1, 2, 3, 5, 8, 13, 21, 0], &all),
        ),
        ("all-vectors-n64-bytes".into(), decoder::input(1, &[1], &all)),
        ("all-vectors-n24".into(), decoder::input(0, &[24, 7], &all)),
        ("garbage-and-echo".into(), decoder::input(PLAIN_4096, &[3, 17], &glued)),
        (
            "repair-both".into(),
            decoder::input(3 | REPAIR_HEADERS | REPAIR_PAYLOADS, &[], &broken),
        ),
        (
            "repair-headers-n64".into(),
            decoder::input(1 | REPAIR_HEADERS, &[5], &broken),
        ),
    ]);
    seeds
}

fn frame<M: serde::Serialize + ?Sized>(peer: usize, kind: Kind, id: u16, meta: &M, body: &[u8]) -> Op {
    Op::Frame {
        peer,
        frame: FrameOp::request(kind, id, meta, body),
    }
}

fn exec(peer: usize, id: u16, command: &str, args: &[&str]) -> Op {
    let request = msg::ExecRequest {
        command,
        args: args.iter().copied().collect(),
    };
    frame(peer, Kind::Exec, id, &request, &[])
}

fn hello(peer: usize, id: u16) -> Op {
    frame(peer, Kind::Hello, id, &msg::Hello { client: "seed" }, &[])
}

fn datagram<M: serde::Serialize + ?Sized>(kind: Kind, id: u16, meta: &M, body: &[u8]) -> Op {
    Op::DatagramFrame {
        frame: FrameOp::request(kind, id, meta, body),
    }
}

/// An upload of `content` as `name` on `peer`, in chunks of `chunk` bytes, ids from `id`.
fn upload(peer: usize, id: u16, name: &str, content: &[u8], chunk: usize) -> Vec<Op> {
    let sha256: msg::Digest = Sha256::digest(content).into();
    let begin = msg::PutBegin {
        name,
        size: content.len() as u64,
        sha256,
        overwrite: true,
    };
    let mut ops = vec![frame(peer, Kind::PutBegin, id, &begin, &[])];
    for (i, piece) in content.chunks(chunk).enumerate() {
        let meta = msg::PutData {
            offset: (i * chunk) as u64,
        };
        ops.push(frame(peer, Kind::PutData, id + 1 + i as u16, &meta, piece));
    }
    ops.push(frame(peer, Kind::PutCommit, id + 200, &msg::NameRef { name }, &[]));
    ops
}

/// Seeds of the `server` target: (file name, contents).
pub fn server_seeds() -> Vec<(String, Vec<u8>)> {
    const A: usize = 0;
    const B: usize = 1;
    let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut seeds = vec![
        ("hello".to_string(), server::input(false, &[hello(A, 1), hello(B, 2)])),
        (
            "session-subscribe-event".into(),
            server::input(
                false,
                &[
                    frame(A, Kind::Subscribe, 1, &msg::Subscribe { on: true }, &[]),
                    exec(B, 2, "led", &["toggle"]),
                    exec(A, 3, "led", &["toggle"]),
                    frame(A, Kind::Subscribe, 4, &msg::Subscribe { on: false }, &[]),
                    exec(B, 5, "led", &["toggle"]),
                ],
            ),
        ),
        ("keyed-without-the-key".into(), {
            let mut ops = vec![
                hello(A, 1),
                exec(A, 2, "led", &["on"]),
                frame(B, Kind::Handshake, 3, &(), &[0x11; 48]),
                frame(A, Kind::Handshake, 4, &(), &[0x22; 40]),
                frame(A, Kind::Sealed, 5, &(), &[0x33; 80]),
                frame(B, Kind::Subscribe, 6, &msg::Subscribe { on: true }, &[]),
                datagram(Kind::TimeSet, 7, &msg::Clock { unix_ms: 1_800_000_000_000 }, &[]),
                datagram(Kind::Message, 8, &msg::Message { from: "spoof" }, b"hi"),
                datagram(Kind::Subscribe, 9, &msg::Subscribe { on: true }, &[]),
                datagram(Kind::Hello, 10, &msg::Hello { client: "udp" }, &[]),
                Op::Advance { ms: 6_000 },
                hello(A, 11),
            ];
            ops.extend(upload(B, 20, "x.txt", b"x", 1));
            server::keyed_input(&ops)
        }),
        (
            "echo-upper-interleaved".into(),
            server::input(
                false,
                &[
                    frame(A, Kind::Echo, 1, &(), b"hello"),
                    frame(B, Kind::Upper, 2, &(), b"quiet"),
                    frame(A, Kind::Upper, 3, &(), b"loud"),
                    frame(B, Kind::Echo, 4, &(), b""),
                ],
            ),
        ),
        ("doc-vectors-raw".into(), {
            let mut ops: Vec<Op> = ["echo-request", "get-request", "put-begin", "put-data", "exec-request"]
                .iter()
                .map(|n| Op::Send {
                    peer: A,
                    bytes: vector(n),
                })
                .collect();
            ops.push(Op::Datagram {
                plain: false,
                bytes: vector("time-get"),
            });
            ops.push(Op::Send {
                peer: B,
                bytes: vector("coalesced"),
            });
            server::input(false, &ops)
        }),
        ("files".into(), {
            let mut ops = upload(A, 10, "hello.txt", b"hello", 5);
            ops.extend([
                frame(B, Kind::Stat, 20, &msg::NameRef { name: "hello.txt" }, &[]),
                frame(
                    B,
                    Kind::Get,
                    21,
                    &msg::Get {
                        name: "hello.txt",
                        offset: 1,
                    },
                    &[],
                ),
                frame(A, Kind::List, 22, &msg::ListRequest { start: 0 }, &[]),
                frame(A, Kind::Remove, 23, &msg::NameRef { name: "hello.txt" }, &[]),
                frame(
                    A,
                    Kind::Get,
                    24,
                    &msg::Get {
                        name: "hello.txt",
                        offset: 0,
                    },
                    &[],
                ),
            ]);
            server::input(false, &ops)
        }),
        ("upload-reset-resume".into(), {
            let content = &text[..3000];
            let mut ops = upload(A, 30, "big.bin", content, 1000);
            ops.truncate(2); // PutBegin and one chunk
            ops.push(Op::Abort { peer: A });
            ops.push(Op::Reconnect { peer: A });
            ops.extend(upload(A, 40, "big.bin", content, 1000));
            ops.push(frame(B, Kind::PutAbort, 50, &msg::NameRef { name: "big.bin" }, &[]));
            server::input(false, &ops)
        }),
        ("download-direct".into(), {
            let mut ops = upload(A, 60, "text.txt", &text, 4000);
            ops.push(frame(
                B,
                Kind::Get,
                70,
                &msg::Get {
                    name: "text.txt",
                    offset: 0,
                },
                &[],
            ));
            ops.push(frame(
                A,
                Kind::Get,
                71,
                &msg::Get {
                    name: "text.txt",
                    offset: 9000,
                },
                &[],
            ));
            server::input(true, &ops)
        }),
        (
            "exec".into(),
            server::input(
                false,
                &[
                    exec(A, 1, "help", &[]),
                    exec(A, 2, "led", &["on"]),
                    exec(B, 3, "led", &["toggle"]),
                    exec(A, 4, "count", &["300"]),
                    exec(B, 5, "fail", &["3"]),
                    exec(A, 6, "uptime", &[]),
                    exec(B, 7, "stats", &[]),
                    exec(A, 8, "sleep", &["100"]),
                    Op::Advance { ms: 150 },
                    exec(B, 9, "nosuch", &["x"]),
                ],
            ),
        ),
        (
            "udp".into(),
            server::input(
                false,
                &[
                    datagram(Kind::Subscribe, 1, &msg::Subscribe { on: true }, &[]),
                    datagram(Kind::TimeGet, 2, &msg::TimeGet { format: "%H:%M" }, &[]),
                    datagram(
                        Kind::TimeSet,
                        3,
                        &msg::Clock {
                            unix_ms: 1_700_000_000_000,
                        },
                        &[],
                    ),
                    datagram(Kind::Message, 4, &msg::Message { from: "fuzz" }, b"hi there"),
                    exec(A, 5, "led", &["on"]),
                    datagram(Kind::Echo, 6, &(), b"udp echo"),
                    datagram(Kind::Subscribe, 7, &msg::Subscribe { on: false }, &[]),
                    Op::Datagram {
                        plain: true,
                        bytes: b"time".to_vec(),
                    },
                    Op::Datagram {
                        plain: false,
                        bytes: b"not a frame".to_vec(),
                    },
                ],
            ),
        ),
        (
            "faults".into(),
            server::input(
                false,
                &[
                    Op::Send {
                        peer: A,
                        bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                    },
                    Op::Send {
                        peer: A,
                        bytes: vector("bad-payload-crc"),
                    },
                    Op::Send {
                        peer: B,
                        bytes: vector("bad-header-crc"),
                    },
                    Op::Send {
                        peer: B,
                        bytes: vector("unsupported-version"),
                    },
                    Op::Frame {
                        peer: A,
                        frame: FrameOp {
                            kind: Kind::Echo.into(),
                            flags: 0,
                            request_id: 9,
                            meta: Vec::new(),
                            body: Body::Fill {
                                len: (tether_sim::device::MAX_FRAME + 100) as u16,
                                byte: b'x',
                            },
                        },
                    },
                    frame(A, Kind::Hello, 10, &msg::Hello { client: "after" }, &[]),
                    frame(B, Kind::Unknown(0x7F), 11, &(), &[]),
                    frame(B, Kind::Stat, 12, &(), &[]),
                ],
            ),
        ),
        (
            "slow-reader".into(),
            server::input(
                false,
                &[
                    Op::ToggleRead { peer: A },
                    exec(A, 1, "count", &["3000"]),
                    frame(A, Kind::Echo, 2, &(), &text[..8000]),
                    Op::Advance { ms: 1000 },
                    Op::ToggleRead { peer: A },
                    Op::Close { peer: B },
                    Op::Advance { ms: 500 },
                ],
            ),
        ),
        (
            "idle-timeout".into(),
            server::input(
                false,
                &[
                    frame(A, Kind::Echo, 1, &(), b"before"),
                    Op::Advance { ms: 11_000 },
                    frame(A, Kind::Echo, 2, &(), b"after"),
                    Op::Reconnect { peer: A },
                    frame(A, Kind::Echo, 3, &(), b"again"),
                ],
            ),
        ),
        (
            "reboot".into(),
            server::input(
                false,
                &[
                    exec(A, 1, "reboot", &[]),
                    Op::Advance { ms: 100 },
                    Op::Reconnect { peer: A },
                    hello(A, 2),
                ],
            ),
        ),
    ];
    seeds.sort_by(|a, b| a.0.cmp(&b.0));
    seeds
}
