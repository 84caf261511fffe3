//! The serial framing vectors of `docs/PROTOCOL.md` §17: every ```` ```packet ```` block of the
//! document is the packet the reference encoder makes of the vector's bytes, in order, and the
//! unframer gives those bytes back.

mod common;

use common::{fenced_blocks, to_hex, PROTOCOL};
use tether_core::codec::encode_raw;
use tether_core::serial::framing::{encode_packet, max_packet_len, Encoder, Unframer};
use tether_core::wire::{FrameSpec, Kind};

/// The vectors' input bytes, in the document's order.
fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut echo = vec![0u8; 64];
    let n = encode_raw(&mut echo, FrameSpec::request(Kind::Echo, 1), &[], b"hello").unwrap();
    echo.truncate(n);
    vec![
        ("S1: the echo request of V1", echo),
        ("S2: no bytes", vec![]),
        ("S3: one zero byte", vec![0]),
        ("S4: 254 non-zero bytes 01..fe (one full group)", (1..=254).collect()),
        ("S5: 255 bytes 01..ff", (1..=255).collect()),
        ("S6: 01..fe then a zero", (1..=254).chain([0]).collect()),
    ]
}

fn packet(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; max_packet_len(bytes.len())];
    let n = encode_packet(bytes, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn the_document_holds_the_encoders_packets() {
    let blocks = fenced_blocks(PROTOCOL, "packet");
    let inputs = inputs();
    assert_eq!(blocks.len(), inputs.len(), "one packet block per vector");
    for ((name, bytes), block) in inputs.iter().zip(&blocks) {
        assert_eq!(&to_hex(&packet(bytes)), block, "{name}");
    }
}

#[test]
fn the_vectors_decode_to_their_bytes_and_the_streaming_encoder_agrees() {
    for (name, bytes) in inputs() {
        let p = packet(&bytes);
        assert_eq!((p[0], *p.last().unwrap()), (0, 0), "{name}: delimited on both sides");
        assert!(!p[1..p.len() - 1].contains(&0), "{name}: no zero inside");
        let mut un = Unframer::<512>::new();
        assert_eq!(un.push(&p), p.len(), "{name}");
        match un.packet() {
            // An empty packet is skipped, like the empty one between two delimiters.
            None => assert!(bytes.is_empty(), "{name}"),
            Some(got) => {
                assert!(got.intact, "{name}");
                assert_eq!(got.bytes, &bytes[..], "{name}");
            }
        }
        if name.starts_with("S1") {
            let mut enc = Encoder::new();
            let used = enc.feed(&bytes);
            let mut wire = enc.pending().to_vec();
            let k = wire.len();
            enc.advance(k);
            let mut rest = &bytes[used..];
            while !rest.is_empty() || !enc.pending().is_empty() {
                let n = enc.feed(rest);
                rest = &rest[n..];
                wire.extend_from_slice(enc.pending());
                let k = enc.pending().len();
                enc.advance(k);
            }
            assert_eq!(wire, p, "{name}: Encoder and encode_packet agree");
            assert!(enc.is_idle());
        }
    }
}

/// Prints the packet blocks for docs/PROTOCOL.md §17.
#[test]
#[ignore]
fn print_doc_packets() {
    for (name, bytes) in inputs() {
        println!("{name}\n```packet\n{}\n```\n", to_hex(&packet(&bytes)));
    }
}
