//! The firmware image and state-record vectors of `docs/PROTOCOL.md` §18.5.
//!
//! - each vector is built here with `tether_core::update` and compared with the document's
//!   ```` ```hex image ```` blocks, and the blocks with this list, both ways;
//! - the image's hash is recomputed from the byte ranges the document names, with plain SHA-256,
//!   and its signature is checked with an independent Ed25519 implementation (`ed25519-compact`)
//!   against the key of RFC 8032's first test vector;
//! - the record's CRC is recomputed over the range the document names.
//!
//! Regenerate the section with
//! `cargo test -p tether-core --features update --test update_vectors -- --ignored --nocapture print_doc_section`.

#![cfg(feature = "update")]

mod common;

use common::{assert_document_holds, fenced_blocks, from_hex, to_hex, PROTOCOL};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest as _, Sha256};
use tether_core::update::image::{HASHED_LEN, HEADER_LEN, SIGNATURE_AT, SIGNATURE_LEN, SIGNED_LEN};
use tether_core::update::{BoardId, Header, ImageKey, Record, Semver, Slot, SlotRecord, SlotState, RECORD_LEN};

// The ```hex image blocks of docs/PROTOCOL.md, verbatim.

const SIGNING_KEY: &str = "\
9d 61 b1 9d ef fd 5a 60 ba 84 4a f4 92 ec 2c c4
44 49 c5 69 7b 32 69 19 70 3b ac 03 1c ae 7f 60";

const VERIFYING_KEY: &str = "\
d7 5a 98 01 82 b1 0a b7 d5 4b fe d3 c9 64 07 3a
0e e1 72 f3 da a6 23 25 af 02 1a 68 f7 07 51 1a";

const IMAGE: &str = "\
54 49 4d 47 01 00 00 01 01 00 02 00 03 00 00 00
05 00 00 00 74 65 74 68 65 72 2d 73 69 6d 00 00
00 00 00 00 00 11 00 21 10 00 00 00 00 00 00 00
6d 95 2d ca 0c 5f ad 2f a2 fd 61 af 72 94 4c f9
42 4e 98 38 c7 cd 85 7f 8d a6 81 ca 94 53 63 c2
87 98 25 7f 3a a6 4a 85 bc c5 6b 33 8d ca ff 2e
5b 8e e3 06 b8 6b fa 6f 28 f2 af a9 db 15 1a d4
3a fc 15 70 1a 91 23 4a 6a 61 a9 c0 37 88 c9 ea
2b 17 03 58 60 ee d1 44 3d 12 0f a6 c9 30 8e 0e
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
68 65 6c 6c 6f 2c 20 66 69 72 6d 77 61 72 65 21";

const RECORD: &str = "\
54 53 52 31 07 00 00 00 05 00 00 00 00 00 00 00
05 00 01 00 02 00 03 00 05 00 00 00 10 01 00 00
00 00 00 00 6d 95 2d ca 0c 5f ad 2f a2 fd 61 af
72 94 4c f9 42 4e 98 38 c7 cd 85 7f 8d a6 81 ca
94 53 63 c2 01 00 00 00 00 00 00 00 00 00 00 00
00 10 00 00 00 04 00 00 ab ab ab ab ab ab ab ab
ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab
ab ab ab ab ab ab ab ab 00 00 00 00 00 23 b3 03";

/// The image of the vectors: 1.2.3, counter 5, for `tether-sim`, body "hello, firmware!".
fn image() -> Vec<u8> {
    let key = SigningKey::from_bytes(&from_hex(SIGNING_KEY).try_into().unwrap());
    let body = b"hello, firmware!";
    let board = BoardId::new("tether-sim").unwrap();
    let mut h = Header::for_body(Semver::new(1, 2, 3), 5, board, 0x2100_1100, body);
    h.signature = key.sign(&h.signed_bytes()).to_bytes();
    let mut image = h.to_bytes().to_vec();
    image.extend_from_slice(body);
    image
}

/// The record of the vectors: slot 0 the image above, active; slot 1 an upload of 4096 bytes
/// being received, 1024 held; written 7 times.
fn record() -> Vec<u8> {
    let h = Header::parse(&image()).unwrap();
    let r = Record {
        seq: 7,
        ..Record::factory(Slot::A, &h)
    }
    .with(Slot::B, SlotRecord::receiving(4096, [0xab; 32], 1024));
    r.to_bytes().to_vec()
}

/// (name, title, explanation, hex, bytes).
fn vectors() -> Vec<(&'static str, &'static str, String, &'static str, Vec<u8>)> {
    let key = SigningKey::from_bytes(&from_hex(SIGNING_KEY).try_into().unwrap());
    vec![
        (
            "signing-key",
            "Signing key",
            "The Ed25519 secret key (seed) of the vectors: RFC 8032's first test key. It stays on the PC that signs; `host-cli fw keygen` writes it to `KEY` as 64 hex digits.".into(),
            SIGNING_KEY,
            key.to_bytes().to_vec(),
        ),
        (
            "verifying-key",
            "Verifying key",
            "Its public key, what the device holds (`KEY.pub`, `sim --fw-key`).".into(),
            VERIFYING_KEY,
            key.verifying_key().to_bytes().to_vec(),
        ),
        (
            "image",
            "Signed image",
            "Version 1.2.3, security counter 5, board `tether-sim`, load address 0x21001100, body `hello, firmware!` (16 bytes): 272 bytes.".into(),
            IMAGE,
            image(),
        ),
        (
            "state-record",
            "State record",
            "Sequence number 7, floor 5; slot 0 holds the image above, active; slot 1 is receiving an upload of 4096 bytes with image hash `ab…ab`, 1024 bytes of it held.".into(),
            RECORD,
            record(),
        ),
    ]
}

#[test]
fn the_library_produces_the_documented_bytes() {
    for (name, _, _, hex, bytes) in vectors() {
        assert_eq!(hex, to_hex(&bytes), "vector {name}");
    }
}

#[test]
fn the_image_hash_and_signature_are_what_the_document_says() {
    let image = from_hex(IMAGE);
    // The hash: SHA-256 of header bytes 0x00..0x30, then the body from 0x100.
    let mut sha = Sha256::new();
    sha.update(&image[..HASHED_LEN]);
    sha.update(&image[HEADER_LEN..]);
    let hash: [u8; 32] = sha.finalize().into();
    assert_eq!(&image[HASHED_LEN..SIGNED_LEN], &hash);
    // The signature, over bytes 0x00..0x50, checked by another Ed25519 implementation.
    let pk = ed25519_compact::PublicKey::from_slice(&from_hex(VERIFYING_KEY)).unwrap();
    let sig = ed25519_compact::Signature::from_slice(&image[SIGNATURE_AT..SIGNATURE_AT + SIGNATURE_LEN]).unwrap();
    pk.verify(&image[..SIGNED_LEN], &sig).unwrap();
    // The padding is zero, and the library accepts the image with this key.
    assert!(image[SIGNATURE_AT + SIGNATURE_LEN..HEADER_LEN].iter().all(|&b| b == 0));
    let header = Header::parse(&image).unwrap();
    let key = ImageKey::from_bytes(&from_hex(VERIFYING_KEY).try_into().unwrap()).unwrap();
    key.verify(&header).unwrap();
    assert_eq!((header.version, header.security_counter), (Semver::new(1, 2, 3), 5));
    assert_eq!(header.board.as_str(), "tether-sim");
    assert_eq!(header.image_len(), image.len() as u64);
}

#[test]
fn the_record_crc_covers_what_the_document_says() {
    let bytes = from_hex(RECORD);
    let crc = tether_core::crc32::checksum(&bytes[..RECORD_LEN - 4]);
    assert_eq!(bytes[RECORD_LEN - 4..], crc.to_le_bytes());
    let r = Record::from_bytes(&bytes.try_into().unwrap()).unwrap();
    assert_eq!((r.seq, r.floor), (7, 5));
    assert_eq!(r.slot(Slot::A).state, SlotState::Active);
    assert_eq!(
        (r.slot(Slot::B).state, r.slot(Slot::B).held),
        (SlotState::Receiving, 1024)
    );
}

#[test]
fn the_document_and_these_tests_agree() {
    let vectors = vectors();
    let named: Vec<(&str, &str)> = vectors.iter().map(|v| (v.0, v.3)).collect();
    assert_document_holds("hex image", &named);
    assert_eq!(fenced_blocks(PROTOCOL, "hex image").len(), named.len());
}

#[test]
#[ignore = "prints docs/PROTOCOL.md §18.5"]
fn print_doc_section() {
    for (i, (name, title, text, _, bytes)) in vectors().iter().enumerate() {
        println!(
            "#### F{}. {title} (`{name}`)\n\n{text}\n\n```hex image\n{}\n```\n",
            i + 1,
            to_hex(bytes)
        );
    }
}
