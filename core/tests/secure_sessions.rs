//! Secure sessions in the session engine, from the attacker's side: a device with a key serves
//! nothing but `Hello` and the handshake without it, and a sealed session refuses every frame that
//! is not sealed with its keys (docs/PROTOCOL.md §16.3).

#![cfg(feature = "secure")]

use rand_core::UnwrapErr;
use sha2::{Digest, Sha256};
use tether_core::codec::{encode, encode_raw, Decoder};
use tether_core::msg;
use tether_core::secure::{Channel, Handshake, Lock, Psk, MSG1_LEN};
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Device, DeviceConfig, Transport};
use tether_core::session::{Close, Limits, Rank, Session, Standing};
use tether_core::wire::{ErrorCode, Flags, FrameSpec, Kind};

const N: usize = 1024;
const KEY: [u8; 32] = [0x42; 32];

type Dev = Device<'static, (), RamStore<'static, 4>>;

/// One device with a key, one session, and the bytes the device sent.
struct Rig {
    device: Dev,
    session: Session<N>,
    now: u64,
    closed: Option<Close>,
}

impl Rig {
    fn new(keyed: bool) -> Rig {
        let mem: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
        let config = DeviceConfig {
            name: "secure-test",
            window: 4,
        };
        let mut device = Device::new(config, RamStore::new(mem), &[], (), N, 2);
        if keyed {
            device.require_key(Lock::new(Psk::from_bytes(KEY), [7; 32]));
        }
        let mut session = Session::new();
        session.open(0, &mut device);
        Rig {
            device,
            session,
            now: 0,
            closed: None,
        }
    }

    /// Feeds `wire` and drains every answer; stops at the first verdict (which closes the
    /// session, as a driver would).
    fn feed(&mut self, wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut input = wire;
        loop {
            let mut room = [0u8; 700];
            let sent = self.session.transmit(self.now, &mut room, &mut self.device);
            out.extend_from_slice(&room[..sent]);
            let used = self.session.receive(self.now, input, &mut self.device);
            input = &input[used..];
            if let Some(why) = self.session.check(self.now) {
                self.session.drop_peer(&mut self.device, why);
                self.closed = Some(why);
                return out;
            }
            if sent == 0 && used == 0 {
                return out;
            }
        }
    }
}

/// A frame as the test saw it: kind, flags, request id, metadata, body.
type Seen = (Kind, Flags, u32, Vec<u8>, Vec<u8>);

fn frames(wire: &[u8]) -> Vec<Seen> {
    let mut decoder = Decoder::<4096>::new();
    let mut input = wire;
    let mut all = Vec::new();
    loop {
        let (used, item) = decoder.decode(input);
        input = &input[used..];
        match item {
            Some(Ok(f)) => all.push((f.kind(), f.flags(), f.request_id(), f.meta.to_vec(), f.body.to_vec())),
            Some(Err(e)) => panic!("device sent garbage: {e}"),
            None => return all,
        }
    }
}

fn request<M: serde::Serialize>(kind: Kind, id: u32, meta: &M, body: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; N];
    let n = encode(&mut buf, FrameSpec::request(kind, id), meta, body).unwrap();
    buf.truncate(n);
    buf
}

fn hello(id: u32) -> Vec<u8> {
    request(Kind::Hello, id, &msg::Hello { client: "attacker" }, &[])
}

fn error_code(meta: &[u8]) -> u16 {
    postcard::from_bytes::<msg::ErrorInfo<'_>>(meta).unwrap().code
}

/// The client's side: message 1 for `key`, and the handshake to finish with message 2.
fn message1(key: [u8; 32]) -> (Handshake, Vec<u8>) {
    let mut hs = Handshake::initiator(&Psk::from_bytes(key), &mut UnwrapErr(getrandom::SysRng));
    let mut m1 = [0u8; MSG1_LEN];
    hs.write_message(&mut m1).unwrap();
    let mut buf = vec![0u8; 128];
    let n = encode_raw(&mut buf, FrameSpec::request(Kind::Handshake, 1), &[], &m1).unwrap();
    buf.truncate(n);
    (hs, buf)
}

/// A completed handshake: the client's channel and the bytes of the exchange.
fn handshake(rig: &mut Rig) -> (Channel, Vec<u8>) {
    let (mut hs, m1) = message1(KEY);
    let answer = frames(&rig.feed(&m1));
    assert_eq!(answer.len(), 1);
    let (kind, flags, id, _, body) = &answer[0];
    assert_eq!(
        (*kind, *flags, *id),
        (Kind::Handshake, Flags::RESPONSE, 1),
        "{answer:?}"
    );
    hs.read_message(body).unwrap();
    (hs.into_channel().unwrap(), m1)
}

fn seal(channel: &mut Channel, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; inner.len() + 64];
    let n = channel.seal(inner, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Opens every sealed frame the device sent; panics on anything unsealed.
fn open_all(channel: &mut Channel, wire: &[u8]) -> Vec<Seen> {
    let mut decoder = Decoder::<4096>::new();
    let mut input = wire;
    let mut all = Vec::new();
    loop {
        let (used, item) = decoder.decode(input);
        input = &input[used..];
        match item {
            Some(Ok(f)) => {
                let mut plain = vec![0u8; f.body.len()];
                let inner = channel.open(&f, &mut plain).expect("a sealed frame from the device");
                all.push((
                    inner.kind(),
                    inner.flags(),
                    inner.request_id(),
                    inner.meta.to_vec(),
                    inner.body.to_vec(),
                ));
            }
            Some(Err(e)) => panic!("device sent garbage: {e}"),
            None => return all,
        }
    }
}

/// One sealed request and its opened answers.
fn call(rig: &mut Rig, channel: &mut Channel, inner: &[u8]) -> Vec<Seen> {
    let wire = rig.feed(&seal(channel, inner));
    open_all(channel, &wire)
}

/// Every request kind a client could send, with valid metadata: what an attacker without the key
/// would try.
fn every_request() -> Vec<(Kind, Vec<u8>)> {
    let name = msg::NameRef { name: "victim.txt" };
    vec![
        (Kind::Echo, request(Kind::Echo, 2, &(), b"x")),
        (Kind::Upper, request(Kind::Upper, 2, &(), b"x")),
        (
            Kind::Exec,
            request(
                Kind::Exec,
                2,
                &msg::ExecRequest {
                    command: "reboot",
                    args: Default::default(),
                },
                &[],
            ),
        ),
        (
            Kind::PutBegin,
            request(
                Kind::PutBegin,
                2,
                &msg::PutBegin {
                    name: "victim.txt",
                    size: 1,
                    sha256: [0; 32],
                    overwrite: true,
                },
                &[],
            ),
        ),
        (
            Kind::PutData,
            request(Kind::PutData, 2, &msg::PutData { offset: 0 }, b"x"),
        ),
        (Kind::PutCommit, request(Kind::PutCommit, 2, &name, &[])),
        (Kind::PutAbort, request(Kind::PutAbort, 2, &name, &[])),
        (
            Kind::Get,
            request(
                Kind::Get,
                2,
                &msg::Get {
                    name: "victim.txt",
                    offset: 0,
                },
                &[],
            ),
        ),
        (Kind::List, request(Kind::List, 2, &msg::ListRequest { start: 0 }, &[])),
        (Kind::Stat, request(Kind::Stat, 2, &name, &[])),
        (Kind::Remove, request(Kind::Remove, 2, &name, &[])),
        (
            Kind::TimeGet,
            request(Kind::TimeGet, 2, &msg::TimeGet { format: "%F" }, &[]),
        ),
        (
            Kind::TimeSet,
            request(
                Kind::TimeSet,
                2,
                &msg::Clock {
                    unix_ms: 1_800_000_000_000,
                },
                &[],
            ),
        ),
        (
            Kind::Message,
            request(Kind::Message, 2, &msg::Message { from: "x" }, b"hi"),
        ),
        (
            Kind::Subscribe,
            request(Kind::Subscribe, 2, &msg::Subscribe { on: true }, &[]),
        ),
    ]
}

#[test]
fn hello_says_a_key_is_required_and_nothing_else_is_served_without_it() {
    let mut rig = Rig::new(true);
    let answer = frames(&rig.feed(&hello(1)));
    let info: msg::Info<'_> = postcard::from_bytes(&answer[0].3).unwrap();
    assert!(info.key_required);
    for (kind, wire) in every_request() {
        let answer = frames(&rig.feed(&wire));
        assert_eq!(answer.len(), 1, "{kind:?}");
        let (k, flags, _, meta, _) = &answer[0];
        assert_eq!(*k, kind);
        assert!(flags.contains(Flags::ERROR), "{kind:?} was served without the key");
        assert_eq!(error_code(meta), ErrorCode::Unauthorized as u16, "{kind:?}");
    }
    assert_eq!(
        rig.closed, None,
        "refusals alone do not end the session before its deadline"
    );
    assert_eq!(rig.device.stats.uploads, 0);
}

#[test]
fn a_device_without_a_key_says_so_and_refuses_handshakes() {
    let mut rig = Rig::new(false);
    let answer = frames(&rig.feed(&hello(1)));
    let info: msg::Info<'_> = postcard::from_bytes(&answer[0].3).unwrap();
    assert!(!info.key_required);
    let (_, m1) = message1(KEY);
    let answer = frames(&rig.feed(&m1));
    assert_eq!(error_code(&answer[0].3), ErrorCode::UnknownKind as u16);
}

#[test]
fn the_right_key_opens_every_service_sealed() {
    let mut rig = Rig::new(true);
    let (mut channel, _) = handshake(&mut rig);
    let echo = request(Kind::Echo, 5, &(), b"sealed hello");
    let wire = rig.feed(&seal(&mut channel, &echo));
    assert!(
        frames(&wire).iter().all(|f| f.0 == Kind::Sealed),
        "everything the device sends is sealed"
    );
    let answer = open_all(&mut channel, &wire);
    assert_eq!(
        (answer[0].0, answer[0].2, &answer[0].4[..]),
        (Kind::Echo, 5, &b"sealed hello"[..])
    );

    // A hello inside the session: the advertised chunk leaves room for sealing.
    let answer = call(&mut rig, &mut channel, &hello(6));
    let info: msg::Info<'_> = postcard::from_bytes(&answer[0].3).unwrap();
    assert!(info.key_required);
    assert_eq!(info.max_frame as usize, N);
    assert!(info.max_chunk as usize + 24 + 16 + 48 <= N);

    // An upload and a download of more than one frame, bit-exact through sealing.
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    let sha256: [u8; 32] = Sha256::digest(&data).into();
    let begin = msg::PutBegin {
        name: "f.bin",
        size: data.len() as u64,
        sha256,
        overwrite: false,
    };
    let answer = call(&mut rig, &mut channel, &request(Kind::PutBegin, 7, &begin, &[]));
    assert!(!answer[0].1.contains(Flags::ERROR), "{answer:?}");
    let chunk = info.max_chunk as usize;
    for (i, part) in data.chunks(chunk).enumerate() {
        let put = request(
            Kind::PutData,
            8 + i as u32,
            &msg::PutData {
                offset: (i * chunk) as u64,
            },
            part,
        );
        let answer = call(&mut rig, &mut channel, &put);
        assert!(!answer[0].1.contains(Flags::ERROR), "{answer:?}");
    }
    let commit = request(Kind::PutCommit, 20, &msg::NameRef { name: "f.bin" }, &[]);
    let answer = call(&mut rig, &mut channel, &commit);
    assert!(!answer[0].1.contains(Flags::ERROR), "{answer:?}");
    let get = request(
        Kind::Get,
        21,
        &msg::Get {
            name: "f.bin",
            offset: 0,
        },
        &[],
    );
    let answer = call(&mut rig, &mut channel, &get);
    let got: Vec<u8> = answer
        .iter()
        .filter(|f| f.0 == Kind::Get)
        .flat_map(|f| f.4.clone())
        .collect();
    assert_eq!(got, data);
    assert_eq!(rig.closed, None);
}

#[test]
fn a_wrong_key_is_refused_and_ends_the_session() {
    let mut rig = Rig::new(true);
    let (_, m1) = message1([0x43; 32]);
    let answer = frames(&rig.feed(&m1));
    assert_eq!(answer.len(), 1);
    assert_eq!(
        (answer[0].0, error_code(&answer[0].3)),
        (Kind::Handshake, ErrorCode::Unauthorized as u16)
    );
    assert_eq!(rig.closed, Some(Close::Handshake));
    assert_eq!(rig.device.stats.auth_failures, 1);
}

#[test]
fn a_modified_handshake_message_is_refused() {
    for at in [0, 31, 32, 47] {
        let mut rig = Rig::new(true);
        let (_, mut m1) = message1(KEY);
        // Flip a bit of message 1 and re-encode so that the frame's CRCs are right: an attacker's
        // change, not line damage.
        let body_at = m1.len() - MSG1_LEN;
        let mut body = m1[body_at..].to_vec();
        body[at] ^= 0x01;
        m1 = vec![0u8; 128];
        let n = encode_raw(&mut m1, FrameSpec::request(Kind::Handshake, 1), &[], &body).unwrap();
        rig.feed(&m1[..n]);
        assert_eq!(rig.closed, Some(Close::Handshake), "bit at {at}");
    }
    // A message 1 of the wrong length.
    let mut rig = Rig::new(true);
    let mut short = vec![0u8; 128];
    let n = encode_raw(&mut short, FrameSpec::request(Kind::Handshake, 1), &[], &[0u8; 40]).unwrap();
    rig.feed(&short[..n]);
    assert_eq!(rig.closed, Some(Close::Handshake));
}

/// PROTOCOL.md §16.4, §16.6: a message 1 that does not verify is `Unauthorized`; one that is not
/// a 48-byte body (in a request with empty metadata) is `Malformed`. Either way the answer has
/// kind `0x40` and the request's id, and the session ends.
#[test]
fn a_message_1_of_the_wrong_shape_is_malformed_and_ends_the_session() {
    let (_, m1) = message1(KEY);
    let body = &m1[m1.len() - MSG1_LEN..];
    let mut flipped = body.to_vec();
    flipped[40] ^= 1;
    for (body, expected) in [
        (&body[..40], ErrorCode::Malformed),
        (&[body, &[0][..]].concat()[..], ErrorCode::Malformed),
        (&flipped[..], ErrorCode::Unauthorized),
    ] {
        let mut rig = Rig::new(true);
        let mut frame = vec![0u8; 128];
        let n = encode_raw(&mut frame, FrameSpec::request(Kind::Handshake, 6), &[], body).unwrap();
        let answer = frames(&rig.feed(&frame[..n]));
        assert_eq!(answer.len(), 1, "{answer:?}");
        let (kind, flags, id, meta, _) = &answer[0];
        assert_eq!(
            (*kind, *flags, *id),
            (Kind::Handshake, Flags::RESPONSE | Flags::ERROR, 6)
        );
        assert_eq!(error_code(meta), expected as u16, "a body of {} bytes", body.len());
        assert_eq!(rig.closed, Some(Close::Handshake));
    }
}

/// PROTOCOL.md §16.3: before its handshake a session may send `Hello` and requests (answered
/// `Unauthorized`); a handshake after them is served like a first frame, and the session sealed.
#[test]
fn a_handshake_after_hello_and_refused_requests_is_accepted() {
    let mut rig = Rig::new(true);
    let info = frames(&rig.feed(&hello(7)));
    assert!(postcard::from_bytes::<msg::Info<'_>>(&info[0].3).unwrap().key_required);
    let refused = frames(&rig.feed(&request(Kind::Stat, 8, &msg::NameRef { name: "x" }, &[])));
    assert_eq!(error_code(&refused[0].3), ErrorCode::Unauthorized as u16);
    let (mut channel, _) = handshake(&mut rig);
    let answer = call(&mut rig, &mut channel, &request(Kind::Echo, 9, &(), b"in"));
    assert_eq!((answer[0].2, &answer[0].4[..]), (9, &b"in"[..]));
    assert_eq!(rig.closed, None);
}

#[test]
fn unsealed_frames_after_the_handshake_end_the_session_unanswered() {
    let mut rig = Rig::new(true);
    handshake(&mut rig);
    let wire = rig.feed(&request(Kind::Remove, 9, &msg::NameRef { name: "x" }, &[]));
    assert!(wire.is_empty(), "nothing unsealed is sent on a sealed session");
    assert_eq!(rig.closed, Some(Close::Refused));
}

#[test]
fn a_second_handshake_inside_the_session_is_refused() {
    let mut rig = Rig::new(true);
    let (mut channel, m1) = handshake(&mut rig);
    assert!(rig.feed(&seal(&mut channel, &m1)).is_empty());
    assert_eq!(rig.closed, Some(Close::Refused));
    // And in the clear, after the handshake.
    let mut rig = Rig::new(true);
    let (_, m1) = handshake(&mut rig);
    assert!(rig.feed(&m1).is_empty());
    assert_eq!(rig.closed, Some(Close::Refused));
}

#[test]
fn a_replayed_sealed_frame_ends_the_session() {
    let mut rig = Rig::new(true);
    let (mut channel, _) = handshake(&mut rig);
    let echo = seal(&mut channel, &request(Kind::Echo, 5, &(), b"once"));
    assert_eq!(open_all(&mut channel, &rig.feed(&echo)).len(), 1);
    assert!(rig.feed(&echo).is_empty());
    assert_eq!(rig.closed, Some(Close::Refused));
}

#[test]
fn a_recorded_session_replayed_to_a_new_session_gets_nowhere() {
    // Record a whole session: message 1, then a sealed Remove.
    let mut rig = Rig::new(true);
    let (mut channel, m1) = handshake(&mut rig);
    let remove = seal(
        &mut channel,
        &request(Kind::Remove, 9, &msg::NameRef { name: "x" }, &[]),
    );
    // Replayed to a fresh session of the same device, message 1 is refused: the device remembers
    // the messages 1 it answered lately.
    let mut replay = Session::<N>::new();
    std::mem::swap(&mut rig.session, &mut replay);
    rig.session.open(0, &mut rig.device);
    rig.closed = None;
    let answer = frames(&rig.feed(&m1));
    assert_eq!(error_code(&answer[0].3), ErrorCode::Unauthorized as u16, "{answer:?}");
    assert_eq!(rig.closed, Some(Close::Handshake));
    // A device that has forgotten it (rebooted, with a new seed as every boot must have) answers
    // it with a new ephemeral key, so the recorded frame was sealed for keys this session does
    // not have.
    let mut rig = Rig::new(false);
    rig.device.require_key(Lock::new(Psk::from_bytes(KEY), [8; 32]));
    rig.session.open(0, &mut rig.device);
    let answer = frames(&rig.feed(&m1));
    assert_eq!(answer[0].0, Kind::Handshake, "message 1 alone proves nothing");
    let removes_before = rig.device.stats.requests;
    assert!(rig.feed(&remove).is_empty());
    assert_eq!(rig.closed, Some(Close::Refused));
    assert_eq!(
        rig.device.stats.requests, removes_before,
        "the recorded request was not served"
    );
}

#[test]
fn a_flipped_bit_is_an_attack_when_the_crcs_agree_and_damage_when_they_do_not() {
    let mut rig = Rig::new(true);
    let (mut channel, _) = handshake(&mut rig);
    let mut frame = seal(&mut channel, &request(Kind::Echo, 5, &(), b"payload"));
    let header = tether_core::codec::parse_frame(&frame, N).unwrap().header;
    // Damage: one bit flipped in the ciphertext, CRC left as it was. The CRC layer drops it and
    // says so, sealed; the session goes on.
    let mut damaged = frame.clone();
    damaged[40] ^= 0x04;
    let answer = open_all(&mut channel, &rig.feed(&damaged));
    assert_eq!((answer[0].0, answer[0].2), (Kind::Unknown(0), 0), "names no request");
    assert_eq!(error_code(&answer[0].3), ErrorCode::BadCrc as u16);
    assert_eq!(rig.closed, None);
    // Attack: the same flip with the CRCs recomputed. The tag fails: the session ends.
    frame[40] ^= 0x04;
    let crc = tether_core::crc32::checksum(&frame[24..]);
    tether_core::wire::Header {
        payload_crc: crc,
        ..header
    }
    .emit(&mut frame);
    assert!(rig.feed(&frame).is_empty());
    assert_eq!(rig.closed, Some(Close::Refused));
}

#[test]
fn a_stalled_or_absent_handshake_does_not_hold_the_session() {
    // Half a message 1, then nothing: the frame deadline.
    let mut rig = Rig::new(true);
    let limits = Limits {
        handshake_ms: 60_000,
        ..Limits::DEFAULT
    };
    rig.session = Session::with_limits(limits);
    rig.session.open(0, &mut rig.device);
    let (_, m1) = message1(KEY);
    rig.feed(&m1[..30]);
    rig.now = limits.frame_ms;
    rig.feed(&[]);
    assert_eq!(rig.closed, Some(Close::FrameTimeout));
    // Only hellos, never a handshake: the handshake deadline, although the peer keeps talking.
    let mut rig = Rig::new(true);
    let step = Limits::DEFAULT.handshake_ms / 4;
    while rig.closed.is_none() && rig.now <= Limits::DEFAULT.handshake_ms {
        rig.feed(&hello(1));
        rig.now += step;
    }
    assert_eq!(rig.closed, Some(Close::NoHandshake));
    assert_eq!(rig.device.stats.auth_failures, 1);
    assert_eq!(rig.session.deadline(), None);
}

#[test]
fn datagrams_to_a_keyed_device_only_read() {
    let mut rig = Rig::new(true);
    let mut conn = tether_core::service::Conn::new();
    let mut out = [0u8; 512];
    for (kind, wire) in every_request() {
        let frame = tether_core::codec::parse_frame(&wire, N).unwrap();
        let n = rig.device.handle(&mut conn, &frame, Transport::Udp, &mut out);
        let answer = frames(&out[..n]);
        let refused = answer[0].1.contains(Flags::ERROR) && error_code(&answer[0].3) == ErrorCode::Unauthorized as u16;
        let reads = matches!(kind, Kind::Echo | Kind::Upper | Kind::TimeGet);
        assert_eq!(refused, !reads, "{kind:?} over UDP");
    }
}

/// PROTOCOL.md §1, §16.3: framed UDP carries no secure session; a device with a key answers
/// `Handshake` and `Sealed` datagrams `Unauthorized`, as every kind that is not a read.
#[test]
fn handshake_and_sealed_datagrams_are_unauthorized_with_a_key() {
    let mut rig = Rig::new(true);
    let mut conn = tether_core::service::Conn::new();
    let mut out = [0u8; 512];
    for kind in [Kind::Handshake, Kind::Sealed] {
        let wire = request(kind, 3, &(), &[0; 48]);
        let frame = tether_core::codec::parse_frame(&wire, N).unwrap();
        let n = rig.device.handle(&mut conn, &frame, Transport::Udp, &mut out);
        let answer = frames(&out[..n]);
        assert_eq!((answer[0].0, answer[0].2), (kind, 3));
        assert_eq!(error_code(&answer[0].3), ErrorCode::Unauthorized as u16, "{kind:?}");
    }
}

#[test]
fn events_reach_a_subscribed_session_sealed_and_no_one_else() {
    let mut rig = Rig::new(true);
    let (mut channel, _) = handshake(&mut rig);
    // Not subscribed: nothing is pushed.
    assert!(!rig.session.push_event(0, "chat", 1, b"early", &mut rig.device));
    let answer = call(
        &mut rig,
        &mut channel,
        &request(Kind::Subscribe, 3, &msg::Subscribe { on: true }, &[]),
    );
    assert_eq!((answer[0].0, answer[0].1), (Kind::Subscribe, Flags::RESPONSE));
    let seq = rig.device.next_event_seq();
    assert!(rig
        .session
        .push_event(0, "chat", seq, b"hello subscribers", &mut rig.device));
    // Busy with that event: the next one is missed, not queued behind it.
    assert!(!rig.session.push_event(0, "chat", seq + 1, b"missed", &mut rig.device));
    let wire = rig.feed(&[]);
    let events = open_all(&mut channel, &wire);
    assert_eq!(events.len(), 1);
    let (kind, flags, id, meta, body) = &events[0];
    assert_eq!((*kind, *flags, *id), (Kind::Event, Flags::NONE, 0));
    let event: msg::Event<'_> = postcard::from_bytes(meta).unwrap();
    assert_eq!(
        (event.topic, event.seq, &body[..]),
        ("chat", seq, &b"hello subscribers"[..])
    );
    // Unsubscribed again: nothing more.
    call(
        &mut rig,
        &mut channel,
        &request(Kind::Subscribe, 4, &msg::Subscribe { on: false }, &[]),
    );
    assert!(!rig.session.push_event(0, "chat", seq + 2, b"late", &mut rig.device));
    // A locked session cannot subscribe (and so receives nothing).
    let mut locked = Rig::new(true);
    let answer = frames(&locked.feed(&request(Kind::Subscribe, 3, &msg::Subscribe { on: true }, &[])));
    assert_eq!(error_code(&answer[0].3), ErrorCode::Unauthorized as u16);
    assert!(!locked.session.push_event(0, "chat", 9, b"x", &mut locked.device));
}

#[test]
fn a_session_open_before_the_key_was_given_must_prove_it_too() {
    let mut rig = Rig::new(false);
    let answer = frames(&rig.feed(&request(Kind::Echo, 1, &(), b"open")));
    assert!(!answer[0].1.contains(Flags::ERROR));
    rig.device.require_key(Lock::new(Psk::from_bytes(KEY), [7; 32]));
    let answer = frames(&rig.feed(&request(Kind::Remove, 2, &msg::NameRef { name: "x" }, &[])));
    assert_eq!(error_code(&answer[0].3), ErrorCode::Unauthorized as u16);
    let (mut channel, _) = handshake(&mut rig);
    let answer = call(&mut rig, &mut channel, &request(Kind::Echo, 3, &(), b"sealed"));
    assert_eq!(answer[0].4, b"sealed");
}

#[test]
fn on_a_line_a_new_peer_in_the_clear_starts_the_session_over_and_over_tcp_it_ends_it() {
    // A serial line: the previous client's sealed session is still there when the next one
    // starts with a hello (no key) or a handshake (with it).
    let mut rig = Rig::new(true);
    rig.session = Session::on_a_line(Limits::DEFAULT);
    rig.session.open(0, &mut rig.device);
    handshake(&mut rig);
    let answer = frames(&rig.feed(&hello(9)));
    let info: msg::Info<'_> = postcard::from_bytes(&answer[0].3).unwrap();
    assert!(info.key_required, "answered in the clear, locked again");
    let answer = frames(&rig.feed(&request(Kind::Remove, 10, &msg::NameRef { name: "x" }, &[])));
    assert_eq!(
        error_code(&answer[0].3),
        ErrorCode::Unauthorized as u16,
        "no access carried over"
    );
    let (mut channel, _) = handshake(&mut rig);
    handshake_again(&mut rig, &mut channel);
    assert_eq!(rig.closed, None);
    // A TCP session has no such rule: the same hello ends it (a new peer makes a new connection).
    let mut tcp = Rig::new(true);
    handshake(&mut tcp);
    assert!(tcp.feed(&hello(9)).is_empty());
    assert_eq!(tcp.closed, Some(Close::Refused));
}

/// On a line, a second handshake in the clear replaces the session's keys: the old channel's
/// frames no longer open, the new one's do.
fn handshake_again(rig: &mut Rig, old: &mut Channel) {
    let (mut new, _) = handshake(rig);
    let answer = call(rig, &mut new, &request(Kind::Echo, 11, &(), b"new keys"));
    assert_eq!(answer[0].4, b"new keys");
    let stale = seal(old, &request(Kind::Echo, 12, &(), b"old keys"));
    assert!(rig.feed(&stale).is_empty());
    assert_eq!(rig.closed, Some(Close::Refused));
    rig.closed = None;
    rig.session.open(0, &mut rig.device);
}

/// A keyed device's session on a serial line.
fn line_rig() -> Rig {
    let mut rig = Rig::new(true);
    rig.session = Session::on_a_line(Limits::DEFAULT);
    rig.session.open(0, &mut rig.device);
    rig
}

#[test]
fn on_a_line_a_repeated_message_1_gets_the_same_message_2_until_the_first_sealed_frame() {
    // A client that heard nothing (a slow board, or message 2 lost on the line) repeats its own
    // message 1: the device answers it with the very message 2 it sent, which that client's
    // handshake can read, instead of a new session's.
    let mut rig = line_rig();
    let (mut hs, m1) = message1(KEY);
    let first = rig.feed(&m1);
    rig.now += 1_500;
    let again = rig.feed(&m1);
    assert_eq!(first, again, "the same message 2, byte for byte");
    let again = rig.feed(&m1);
    assert_eq!(first, again);
    assert_eq!(rig.session.standing(), Standing::Answered);
    assert_eq!(rig.closed, None);
    hs.read_message(&frames(&first)[0].4).unwrap();
    let mut channel = hs.into_channel().unwrap();
    let answer = call(&mut rig, &mut channel, &request(Kind::Echo, 2, &(), b"sealed"));
    assert_eq!(answer[0].4, b"sealed", "the session completes with it");
    assert_eq!(rig.session.standing(), Standing::Authenticated);
    // Once the key is proven, the same message 1 is what it was before: a new peer's, which
    // starts the session over, and the lock refuses it as answered before (a replay). The
    // established session ends, as any frame in the clear would have ended it.
    let answer = frames(&rig.feed(&m1));
    assert_eq!(
        (answer[0].0, answer[0].1),
        (Kind::Handshake, Flags::RESPONSE | Flags::ERROR)
    );
    assert_eq!(error_code(&answer[0].3), ErrorCode::Unauthorized as u16);
    assert_eq!(rig.closed, Some(Close::Handshake));
    // Over TCP there is no such rule: a repeat ends the session (a second handshake).
    let mut tcp = Rig::new(true);
    let (_, m1) = message1(KEY);
    tcp.feed(&m1);
    assert!(frames(&tcp.feed(&m1)).iter().all(|f| f.1.contains(Flags::ERROR)));
    assert!(tcp.closed.is_some());
}

#[test]
fn on_a_line_a_different_message_1_before_the_first_sealed_frame_starts_the_session_over() {
    let mut rig = line_rig();
    let (_, m1) = message1(KEY);
    let first = rig.feed(&m1);
    // A new client (the first one gave up, or was killed): a new session, with new keys.
    let (mut hs, other) = message1(KEY);
    let second = rig.feed(&other);
    assert_ne!(frames(&first)[0].4, frames(&second)[0].4);
    hs.read_message(&frames(&second)[0].4).unwrap();
    let mut channel = hs.into_channel().unwrap();
    let answer = call(&mut rig, &mut channel, &request(Kind::Echo, 2, &(), b"new"));
    assert_eq!(answer[0].4, b"new");
    // And the first message 1 again is no repeat any more: refused as answered before.
    let answer = frames(&rig.feed(&m1));
    assert_eq!(error_code(&answer[0].3), ErrorCode::Unauthorized as u16);
    assert_eq!(rig.closed, Some(Close::Handshake));
}

#[test]
fn a_recorded_message_1_repeated_on_a_line_gets_only_its_message_2_and_does_not_hold_the_session() {
    // The attacker on the line replays a key holder's message 1 again and again: each time it gets
    // the message 2 it already saw, the session stays unproven, and the handshake deadline,
    // counted from the first, ends it.
    let (_, recorded) = message1(KEY);
    let mut rig = line_rig();
    let first = rig.feed(&recorded);
    let handshakes = rig.device.stats.handshakes;
    while rig.now + 1_000 < Limits::default().handshake_ms {
        rig.now += 1_000;
        assert_eq!(rig.feed(&recorded), first);
        assert_eq!(rig.session.standing(), Standing::Answered);
    }
    assert_eq!(rig.device.stats.handshakes, handshakes, "no new handshake");
    rig.now = Limits::default().handshake_ms;
    rig.feed(&[]);
    assert_eq!(rig.closed, Some(Close::NoHandshake));
}

#[test]
fn an_unproven_session_gives_way_oldest_first_however_busy_its_peer() {
    let mut rig = Rig::new(true);
    assert_eq!(
        rig.session.eviction_rank(rig.now),
        Some(Rank::locked(false, 0)),
        "silent: it may be a key holder about to send message 1"
    );
    for _ in 0..6 {
        rig.now += 500;
        rig.feed(&hello(1));
    }
    assert_eq!(rig.session.idle_ms(rig.now), 0, "the peer keeps talking");
    assert_eq!(rig.session.standing(), Standing::Locked, "but proves nothing");
    assert_eq!(
        rig.session.eviction_rank(rig.now),
        Some(Rank::locked(true, 3_000)),
        "it gives way at once, by age, before silent ones: a key holder starts with message 1"
    );
    // Answered, it goes after every unanswered session; proven, it never gives way.
    let (mut channel, _) = handshake(&mut rig);
    assert_eq!(rig.session.standing(), Standing::Answered);
    assert_eq!(
        rig.session.eviction_rank(rig.now),
        None,
        "answered: kept a while for its first sealed frame"
    );
    rig.now += 1_000;
    assert_eq!(
        rig.session.eviction_rank(rig.now),
        Rank::answered(1_000, 1_000),
        "then it goes, after every unanswered session"
    );
    call(&mut rig, &mut channel, &request(Kind::Echo, 2, &(), b"proof"));
    assert_eq!(rig.session.standing(), Standing::Authenticated);
    rig.now += 60_000;
    assert_eq!(rig.session.eviction_rank(rig.now), None, "idle a minute, still kept");
}

#[test]
fn a_replayed_message_1_is_answered_but_never_authenticates_and_the_deadline_ends_it() {
    // The attacker recorded a key holder's message 1 and replays it: the device cannot tell it
    // from the real one and answers, but without the key nothing sealed can follow.
    let (_, recorded) = message1(KEY);
    let mut rig = Rig::new(true);
    let answer = frames(&rig.feed(&recorded));
    assert_eq!(answer[0].0, Kind::Handshake);
    assert_eq!(rig.session.standing(), Standing::Answered);
    assert!(!rig.session.is_trusted());
    // Keeping it busy with garbage neither proves anything nor counts as activity.
    for _ in 0..9 {
        rig.now += 500;
        rig.feed(&[0x55]);
        assert_eq!(rig.closed, None);
    }
    assert_eq!(rig.session.standing(), Standing::Answered);
    rig.now = Limits::default().handshake_ms;
    rig.feed(&[]);
    assert_eq!(rig.closed, Some(Close::NoHandshake), "the handshake deadline holds");
    // The key holder's own session, with its first sealed frame in time, is not bound by it.
    let mut rig = Rig::new(true);
    let (mut channel, _) = handshake(&mut rig);
    call(&mut rig, &mut channel, &request(Kind::Echo, 2, &(), b"proof"));
    rig.now = 10 * Limits::default().handshake_ms;
    call(&mut rig, &mut channel, &request(Kind::Echo, 3, &(), b"later"));
    assert_eq!(rig.closed, None);
}

#[test]
fn garbage_is_never_activity() {
    // On an open device, a peer dripping garbage (and drawing error answers) grows idle as if
    // silent: it neither escapes eviction nor outlives the idle timeout.
    let mut rig = Rig::new(false);
    rig.feed(&hello(1));
    for _ in 0..8 {
        rig.now += 500;
        rig.feed(&[0x00; 64]);
    }
    assert_eq!(rig.session.idle_ms(rig.now), 4_000);
    assert!(rig.session.eviction_rank(rig.now).is_some());
    rig.feed(&hello(2));
    assert_eq!(rig.session.idle_ms(rig.now), 0, "a valid frame is");
}
