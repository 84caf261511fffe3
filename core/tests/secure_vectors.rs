//! The secure-session test vectors of `docs/PROTOCOL.md` (section "Secure sessions").
//!
//! The vectors are made by `tether_core::secure` from a fixed pre-shared key and fixed ephemeral
//! keys, and checked three ways, so that they are not merely what this implementation says:
//! - `snow`, an independent Noise implementation, run with the same key, prologue and ephemeral
//!   keys, writes the same handshake messages and derives the same handshake hash and transport
//!   keys;
//! - the sealed frames are rebuilt from the byte layout of the document with the `chacha20poly1305`
//!   crate and snow's keys, without `Channel`;
//! - the document's blocks tagged ```` ```hex secure ```` are compared with the list here, both
//!   ways, so document and tests cannot drift apart.
//!
//! After a deliberate change, regenerate the vectors' subsections with
//! `cargo test -p tether-core --features secure --test secure_vectors -- --ignored --nocapture print_doc_section`.
#![cfg(feature = "secure")]

mod common;

use std::fmt::Write as _;

use common::{assert_document_holds, fenced_blocks, from_hex, to_hex, PROTOCOL};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use tether_core::codec::{encode_raw, parse_datagram};
use tether_core::crc32;
use tether_core::secure::{
    Channel, Handshake, Psk, Role, MSG1_LEN, MSG2_LEN, PROLOGUE, PROTOCOL_NAME, SEALED_PREFIX, SEAL_OVERHEAD,
};
use tether_core::wire::{Flags, FrameSpec, Kind};

// The ```hex secure blocks of docs/PROTOCOL.md, verbatim: 16 bytes a line, lower case.

const PSK: &str = "\
00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f
10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f";

const INITIATOR_EPHEMERAL: &str = "\
20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f
30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f";

const RESPONDER_EPHEMERAL: &str = "\
40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f
50 51 52 53 54 55 56 57 58 59 5a 5b 5c 5d 5e 5f";

const HANDSHAKE_REQUEST: &str = "\
e7 54 01 40 00 00 00 00 01 00 00 00 30 00 00 00
18 94 12 2f 3e b9 a8 0d 35 80 72 d6 36 58 80 d1
ae ea 32 9a df 91 21 38 38 51 ed 21 a2 8e 3b 75
e9 65 d0 d2 cd 16 62 54 87 90 d2 90 2f 74 43 60
a2 bd 41 1d ef cd 96 66";

const HANDSHAKE_RESPONSE: &str = "\
e7 54 01 40 01 00 00 00 01 00 00 00 30 00 00 00
5a 53 94 19 88 92 5e a4 79 a6 31 ee de 1b f9 c9
8f 12 03 2c de ad d0 e7 a0 79 39 8f c7 86 b8 8c
c8 46 ec 89 af 85 a5 1a c1 ff 15 1c 88 be 75 30
f2 4e 24 b4 53 bd a6 c7";

const HANDSHAKE_HASH: &str = "\
e2 d0 58 ee 97 6b 95 d5 2d aa 23 73 51 20 a8 9f
01 73 4d 30 67 e3 4a 63 6d 7d d9 48 7a 77 1e 29";

const KEY_I2R: &str = "\
81 0c de 8f 99 b1 a2 a5 a8 63 e4 1b 93 fd 1c 11
b2 9a b8 fe e3 f3 ed cb 66 2e 16 3b 24 51 64 ca";

const KEY_R2I: &str = "\
f8 ca 9c f3 82 ec 15 ac 36 09 fa 97 65 95 ba af
ec 96 af 67 29 b0 5e da b8 e4 18 39 ed 09 f6 cd";

const SEALED_REQUEST: &str = "\
e7 54 01 41 00 00 00 00 00 00 00 00 35 00 00 00
fe 3d 79 b0 c4 74 4f 9a 00 00 00 00 00 00 00 00
48 e9 e1 ad 2c e3 b1 2c ce fd 94 59 db 57 89 5a
35 b2 ca d7 ff 91 5a cd 40 62 e0 c6 69 dd fd 8b
4d 37 ae 79 3e d3 31 8d 48 65 99 ee ff";

const SEALED_RESPONSE: &str = "\
e7 54 01 41 00 00 00 00 00 00 00 00 35 00 00 00
6a c2 60 24 9f c8 97 7a 00 00 00 00 00 00 00 00
62 56 84 0e e3 66 69 fa a4 40 03 4e 31 f9 15 80
6b 0d b3 46 e2 e5 9a e0 9c c4 50 92 a3 f3 38 3d
43 ef 72 43 3a 15 35 4f db 27 4e 81 bb";

/// Request id of the handshake exchange.
const HANDSHAKE_ID: u32 = 1;
/// Request id of the sealed Echo exchange.
const ECHO_ID: u32 = 2;

fn key(text: &str) -> [u8; 32] {
    from_hex(text).try_into().expect("32 bytes")
}

fn psk() -> Psk {
    Psk::from_bytes(key(PSK))
}

/// A frame built with the real encoder.
fn frame(spec: FrameSpec, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 24 + body.len()];
    let n = encode_raw(&mut out, spec, &[], body).expect("encode");
    out.truncate(n);
    out
}

/// Everything one fixed-key session produces, computed with `tether_core::secure`.
struct Session {
    msg1: Vec<u8>,
    msg2: Vec<u8>,
    hash_initiator: [u8; 32],
    hash_responder: [u8; 32],
    initiator: Channel,
    responder: Channel,
}

fn session() -> Session {
    let mut initiator = Handshake::with_fixed_ephemeral(Role::Initiator, &psk(), key(INITIATOR_EPHEMERAL));
    let mut responder = Handshake::with_fixed_ephemeral(Role::Responder, &psk(), key(RESPONDER_EPHEMERAL));
    let mut msg1 = [0u8; 64];
    let n1 = initiator.write_message(&mut msg1).unwrap();
    responder.read_message(&msg1[..n1]).unwrap();
    let mut msg2 = [0u8; 64];
    let n2 = responder.write_message(&mut msg2).unwrap();
    initiator.read_message(&msg2[..n2]).unwrap();
    assert!(initiator.is_finished() && responder.is_finished());
    Session {
        msg1: msg1[..n1].to_vec(),
        msg2: msg2[..n2].to_vec(),
        hash_initiator: *initiator.handshake_hash(),
        hash_responder: *responder.handshake_hash(),
        initiator: initiator.into_channel().unwrap(),
        responder: responder.into_channel().unwrap(),
    }
}

/// What snow, run with the same inputs, makes of the same handshake.
struct Snow {
    msg1: Vec<u8>,
    msg2: Vec<u8>,
    hash: Vec<u8>,
    k1: [u8; 32],
    k2: [u8; 32],
}

fn snow_session() -> Snow {
    let name = std::str::from_utf8(PROTOCOL_NAME).unwrap();
    let psk = key(PSK);
    let ei = key(INITIATOR_EPHEMERAL);
    let er = key(RESPONDER_EPHEMERAL);
    let builder = || {
        snow::Builder::new(name.parse().unwrap())
            .psk(0, &psk)
            .unwrap()
            .prologue(PROLOGUE)
            .unwrap()
    };
    let mut initiator = builder()
        .fixed_ephemeral_key_for_testing_only(&ei)
        .build_initiator()
        .unwrap();
    let mut responder = builder()
        .fixed_ephemeral_key_for_testing_only(&er)
        .build_responder()
        .unwrap();
    let mut buf = [0u8; 128];
    let mut payload = [0u8; 128];
    let n = initiator.write_message(&[], &mut buf).unwrap();
    let msg1 = buf[..n].to_vec();
    assert_eq!(responder.read_message(&msg1, &mut payload).unwrap(), 0);
    let n = responder.write_message(&[], &mut buf).unwrap();
    let msg2 = buf[..n].to_vec();
    assert_eq!(initiator.read_message(&msg2, &mut payload).unwrap(), 0);
    assert!(initiator.is_handshake_finished() && responder.is_handshake_finished());
    let hash = initiator.get_handshake_hash().to_vec();
    assert_eq!(hash, responder.get_handshake_hash());
    let (k1, k2) = initiator.dangerously_get_raw_split();
    assert_eq!((k1, k2), responder.dangerously_get_raw_split());
    Snow {
        msg1,
        msg2,
        hash,
        k1,
        k2,
    }
}

/// The inner frames of the sealed vectors.
fn echo_request() -> Vec<u8> {
    frame(FrameSpec::request(Kind::Echo, ECHO_ID), b"hello")
}

fn echo_response() -> Vec<u8> {
    frame(FrameSpec::response(Kind::Echo, ECHO_ID), b"hello")
}

/// A sealed frame built from the document's layout alone, with the `chacha20poly1305` crate.
fn seal_by_the_spec(key: &[u8; 32], counter: u64, inner: &[u8]) -> Vec<u8> {
    let body_len = (8 + inner.len() + 16) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&[0xE7, 0x54, 0x01, 0x41, 0x00, 0x00, 0x00, 0x00]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    let ad = out.clone();
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    let mut ciphertext = inner.to_vec();
    let tag = ChaCha20Poly1305::new(&(*key).into())
        .encrypt_inout_detached(&nonce.into(), &ad, ciphertext.as_mut_slice().into())
        .unwrap();
    let mut body = counter.to_le_bytes().to_vec();
    body.extend_from_slice(&ciphertext);
    body.extend_from_slice(&tag);
    out.extend_from_slice(&crc32::checksum(&body).to_le_bytes());
    let header_crc = crc32::checksum(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Seals a copy of `inner` with `channel`.
fn seal(channel: &mut Channel, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; inner.len() + SEAL_OVERHEAD];
    let n = channel.seal(inner, &mut out).unwrap();
    out.truncate(n);
    out
}

/// One vector: a name (the document's label), the hex block and the bytes computed here.
struct Vector {
    name: &'static str,
    title: &'static str,
    note: &'static str,
    hex: &'static str,
    bytes: Vec<u8>,
    /// How the bytes are annotated in the document's `text` block.
    layout: Layout,
}

/// The shape of a vector, for its annotation.
enum Layout {
    /// A key or hash: no annotation.
    Raw,
    /// A handshake frame: header, then `e.pub || tag`; the label says whose key.
    Handshake(&'static str),
    /// A sealed frame: header, counter, ciphertext, tag; with the inner frame it holds.
    Sealed(Vec<u8>),
}

fn vectors() -> Vec<Vector> {
    let mut s = session();
    let sealed_request = seal(&mut s.initiator, &echo_request());
    let sealed_response = seal(&mut s.responder, &echo_response());
    let (k1, k2) = {
        let snow = snow_session();
        (snow.k1, snow.k2)
    };
    vec![
        Vector {
            name: "psk",
            title: "Pre-shared key",
            note: "The device key of these vectors: bytes 0x00 to 0x1f. Its key file holds the line \
                   `000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f`.",
            hex: PSK,
            bytes: (0u8..32).collect(),
            layout: Layout::Raw,
        },
        Vector {
            name: "initiator-ephemeral",
            title: "Client's ephemeral private key",
            note: "Bytes 0x20 to 0x3f, used as X25519 clamps them (RFC 7748). Fixed for the vectors only: \
                   a real client draws a fresh one from a CSPRNG for every handshake.",
            hex: INITIATOR_EPHEMERAL,
            bytes: (0x20u8..0x40).collect(),
            layout: Layout::Raw,
        },
        Vector {
            name: "responder-ephemeral",
            title: "Device's ephemeral private key",
            note: "Bytes 0x40 to 0x5f; as above, fixed for the vectors only.",
            hex: RESPONDER_EPHEMERAL,
            bytes: (0x40u8..0x60).collect(),
            layout: Layout::Raw,
        },
        Vector {
            name: "handshake-request",
            title: "Handshake request: message 1, `-> psk, e`",
            note: "Request id 1. The body is the 48-byte Noise message 1: the client's ephemeral public key \
                   (X25519 of the private key above and the base point), then the tag of the empty payload \
                   under the key derived from the PSK and that public key.",
            hex: HANDSHAKE_REQUEST,
            bytes: frame(FrameSpec::request(Kind::Handshake, HANDSHAKE_ID), &s.msg1),
            layout: Layout::Handshake("client's ephemeral public key"),
        },
        Vector {
            name: "handshake-response",
            title: "Handshake response: message 2, `<- e, ee`",
            note: "The device's answer, same kind and request id, flag RESPONSE. The body is Noise message 2: \
                   the device's ephemeral public key, then the tag of the empty payload under the key that \
                   also mixes in DH(e, re).",
            hex: HANDSHAKE_RESPONSE,
            bytes: frame(FrameSpec::response(Kind::Handshake, HANDSHAKE_ID), &s.msg2),
            layout: Layout::Handshake("device's ephemeral public key"),
        },
        Vector {
            name: "handshake-hash",
            title: "Handshake hash",
            note: "`h` after message 2, the same at both ends (Noise's `GetHandshakeHash()`).",
            hex: HANDSHAKE_HASH,
            bytes: s.hash_initiator.to_vec(),
            layout: Layout::Raw,
        },
        Vector {
            name: "key-initiator-to-responder",
            title: "Transport key, client to device",
            note: "The first key of `Split()`: seals what the client sends.",
            hex: KEY_I2R,
            bytes: k1.to_vec(),
            layout: Layout::Raw,
        },
        Vector {
            name: "key-responder-to-initiator",
            title: "Transport key, device to client",
            note: "The second key of `Split()`: seals what the device sends.",
            hex: KEY_R2I,
            bytes: k2.to_vec(),
            layout: Layout::Raw,
        },
        Vector {
            name: "sealed-request",
            title: "Sealed Echo request",
            note: "The client's first sealed frame (counter 0, key client to device). The inner frame is an \
                   Echo request, request id 2, body `hello`.",
            hex: SEALED_REQUEST,
            bytes: sealed_request,
            layout: Layout::Sealed(echo_request()),
        },
        Vector {
            name: "sealed-response",
            title: "Sealed Echo response",
            note: "The device's first sealed frame (counter 0 in its own direction, key device to client): \
                   the Echo response, request id 2, flag RESPONSE, body `hello`. Only the key and the inner \
                   frame differ from the request's sealing.",
            hex: SEALED_RESPONSE,
            bytes: sealed_response,
            layout: Layout::Sealed(echo_response()),
        },
    ]
}

#[test]
fn the_implementation_produces_the_documented_bytes() {
    for v in vectors() {
        assert_eq!(to_hex(&v.bytes), v.hex, "vector {}", v.name);
    }
}

#[test]
fn snow_agrees_on_every_handshake_message_the_hash_and_the_keys() {
    let s = session();
    let snow = snow_session();
    assert_eq!(s.msg1.len(), MSG1_LEN);
    assert_eq!(s.msg2.len(), MSG2_LEN);
    assert_eq!(s.msg1, snow.msg1, "message 1");
    assert_eq!(s.msg2, snow.msg2, "message 2");
    assert_eq!(s.hash_initiator, s.hash_responder);
    assert_eq!(s.hash_initiator.as_slice(), snow.hash.as_slice(), "handshake hash");
    assert_eq!(to_hex(&snow.hash), HANDSHAKE_HASH);
    assert_eq!(to_hex(&snow.k1), KEY_I2R);
    assert_eq!(to_hex(&snow.k2), KEY_R2I);
    // The documented handshake frames carry snow's messages as their bodies.
    assert_eq!(
        parse_datagram(&from_hex(HANDSHAKE_REQUEST), 1024).unwrap().body,
        snow.msg1.as_slice()
    );
    assert_eq!(
        parse_datagram(&from_hex(HANDSHAKE_RESPONSE), 1024).unwrap().body,
        snow.msg2.as_slice()
    );
}

#[test]
fn the_sealed_frames_follow_the_documented_layout() {
    let snow = snow_session();
    assert_eq!(to_hex(&seal_by_the_spec(&snow.k1, 0, &echo_request())), SEALED_REQUEST);
    assert_eq!(
        to_hex(&seal_by_the_spec(&snow.k2, 0, &echo_response())),
        SEALED_RESPONSE
    );
}

#[test]
fn the_documented_sealed_frames_open_to_their_inner_frames() {
    let mut s = session();
    let mut request = from_hex(SEALED_REQUEST);
    let inner = s.responder.open_in_place(&mut request).unwrap();
    assert_eq!(
        (inner.kind(), inner.flags(), inner.request_id(), inner.body),
        (Kind::Echo, Flags::NONE, ECHO_ID, &b"hello"[..])
    );
    // The same through `open`, from a decoded frame, on a fresh session.
    let mut s2 = session();
    let bytes = from_hex(SEALED_RESPONSE);
    let outer = parse_datagram(&bytes, 1024).unwrap();
    assert_eq!(outer.kind(), Kind::Sealed);
    let mut out = [0u8; 128];
    let inner = s2.initiator.open(&outer, &mut out).unwrap();
    assert_eq!(
        (inner.kind(), inner.flags(), inner.request_id(), inner.body),
        (Kind::Echo, Flags::RESPONSE, ECHO_ID, &b"hello"[..])
    );
    assert_eq!(bytes.len(), echo_response().len() + SEAL_OVERHEAD);
    assert_eq!(&bytes[24..SEALED_PREFIX], &[0u8; 8], "counter 0");
    let _ = s.initiator;
}

#[test]
fn the_key_file_form_of_the_vector_key() {
    let text = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    assert_eq!(Psk::from_hex(text.as_bytes()), Ok(psk()));
    let mut out = [0u8; 65];
    assert_eq!(psk().to_hex(&mut out), text.as_bytes());
    assert!(
        PROTOCOL.contains(text.trim_end()),
        "the key file line is in the document"
    );
}

#[test]
fn the_document_and_these_tests_agree() {
    let vectors = vectors();
    let named: Vec<(&str, &str)> = vectors.iter().map(|v| (v.name, v.hex)).collect();
    assert_document_holds("hex secure", &named);
    assert_eq!(fenced_blocks(PROTOCOL, "hex secure").len(), named.len());
}

fn row(out: &mut String, at: usize, bytes: &[u8], label: &str) {
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex = line.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
        let label = if i == 0 { label } else { "" };
        let line = format!("0x{:04x}  {hex:<47}  {label}", at + 16 * i);
        writeln!(out, "{}", line.trim_end()).unwrap();
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The rows of a frame header.
fn header_rows(out: &mut String, h: &[u8]) {
    let kind = Kind::from(h[3]);
    row(out, 0, &h[0..2], "magic");
    row(out, 2, &h[2..3], &format!("version = {}", h[2]));
    row(out, 3, &h[3..4], &format!("kind = 0x{:02x} {kind:?}", h[3]));
    row(out, 4, &h[4..5], &format!("flags = 0x{:02x}", h[4]));
    row(out, 5, &h[5..6], "reserved");
    row(
        out,
        6,
        &h[6..8],
        &format!("meta_len = {}", u16::from_le_bytes([h[6], h[7]])),
    );
    row(out, 8, &h[8..12], &format!("request_id = {}", le32(h, 8)));
    row(out, 12, &h[12..16], &format!("body_len = {}", le32(h, 12)));
    row(out, 16, &h[16..20], &format!("payload_crc = 0x{:08x}", le32(h, 16)));
    row(out, 20, &h[20..24], &format!("header_crc = 0x{:08x}", le32(h, 20)));
}

/// The `text` block under a frame vector.
fn annotate(v: &Vector) -> Option<String> {
    let b = &v.bytes;
    let mut out = String::from("offset  bytes                                            field\n");
    match &v.layout {
        Layout::Raw => return None,
        Layout::Handshake(whose) => {
            header_rows(&mut out, &b[..24]);
            row(&mut out, 24, &b[24..56], &format!("body: e.pub, the {whose}"));
            row(&mut out, 56, &b[56..72], "body: tag of the empty payload");
        }
        Layout::Sealed(inner) => {
            header_rows(&mut out, &b[..24]);
            let n = inner.len();
            row(
                &mut out,
                24,
                &b[24..32],
                &format!(
                    "body: counter = {} (u64 LE)",
                    u64::from_le_bytes(b[24..32].try_into().unwrap())
                ),
            );
            row(
                &mut out,
                32,
                &b[32..32 + n],
                &format!("body: the {n}-byte inner frame, encrypted"),
            );
            row(&mut out, 32 + n, &b[32 + n..], "body: tag");
            writeln!(out, "\ninner frame (plaintext):").unwrap();
            let mut inner_rows = String::new();
            row(&mut inner_rows, 0, inner, "");
            out.push_str(&inner_rows);
        }
    }
    Some(out)
}

/// The vectors' subsections of the document.
fn doc_section() -> String {
    let mut out = String::new();
    for (i, v) in vectors().iter().enumerate() {
        writeln!(
            out,
            "#### S{}. {} (`{}`)\n\n{}\n\n```hex secure\n{}\n```\n",
            i + 1,
            v.title,
            v.name,
            v.note,
            v.hex
        )
        .unwrap();
        if let Some(text) = annotate(v) {
            writeln!(out, "```text\n{text}```\n").unwrap();
        }
    }
    out
}

#[test]
fn the_document_holds_the_generated_vector_section() {
    let section = doc_section();
    assert!(
        PROTOCOL.contains(section.trim_end()),
        "docs/PROTOCOL.md does not hold the secure-session vectors as generated; regenerate them \
         (see the top of this file)"
    );
}

#[test]
fn the_ephemeral_public_keys_are_x25519_of_the_private_ones() {
    let s = session();
    for (private, message) in [(INITIATOR_EPHEMERAL, &s.msg1), (RESPONDER_EPHEMERAL, &s.msg2)] {
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(key(private)));
        assert_eq!(public.as_bytes(), &message[..32]);
    }
}

/// Prints the vectors' subsections as they go in the document.
#[test]
#[ignore]
fn print_doc_section() {
    println!("{}", doc_section());
}
