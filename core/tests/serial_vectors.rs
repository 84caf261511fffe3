//! The serial framing vectors of `docs/PROTOCOL.md` §17: every ```` ```packet ```` block of the
//! document is the packet the reference encoder makes of the vector's bytes, in order, and the
//! unframer gives those bytes back.

mod common;

use common::{fenced_blocks, to_hex, PROTOCOL};
use tether_core::codec::encode_raw;
use tether_core::serial::framing::{encode_packet, max_packet_len, Encoder, Unframer};
use tether_core::wire::{FrameSpec, Kind};

/// The vectors: their names (P for packet, apart from the V and S vectors of §15 and §16.7), the
/// label the document gives each, and their input bytes, in the document's order.
fn inputs() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut echo = vec![0u8; 64];
    let n = encode_raw(&mut echo, FrameSpec::request(Kind::Echo, 1), &[], b"hello").unwrap();
    echo.truncate(n);
    vec![
        ("P1", "The echo request of V1.", echo),
        ("P2", "No bytes.", vec![]),
        ("P3", "One zero byte.", vec![0]),
        ("P4", "254 non-zero bytes 01..fe (one full group).", (1..=254).collect()),
        ("P5", "255 bytes 01..ff.", (1..=255).collect()),
        ("P6", "01..fe then a zero.", (1..=254).chain([0]).collect()),
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
    for ((name, _, bytes), block) in inputs.iter().zip(&blocks) {
        assert_eq!(&to_hex(&packet(bytes)), block, "{name}");
    }
    // Each block is labelled with its vector's name and text.
    let labels: Vec<&str> = PROTOCOL.lines().filter(|l| l.starts_with("**P")).collect();
    let expected: Vec<String> = inputs
        .iter()
        .map(|(name, text, _)| format!("**{name}.** {text}"))
        .collect();
    assert_eq!(labels, expected);
}

/// The vectors of the document have distinct names: V (frames, §15), S (secure sessions, §16.7)
/// and P (serial packets, §17.1), so that "S1" names one thing.
#[test]
fn vector_names_are_unique_in_the_document() {
    let mut names: Vec<String> = PROTOCOL
        .lines()
        .filter_map(|l| {
            let label = l
                .strip_prefix("### ")
                .or_else(|| l.strip_prefix("#### "))
                .or_else(|| l.strip_prefix("**"))?;
            let name = label.split(['.', ' ']).next()?;
            let mut chars = name.chars();
            let tagged = matches!(chars.next(), Some('V' | 'S' | 'P'));
            (tagged && name.len() > 1 && chars.all(|c| c.is_ascii_digit())).then(|| name.to_string())
        })
        .collect();
    let all = names.len();
    assert!(all >= 22 + 10 + 6, "found only {names:?}");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all, "a vector name is used twice");
}

#[test]
fn the_vectors_decode_to_their_bytes_and_the_streaming_encoder_agrees() {
    for (name, _, bytes) in inputs() {
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
        if name == "P1" {
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

/// §17's bound on a packet, `len + max(1, ⌈len/254⌉) + 2` bytes for `len` bytes, holds for every
/// length and content and is reached (so no bytes make 3, not 2); `max_packet_len` covers it.
#[test]
fn the_documented_packet_size_bound_holds_and_is_reached() {
    assert!(
        PROTOCOL.contains("`len + max(1, ⌈len/254⌉) + 2`"),
        "PROTOCOL.md §17 states the bound"
    );
    for len in 0..=1100usize {
        let bound = len + len.div_ceil(254).max(1) + 2;
        assert!(bound <= max_packet_len(len), "len {len}");
        let contents: [Vec<u8>; 4] = [
            (0..len).map(|i| (i % 255 + 1) as u8).collect(),
            vec![0; len],
            (0..len).map(|i| if i % 254 == 253 { 0 } else { 1 }).collect(),
            (0..len).map(|i| if i + 1 == len { 0 } else { 7 }).collect(),
        ];
        let longest = contents.iter().map(|bytes| packet(bytes).len()).max();
        assert_eq!(longest, Some(bound), "len {len}");
    }
}

/// Prints the packet blocks for docs/PROTOCOL.md §17.
#[test]
#[ignore]
fn print_doc_packets() {
    for (name, text, bytes) in inputs() {
        println!("**{name}.** {text}\n\n```packet\n{}\n```\n", to_hex(&packet(&bytes)));
    }
}
