//! The discovery vectors of `docs/PROTOCOL.md` §19.4: every ```` ```hex discover ```` block is a
//! frame the reference encoder makes, and decodes to the fields the document gives.
//!
//! Regenerate with `cargo test -p tether-core --test discover_vectors -- --ignored --nocapture
//! print_doc_vectors`.

mod common;

use common::{assert_document_holds, to_hex};
use serde::Serialize;
use tether_core::codec::{encode, parse_datagram};
use tether_core::msg::{self, Presence};
use tether_core::wire::{FrameSpec, Kind, HEADER_LEN, VERSION};

const DISCOVER_REQUEST: &str = "\
e7 54 01 05 00 00 00 00 07 00 00 00 00 00 00 00
00 00 00 00 0d e4 22 72";

const DISCOVER_RESPONSE: &str = "\
e7 54 01 05 01 00 2a 00 07 00 00 00 00 00 00 00
3d ab e3 29 61 7d 94 23 01 82 8c f9 c7 c4 4a 07
73 69 6d 2d 30 30 31 10 74 65 74 68 65 72 2d 73
69 6d 20 30 2e 31 2e 30 9e 37 9f 37 00 01 a9 fe
46 02";

/// The MAC address of the device of D2 (`sim`'s first device), which is its id.
const MAC: [u8; 6] = [0x02, 0x54, 0x48, 0xfe, 0x46, 0x02];

fn presence() -> Presence<'static> {
    Presence {
        version: VERSION,
        id: MAC.iter().fold(0, |id, b| id << 8 | u64::from(*b)),
        name: "sim-001",
        firmware: "tether-sim 0.1.0",
        tcp_port: 7070,
        udp_port: 7071,
        key_required: false,
        addresses: [[169, 254, 70, 2]].into_iter().collect(),
    }
}

fn frame<M: Serialize + ?Sized>(spec: FrameSpec, meta: &M) -> Vec<u8> {
    let mut out = vec![0u8; 1024];
    let n = encode(&mut out, spec, meta, &[]).expect("encode");
    out.truncate(n);
    out
}

/// The vectors: name, hex, the bytes the encoder makes.
fn vectors() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "D1",
            DISCOVER_REQUEST,
            frame(FrameSpec::request(Kind::Discover, 7), &()),
        ),
        (
            "D2",
            DISCOVER_RESPONSE,
            frame(FrameSpec::response(Kind::Discover, 7), &presence()),
        ),
    ]
}

#[test]
fn the_encoder_makes_the_documented_bytes() {
    for (name, hex, bytes) in vectors() {
        assert_eq!(to_hex(&bytes), hex, "{name}");
    }
    let pairs: Vec<(&str, &str)> = vectors().iter().map(|(n, h, _)| (*n, *h)).collect();
    assert_document_holds("hex discover", &pairs);
}

#[test]
fn the_documented_answer_decodes_to_its_fields() {
    let bytes = &vectors()[1].2;
    let f = parse_datagram(bytes, 1024).expect("a frame");
    assert_eq!((f.kind(), f.request_id()), (Kind::Discover, 7));
    let p = f.meta::<Presence<'_>>().expect("Presence");
    assert_eq!(p, presence());
    assert_eq!(p.id, 0x0254_48fe_4602);
    // A probe is the request frame and zero padding: D1 padded as §1 says still holds D1.
    let mut padded = vectors()[0].2.clone();
    padded.resize(msg::MAX_PRESENCE_FRAME, 0);
    let probe = parse_datagram(&padded, 1024).expect("a padded probe");
    assert_eq!((probe.kind(), probe.meta::<()>()), (Kind::Discover, Ok(())));
}

#[test]
fn the_largest_presence_is_max_presence_frame_bytes() {
    let long = "é".repeat(16); // 32 bytes
    let largest = Presence {
        version: VERSION,
        id: u64::MAX,
        name: &long,
        firmware: &long,
        tcp_port: u16::MAX,
        udp_port: u16::MAX,
        key_required: true,
        addresses: [[255; 4]; msg::MAX_ADDRESSES].into_iter().collect(),
    };
    let bytes = frame(FrameSpec::response(Kind::Discover, u32::MAX), &largest);
    assert_eq!(bytes.len(), msg::MAX_PRESENCE_FRAME);
    assert_eq!(msg::MAX_PRESENCE_FRAME - HEADER_LEN, 101);
}

/// Prints the hex blocks and the constants.
#[test]
#[ignore = "generator: run with --ignored --nocapture to print the vectors"]
fn print_doc_vectors() {
    for (name, _, bytes) in vectors() {
        println!(
            "{name}: {} bytes\n```hex discover\n{}\n```\n",
            bytes.len(),
            to_hex(&bytes)
        );
    }
}
