//! Secure sessions from the attacker's side: wrong keys, modified, replayed, reordered, truncated
//! and unsealed frames, handshake steps out of turn, low-order keys; and interoperation with an
//! independent Noise implementation (`snow`) on fresh random keys.
#![cfg(feature = "secure")]

use getrandom::SysRng;
use rand_core::UnwrapErr;
use tether_core::codec::{encode_raw, parse_datagram};
use tether_core::crc32;
use tether_core::secure::{
    Channel, Error, Handshake, Psk, Role, MSG1_LEN, MSG2_LEN, PROLOGUE, PROTOCOL_NAME, SEALED_PREFIX, SEAL_OVERHEAD,
};
use tether_core::wire::{FrameSpec, Kind, HEADER_LEN};

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

fn random_psk() -> Psk {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    Psk::from_bytes(key)
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    key
}

/// A finished handshake between two fresh ends with the same key: (initiator, responder).
fn channels(psk: &Psk) -> (Channel, Channel) {
    let mut i = Handshake::initiator(psk, &mut rng());
    let mut r = Handshake::responder(psk, &mut rng());
    let mut m = [0u8; 64];
    let n = i.write_message(&mut m).unwrap();
    r.read_message(&m[..n]).unwrap();
    let n = r.write_message(&mut m).unwrap();
    i.read_message(&m[..n]).unwrap();
    assert_eq!(i.handshake_hash(), r.handshake_hash());
    (i.into_channel().unwrap(), r.into_channel().unwrap())
}

fn frame(spec: FrameSpec, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN + body.len()];
    let n = encode_raw(&mut out, spec, &[], body).unwrap();
    out.truncate(n);
    out
}

fn echo(id: u32, body: &[u8]) -> Vec<u8> {
    frame(FrameSpec::request(Kind::Echo, id), body)
}

fn seal(channel: &mut Channel, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; inner.len() + SEAL_OVERHEAD];
    let n = channel.seal(inner, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Opens a copy of `sealed`; returns the inner frame's bytes.
fn open(channel: &mut Channel, sealed: &[u8]) -> Result<Vec<u8>, Error> {
    let mut copy = sealed.to_vec();
    let inner = channel.open_in_place(&mut copy)?;
    Ok(frame(
        FrameSpec {
            kind: inner.kind(),
            flags: inner.flags(),
            request_id: inner.request_id(),
        },
        inner.body,
    ))
}

/// Recomputes both CRCs of a frame, as an attacker who modified it would.
fn fix_crcs(bytes: &mut [u8]) {
    let payload_crc = crc32::checksum(&bytes[HEADER_LEN..]);
    bytes[16..20].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32::checksum(&bytes[..20]);
    bytes[20..24].copy_from_slice(&header_crc.to_le_bytes());
}

// --- handshake --------------------------------------------------------------------------------

#[test]
fn a_wrong_key_fails_the_handshake_at_the_responder() {
    let mut i = Handshake::initiator(&random_psk(), &mut rng());
    let mut r = Handshake::responder(&random_psk(), &mut rng());
    let mut m = [0u8; MSG1_LEN];
    i.write_message(&mut m).unwrap();
    assert_eq!(r.read_message(&m), Err(Error::Authentication));
    assert_eq!(Error::Authentication.code(), tether_core::wire::ErrorCode::Unauthorized);
    // Failed for good: no message 2, no channel.
    assert_eq!(r.write_message(&mut [0u8; 64]), Err(Error::State));
    assert!(!r.is_finished());
    assert!(r.into_channel().is_err());
}

#[test]
fn a_wrong_key_fails_the_handshake_at_the_initiator() {
    // A responder holding another key answers a message 1 made with that key by an initiator
    // with the same ephemeral key as ours; our initiator must refuse the answer.
    let ours = random_psk();
    let theirs = random_psk();
    let e = random_key();
    let mut i = Handshake::with_fixed_ephemeral(Role::Initiator, &ours, e);
    let mut forged = Handshake::with_fixed_ephemeral(Role::Initiator, &theirs, e);
    let mut r = Handshake::responder(&theirs, &mut rng());
    let mut m1 = [0u8; MSG1_LEN];
    i.write_message(&mut m1).unwrap();
    let mut f1 = [0u8; MSG1_LEN];
    forged.write_message(&mut f1).unwrap();
    assert_eq!(m1[..32], f1[..32], "same ephemeral public key");
    r.read_message(&f1).unwrap();
    let mut m2 = [0u8; MSG2_LEN];
    r.write_message(&mut m2).unwrap();
    assert_eq!(i.read_message(&m2), Err(Error::Authentication));
    assert!(i.into_channel().is_err());
}

#[test]
fn every_flipped_bit_of_message_1_is_refused() {
    let psk = random_psk();
    let mut m1 = [0u8; MSG1_LEN];
    Handshake::initiator(&psk, &mut rng()).write_message(&mut m1).unwrap();
    // The unmodified message is accepted, so the refusals below are the flips' doing.
    Handshake::responder(&psk, &mut rng()).read_message(&m1).unwrap();
    for byte in 0..MSG1_LEN {
        for bit in 0..8 {
            let mut m = m1;
            m[byte] ^= 1 << bit;
            let mut r = Handshake::responder(&psk, &mut rng());
            assert_eq!(r.read_message(&m), Err(Error::Authentication), "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn every_flipped_bit_of_message_2_is_refused() {
    let psk = random_psk();
    let e = random_key();
    let mut r = Handshake::responder(&psk, &mut rng());
    let mut m1 = [0u8; MSG1_LEN];
    Handshake::with_fixed_ephemeral(Role::Initiator, &psk, e)
        .write_message(&mut m1)
        .unwrap();
    r.read_message(&m1).unwrap();
    let mut m2 = [0u8; MSG2_LEN];
    r.write_message(&mut m2).unwrap();
    let initiator = || {
        let mut i = Handshake::with_fixed_ephemeral(Role::Initiator, &psk, e);
        i.write_message(&mut [0u8; MSG1_LEN]).unwrap();
        i
    };
    initiator().read_message(&m2).unwrap();
    for byte in 0..MSG2_LEN {
        for bit in 0..8 {
            let mut m = m2;
            m[byte] ^= 1 << bit;
            let got = initiator().read_message(&m);
            assert!(
                matches!(got, Err(Error::Authentication | Error::WeakKey)),
                "byte {byte} bit {bit}: {got:?}"
            );
        }
    }
}

#[test]
fn truncated_or_padded_handshake_messages_are_refused() {
    let psk = random_psk();
    let mut m1 = [0u8; MSG1_LEN + 1];
    Handshake::initiator(&psk, &mut rng()).write_message(&mut m1).unwrap();
    for len in [0, 1, 32, MSG1_LEN - 1, MSG1_LEN + 1] {
        let mut r = Handshake::responder(&psk, &mut rng());
        assert_eq!(r.read_message(&m1[..len]), Err(Error::Malformed), "length {len}");
        assert_eq!(r.read_message(&m1[..MSG1_LEN]), Err(Error::State), "failed for good");
    }
}

#[test]
fn handshake_steps_out_of_turn_are_refused() {
    let psk = random_psk();
    let mut buf = [0u8; 64];
    let mut r = Handshake::responder(&psk, &mut rng());
    assert!(!r.is_my_turn());
    assert_eq!(r.write_message(&mut buf), Err(Error::State));
    let mut i = Handshake::initiator(&psk, &mut rng());
    assert!(i.is_my_turn());
    assert_eq!(i.read_message(&[0u8; MSG2_LEN]), Err(Error::State));
    let i = Handshake::initiator(&psk, &mut rng());
    assert_eq!(i.into_channel().err(), Some(Error::State));
    // A buffer too small is the caller's problem, not the peer's: the handshake goes on.
    let mut i = Handshake::initiator(&psk, &mut rng());
    assert_eq!(i.next_message_len(), MSG1_LEN);
    assert_eq!(
        i.write_message(&mut buf[..MSG1_LEN - 1]),
        Err(Error::BufferTooSmall { needed: MSG1_LEN })
    );
    assert_eq!(i.write_message(&mut buf), Ok(MSG1_LEN));
    assert_eq!(i.next_message_len(), MSG2_LEN);
}

#[test]
fn a_low_order_ephemeral_key_is_refused() {
    // u = 0 and u = 1 are points of small order: X25519 with them gives all zeros.
    for point in [[0u8; 32], {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    }] {
        let mut i = Handshake::initiator(&random_psk(), &mut rng());
        i.write_message(&mut [0u8; MSG1_LEN]).unwrap();
        let mut m2 = [0u8; MSG2_LEN];
        m2[..32].copy_from_slice(&point);
        assert_eq!(i.read_message(&m2), Err(Error::WeakKey));
    }
}

#[test]
fn fresh_ephemeral_keys_make_every_session_different() {
    let psk = random_psk();
    let mut a = [0u8; MSG1_LEN];
    let mut b = [0u8; MSG1_LEN];
    Handshake::initiator(&psk, &mut rng()).write_message(&mut a).unwrap();
    Handshake::initiator(&psk, &mut rng()).write_message(&mut b).unwrap();
    assert_ne!(a, b);
    // And a frame of one session does not open in another with the same key.
    let (mut i1, _) = channels(&psk);
    let (_, mut r2) = channels(&psk);
    let sealed = seal(&mut i1, &echo(1, b"x"));
    assert_eq!(open(&mut r2, &sealed), Err(Error::Authentication));
}

// --- sealed frames ----------------------------------------------------------------------------

#[test]
fn frames_flow_both_ways_and_a_lost_frame_does_not_end_the_session() {
    let (mut i, mut r) = channels(&random_psk());
    for n in 0..5u32 {
        let request = echo(n + 1, &vec![n as u8; n as usize * 100]);
        let sealed = seal(&mut i, &request);
        assert_eq!(sealed.len(), request.len() + SEAL_OVERHEAD);
        assert_eq!(open(&mut r, &sealed).unwrap(), request);
        let response = frame(FrameSpec::response(Kind::Echo, n + 1), b"ok");
        let sealed = seal(&mut r, &response);
        assert_eq!(open(&mut i, &sealed).unwrap(), response);
    }
    assert_eq!((i.send_counter(), r.recv_counter()), (5, 5));
    // Frame 5 is lost (a serial link's CRC layer dropped it); frame 6 still opens.
    let _lost = seal(&mut i, &echo(6, b"lost"));
    let next = echo(7, b"next");
    assert_eq!(open(&mut r, &seal(&mut i, &next)).unwrap(), next);
    assert_eq!(r.recv_counter(), 7);
}

#[test]
fn sealing_in_place_needs_no_copy() {
    let (mut i, mut r) = channels(&random_psk());
    let inner = echo(9, b"in place");
    let mut buf = vec![0u8; inner.len() + SEAL_OVERHEAD];
    buf[SEALED_PREFIX..SEALED_PREFIX + inner.len()].copy_from_slice(&inner);
    let n = i.seal_in_place(&mut buf, inner.len()).unwrap();
    assert_eq!(n, buf.len());
    assert_ne!(
        &buf[SEALED_PREFIX..SEALED_PREFIX + inner.len()],
        inner.as_slice(),
        "encrypted"
    );
    let frame = r.open_in_place(&mut buf).unwrap();
    assert_eq!(frame.body, b"in place");
    let short = inner.len() + SEAL_OVERHEAD - 1;
    assert_eq!(
        i.seal_in_place(&mut buf[..short], inner.len()),
        Err(Error::BufferTooSmall { needed: short + 1 })
    );
}

#[test]
fn every_modified_byte_of_a_sealed_frame_is_refused() {
    let psk = random_psk();
    let inner = echo(1, b"hello");
    let (mut i, mut damaged) = channels(&psk);
    let sealed = seal(&mut i, &inner);
    for byte in 0..sealed.len() {
        for bit in 0..8 {
            let mut m = sealed.clone();
            m[byte] ^= 1 << bit;
            // As damage: the CRCs no longer match, so the frame is dropped like any damaged
            // frame, and the session goes on.
            assert_eq!(
                open(&mut damaged, &m),
                Err(Error::Malformed),
                "damage at byte {byte} bit {bit}"
            );
            assert!(!damaged.is_closed());
            // As an attack, with the CRCs recomputed; one bit a byte, as each needs a new session
            // (the refusal closes the channel). A flip inside the CRC fields themselves cannot be
            // "fixed" without undoing it.
            if (16..24).contains(&byte) || bit != byte % 8 {
                continue;
            }
            let (mut i, mut r) = channels(&psk);
            let genuine = seal(&mut i, &inner);
            let mut attack = genuine.clone();
            attack[byte] ^= 1 << bit;
            fix_crcs(&mut attack);
            let got = open(&mut r, &attack);
            if byte == 5 {
                // The reserved byte is ignored on receive, as in every frame, and so is not
                // authenticated: the frame opens to the very same inner frame.
                assert_eq!(got, Ok(inner.clone()), "reserved byte");
                continue;
            }
            assert!(got.is_err(), "attack at byte {byte} bit {bit} accepted");
            if parse_datagram(&attack, usize::MAX).is_err() {
                // Magic, version or a length changed: not one frame of this version, so a
                // decoder would never deliver it as it is; refused like damage.
                assert_eq!(got, Err(Error::Malformed), "byte {byte} bit {bit}");
                continue;
            }
            assert!(
                r.is_closed(),
                "attack at byte {byte} bit {bit} did not close the channel"
            );
            assert_eq!(open(&mut r, &genuine), Err(Error::State));
        }
    }
    // The damaged frames did not use up the counter: the intact frame still opens.
    assert_eq!(open(&mut damaged, &sealed), Ok(inner));
}

#[test]
fn a_replayed_frame_is_refused_and_closes_the_channel() {
    let (mut i, mut r) = channels(&random_psk());
    let sealed = seal(&mut i, &echo(1, b"once"));
    open(&mut r, &sealed).unwrap();
    assert_eq!(open(&mut r, &sealed), Err(Error::Replay));
    assert!(r.is_closed());
    let later = seal(&mut i, &echo(2, b"later"));
    assert_eq!(open(&mut r, &later), Err(Error::State));
    assert_eq!(r.seal(&echo(3, b"x"), &mut [0u8; 128]), Err(Error::State));
}

#[test]
fn reordered_frames_are_refused() {
    let (mut i, mut r) = channels(&random_psk());
    let first = seal(&mut i, &echo(1, b"first"));
    let second = seal(&mut i, &echo(2, b"second"));
    open(&mut r, &second).unwrap();
    assert_eq!(open(&mut r, &first), Err(Error::Replay));
}

#[test]
fn a_replayed_counter_with_new_content_is_refused_before_decryption() {
    let (mut i, mut r) = channels(&random_psk());
    let a = seal(&mut i, &echo(1, b"a"));
    open(&mut r, &a).unwrap();
    // Counter 0 again, with garbage after it: refused by the counter alone.
    let mut b = a.clone();
    b[SEALED_PREFIX] ^= 0xFF;
    fix_crcs(&mut b);
    assert_eq!(open(&mut r, &b), Err(Error::Replay));
}

#[test]
fn truncated_frames_are_refused() {
    let psk = random_psk();
    let (mut i, mut r) = channels(&psk);
    let sealed = seal(&mut i, &echo(1, b"hello, world"));
    for cut in 1..sealed.len() {
        // Cut as damage (the header no longer matches the length): dropped, the session goes on.
        let short = &sealed[..sealed.len() - cut];
        assert_eq!(open(&mut r, short), Err(Error::Malformed), "cut {cut}");
        assert!(!r.is_closed());
    }
    // Cut by an attacker who rewrites body_len and the CRCs: refused, and the channel closes.
    for cut in [1, 16, 17, 20] {
        let (mut i, mut r) = channels(&psk);
        let sealed = seal(&mut i, &echo(1, b"hello, world"));
        let mut short = sealed[..sealed.len() - cut].to_vec();
        let body_len = (short.len() - HEADER_LEN) as u32;
        short[12..16].copy_from_slice(&body_len.to_le_bytes());
        fix_crcs(&mut short);
        let got = open(&mut r, &short);
        assert!(
            matches!(got, Err(Error::Authentication | Error::Malformed)),
            "cut {cut}: {got:?}"
        );
        assert!(r.is_closed());
    }
}

#[test]
fn an_unsealed_frame_after_the_handshake_is_refused() {
    let (_, mut r) = channels(&random_psk());
    let plain = echo(1, b"plain");
    assert_eq!(open(&mut r, &plain), Err(Error::Unsealed));
    assert!(r.is_closed());
    // Also through `open`, from a decoded frame.
    let (_, mut r) = channels(&random_psk());
    let hello = frame(FrameSpec::request(Kind::Hello, 2), b"");
    let decoded = parse_datagram(&hello, 1024).unwrap();
    assert_eq!(r.open(&decoded, &mut [0u8; 64]).err(), Some(Error::Unsealed));
    assert!(r.is_closed());
}

#[test]
fn a_frame_sealed_for_the_other_direction_is_refused() {
    // Reflection: the initiator's own frame sent back to it.
    let (mut i, _) = channels(&random_psk());
    let sealed = seal(&mut i, &echo(1, b"mirror"));
    assert_eq!(open(&mut i, &sealed), Err(Error::Authentication));
}

#[test]
fn the_inner_frame_must_be_one_valid_ordinary_frame() {
    let psk = random_psk();
    // A handshake frame inside a sealed frame.
    let (mut i, mut r) = channels(&psk);
    let nested = frame(FrameSpec::request(Kind::Handshake, 1), &[0u8; MSG1_LEN]);
    assert_eq!(open(&mut r, &seal(&mut i, &nested)), Err(Error::Malformed));
    // An inner frame with a bad payload CRC.
    let (mut i, mut r) = channels(&psk);
    let mut bad = echo(1, b"hello");
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(open(&mut r, &seal(&mut i, &bad)), Err(Error::Malformed));
    // Bytes after the inner frame.
    let (mut i, mut r) = channels(&psk);
    let mut trailing = echo(1, b"hello");
    trailing.push(0);
    assert_eq!(open(&mut r, &seal(&mut i, &trailing)), Err(Error::Malformed));
    // Too short to hold a frame at all is refused when sealing.
    let (mut i, _) = channels(&psk);
    assert_eq!(i.seal(&[0u8; HEADER_LEN - 1], &mut [0u8; 128]), Err(Error::Malformed));
}

#[test]
fn open_needs_room_for_the_inner_frame() {
    let (mut i, mut r) = channels(&random_psk());
    let inner = echo(1, b"hello");
    let sealed = seal(&mut i, &inner);
    let decoded = parse_datagram(&sealed, 1024).unwrap();
    assert_eq!(
        r.open(&decoded, &mut [0u8; 8]).err(),
        Some(Error::BufferTooSmall { needed: inner.len() })
    );
    assert!(!r.is_closed());
    let mut out = vec![0u8; inner.len()];
    assert_eq!(r.open(&decoded, &mut out).unwrap().body, b"hello");
}

// --- interoperation with snow on random keys --------------------------------------------------

fn snow_builder(psk: &[u8; 32]) -> snow::Builder<'_> {
    snow::Builder::new(std::str::from_utf8(PROTOCOL_NAME).unwrap().parse().unwrap())
        .psk(0, psk)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
}

#[test]
fn our_initiator_and_snow_responder_agree() {
    let key = random_key();
    let mut i = Handshake::initiator(&Psk::from_bytes(key), &mut rng());
    let mut r = snow_builder(&key).build_responder().unwrap();
    let mut m = [0u8; 64];
    let mut payload = [0u8; 64];
    let n = i.write_message(&mut m).unwrap();
    assert_eq!(r.read_message(&m[..n], &mut payload).unwrap(), 0);
    let n = r.write_message(&[], &mut m).unwrap();
    i.read_message(&m[..n]).unwrap();
    assert_eq!(i.handshake_hash().as_slice(), r.get_handshake_hash());
}

#[test]
fn snow_initiator_and_our_responder_agree_and_a_wrong_key_fails() {
    let key = random_key();
    let mut i = snow_builder(&key).build_initiator().unwrap();
    let mut r = Handshake::responder(&Psk::from_bytes(key), &mut rng());
    let mut m = [0u8; 64];
    let mut payload = [0u8; 64];
    let n = i.write_message(&[], &mut m).unwrap();
    r.read_message(&m[..n]).unwrap();
    let n = r.write_message(&mut m).unwrap();
    assert_eq!(i.read_message(&m[..n], &mut payload).unwrap(), 0);
    assert_eq!(i.get_handshake_hash(), r.handshake_hash().as_slice());
    // snow with another key: our responder refuses its message 1.
    let other = random_key();
    let mut i = snow_builder(&other).build_initiator().unwrap();
    let n = i.write_message(&[], &mut m).unwrap();
    let mut r = Handshake::responder(&Psk::from_bytes(key), &mut rng());
    assert_eq!(r.read_message(&m[..n]), Err(Error::Authentication));
}

// --- memory -----------------------------------------------------------------------------------

#[test]
fn state_sizes_stay_small() {
    let handshake = core::mem::size_of::<Handshake>();
    let channel = core::mem::size_of::<Channel>();
    let psk = core::mem::size_of::<Psk>();
    println!("size_of: Handshake {handshake} B, Channel {channel} B, Psk {psk} B");
    assert_eq!(psk, 32);
    assert!(handshake <= 200, "Handshake is {handshake} bytes");
    assert!(channel <= 96, "Channel is {channel} bytes");
}

// --- properties -------------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// One fixed session for all cases (fixed ephemeral keys keep the cases reproducible).
    fn fixed_channels() -> (Channel, Channel) {
        let psk = Psk::from_bytes([7; 32]);
        let mut i = Handshake::with_fixed_ephemeral(Role::Initiator, &psk, [1; 32]);
        let mut r = Handshake::with_fixed_ephemeral(Role::Responder, &psk, [2; 32]);
        let mut m = [0u8; 64];
        let n = i.write_message(&mut m).unwrap();
        r.read_message(&m[..n]).unwrap();
        let n = r.write_message(&mut m).unwrap();
        i.read_message(&m[..n]).unwrap();
        (i.into_channel().unwrap(), r.into_channel().unwrap())
    }

    proptest! {
        // Each case needs a fresh session (two X25519 key pairs and DHs, slow in a debug build).
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Arbitrary edits (overwrites, a cut, bytes appended), with the CRCs recomputed or not:
        /// `open` never panics, and whatever it accepts is the very frame that was sealed.
        #[test]
        fn edited_sealed_frames_are_refused_or_unchanged(
            body in vec(any::<u8>(), 0..200),
            edits in vec((any::<usize>(), any::<u8>()), 0..4),
            cut in 0usize..8,
            extra in vec(any::<u8>(), 0..3),
            fix in any::<bool>(),
        ) {
            let (mut i, mut r) = fixed_channels();
            let inner = echo(5, &body);
            let sealed = seal(&mut i, &inner);
            let mut m = sealed.clone();
            for (at, value) in &edits {
                let at = at % m.len();
                m[at] = *value;
            }
            m.truncate(m.len() - cut.min(m.len() - HEADER_LEN));
            m.extend_from_slice(&extra);
            if fix {
                let body_len = (m.len() - HEADER_LEN) as u32;
                m[12..16].copy_from_slice(&body_len.to_le_bytes());
                fix_crcs(&mut m);
            }
            if let Ok(got) = open(&mut r, &m) {
                prop_assert_eq!(got, inner);
            }
        }

        /// Bytes that are not a sealed frame at all never panic the channel.
        #[test]
        fn junk_never_panics(junk in vec(any::<u8>(), 0..120)) {
            let (_, mut r) = fixed_channels();
            let _ = open(&mut r, &junk);
            // The same junk as the body of a decoded frame of kind Sealed.
            let header = tether_core::wire::Header {
                version: 1,
                kind: Kind::Sealed,
                flags: tether_core::wire::Flags::NONE,
                request_id: 0,
                meta_len: 0,
                body_len: junk.len() as u32,
                payload_crc: 0,
            };
            let (_, mut r) = fixed_channels();
            let frame = tether_core::wire::Frame { header, meta: &[], body: &junk };
            prop_assert!(r.open(&frame, &mut [0u8; 128]).is_err());
        }
    }
}
