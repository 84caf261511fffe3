//! Rules of `docs/PROTOCOL.md` that a client written from the document alone relies on, each
//! checked against the reference device: where the document once said one thing and the device
//! did another, the answer both now give.

use tether_core::codec::{encode, parse_datagram};
use tether_core::msg;
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Conn, Device, DeviceConfig, Transport};
use tether_core::wire::{ErrorCode, Flags, FrameSpec, Kind};

const N: usize = 1024;

type Dev = Device<'static, (), RamStore<'static, 4>>;

fn device(name: &'static str) -> Dev {
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 16 * 1024].into_boxed_slice());
    let config = DeviceConfig { name, window: 4 };
    Device::new(config, RamStore::new(mem), &[], (), N, 2)
}

fn request<M: serde::Serialize + ?Sized>(kind: Kind, id: u32, meta: &M, body: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; N];
    let n = encode(&mut buf, FrameSpec::request(kind, id), meta, body).unwrap();
    buf.truncate(n);
    buf
}

/// The device's answer to one request frame over `transport`: kind, flags, id, error code.
fn ask(device: &mut Dev, transport: Transport, wire: &[u8]) -> (Kind, Flags, u32, Option<u16>, Vec<u8>) {
    let mut conn = Conn::new();
    device.start(&mut conn);
    let frame = parse_datagram(wire, N).unwrap();
    let mut out = vec![0u8; N];
    let n = device.handle(&mut conn, &frame, transport, &mut out);
    let answer = parse_datagram(&out[..n], N).unwrap();
    let code = answer.error().map(|e| e.code);
    (
        answer.kind(),
        answer.flags(),
        answer.request_id(),
        code,
        answer.meta.to_vec(),
    )
}

/// §8, §11.2, §12: Echo and Upper take the empty message; one byte of metadata is bytes left
/// over, `Malformed` as for any kind (not `InvalidArgument`).
#[test]
fn metadata_on_echo_or_upper_is_malformed() {
    let mut device = device("rules");
    for kind in [Kind::Echo, Kind::Upper] {
        for transport in [Transport::Session, Transport::Udp] {
            let wire = request(kind, 7, &1u8, b"body");
            let (k, _, id, code, _) = ask(&mut device, transport, &wire);
            assert_eq!(
                (k, id, code),
                (kind, 7, Some(ErrorCode::Malformed as u16)),
                "{kind:?} {transport:?}"
            );
        }
    }
}

/// §10, §13: `Info.device` is at most 32 bytes; a device configured with a longer name sends it
/// cut at a character boundary, in `Info` and as the sender of `Message` replies.
#[test]
fn the_device_name_is_at_most_32_bytes() {
    let long = "a-device-whose-name-runs-on-an-é-and-on";
    assert!(long.len() > msg::MAX_DEVICE_LEN && !long.is_char_boundary(msg::MAX_DEVICE_LEN));
    let mut device = device(long);
    let wire = request(Kind::Hello, 1, &msg::Hello { client: "rules" }, &[]);
    let (_, _, _, code, meta) = ask(&mut device, Transport::Session, &wire);
    assert_eq!(code, None);
    let info: msg::Info<'_> = postcard::from_bytes(&meta).unwrap();
    assert_eq!(info.device, "a-device-whose-name-runs-on-an-");
    let wire = request(Kind::Message, 2, &msg::Message { from: "me" }, b"hi");
    let (_, _, _, code, meta) = ask(&mut device, Transport::Session, &wire);
    assert_eq!(code, None);
    let reply: msg::Message<'_> = postcard::from_bytes(&meta).unwrap();
    assert_eq!(reply.from, info.device);
}

/// §10, §13: `Event.topic` is at most 32 bytes; the device sends no event with a longer topic
/// (over UDP or into a session, both built by `event_frame`).
#[test]
fn no_event_has_a_topic_longer_than_32_bytes() {
    use tether_core::service::events::event_frame;
    let mut out = [0u8; 256];
    let most = "t".repeat(msg::MAX_TOPIC_LEN);
    let n = event_frame(&mut out, &most, 1, b"data");
    let event = parse_datagram(&out[..n], N).unwrap();
    assert_eq!(event.meta::<msg::Event<'_>>().unwrap().topic, most);
    assert_eq!(event_frame(&mut out, &format!("{most}t"), 2, b"data"), 0);
}

/// §1: framed UDP serves no `Handshake` or `Sealed` frame: a device without a key answers them
/// `UnknownKind`, like any kind it does not serve (one with a key, `Unauthorized`: below).
#[test]
fn handshake_and_sealed_datagrams_are_unknown_kinds_without_a_key() {
    let mut device = device("rules");
    for kind in [Kind::Handshake, Kind::Sealed] {
        let (k, flags, id, code, _) = ask(&mut device, Transport::Udp, &request(kind, 3, &(), &[0; 48]));
        assert_eq!((k, flags, id), (kind, Flags::RESPONSE | Flags::ERROR, 3));
        assert_eq!(code, Some(ErrorCode::UnknownKind as u16), "{kind:?}");
    }
}

/// §11.3, §12: `InvalidArgument` is for what the protocol's limits refuse before a command runs;
/// a command that refuses its arguments runs, says why in its output and ends with a non-zero
/// `ExecDone.status` (the reference device's switches: 2 with a usage line, as a shell's usage
/// error), never with an error response.
#[test]
fn a_command_refusing_its_arguments_ends_with_a_status_not_an_error() {
    use tether_core::service::exec::{Call, Command, Status};
    static COMMANDS: [Command<()>; 1] = [Command {
        name: "led",
        help: "on|off",
        run: |_, call: &mut Call<'_>| {
            let mut led = false;
            match tether_core::service::builtin::switch("led", &mut led, call) {
                Ok(()) => Status::Done(0),
                Err(status) => status,
            }
        },
    }];
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let config = DeviceConfig {
        name: "rules",
        window: 4,
    };
    let mut device: Dev = Device::new(config, RamStore::new(mem), &COMMANDS, (), N, 1);
    let mut conn = Conn::new();
    let exec = |args: &[&'static str]| msg::ExecRequest {
        command: "led",
        args: args.iter().copied().collect(),
    };
    let wire = request(Kind::Exec, 4, &exec(&["sideways"]), &[]);
    let frame = parse_datagram(&wire, N).unwrap();
    let mut out = vec![0u8; N];
    let mut frames = Vec::new();
    let mut n = device.handle(&mut conn, &frame, Transport::Session, &mut out);
    while n > 0 {
        let f = parse_datagram(&out[..n], N).unwrap();
        frames.push((f.flags(), f.meta.to_vec(), f.body.to_vec()));
        n = device.resume(&mut conn, &mut out);
    }
    assert!(
        frames.iter().all(|(flags, ..)| !flags.contains(Flags::ERROR)),
        "{frames:?}"
    );
    let output: Vec<u8> = frames.iter().flat_map(|(_, _, body)| body.clone()).collect();
    assert_eq!(output, b"usage: led on|off|toggle|status\n");
    let (flags, meta, _) = frames.last().unwrap();
    assert_eq!(*flags, Flags::RESPONSE);
    assert_eq!(postcard::from_bytes::<msg::ExecDone>(meta).unwrap().status, 2);
    // Beyond the protocol's limits it is InvalidArgument, before the command is looked up.
    let wire = request(Kind::Exec, 5, &("led", &["a"; 9][..]), &[]);
    let (_, _, _, code, _) = ask(&mut device, Transport::Session, &wire);
    assert_eq!(code, Some(ErrorCode::InvalidArgument as u16));
}

#[cfg(feature = "secure")]
mod keyed {
    //! The rules of §16 on a device with a key.

    use super::*;
    use tether_core::codec::{encode_raw, Decoder};
    use tether_core::secure::{Channel, Handshake, Lock, Psk, Role, MSG1_LEN};
    use tether_core::session::{Close, Limits, Session};

    const KEY: [u8; 32] = [0x24; 32];

    /// One keyed device and one session on it, fed by hand.
    struct Rig {
        device: Dev,
        session: Session<N>,
        limits: Limits,
        closed: Option<Close>,
    }

    impl Rig {
        fn new() -> Rig {
            let mut device = device("keyed");
            device.require_key(Lock::new(Psk::from_bytes(KEY), [9; 32]));
            let mut session = Session::new();
            session.open(0, &mut device);
            Rig {
                device,
                session,
                limits: Limits::default(),
                closed: None,
            }
        }

        /// Feeds `wire` and returns the bytes the device sent, stopping at a verdict as a driver
        /// would.
        fn feed(&mut self, wire: &[u8]) -> Vec<u8> {
            let mut sent = Vec::new();
            let mut input = wire;
            loop {
                let mut room = [0u8; 700];
                let n = self.session.transmit(0, &mut room, &mut self.device);
                sent.extend_from_slice(&room[..n]);
                let used = self.session.receive(0, input, &mut self.device, &self.limits);
                input = &input[used..];
                if let Some(why) = self.session.check(0, &self.limits) {
                    self.session.drop_peer(&mut self.device, why);
                    self.closed = Some(why);
                    return sent;
                }
                if n == 0 && used == 0 {
                    return sent;
                }
            }
        }
    }

    /// A frame the device sent: kind, flags, id, metadata, body.
    type Seen = (Kind, Flags, u32, Vec<u8>, Vec<u8>);

    /// The frames in `wire`.
    fn frames(wire: &[u8]) -> Vec<Seen> {
        let mut decoder = Decoder::<N>::new();
        let mut rest = wire;
        let mut frames = Vec::new();
        while let (used, Some(item)) = decoder.decode(rest) {
            rest = &rest[used..];
            let f = item.unwrap();
            frames.push((f.kind(), f.flags(), f.request_id(), f.meta.to_vec(), f.body.to_vec()));
        }
        frames
    }

    fn message1() -> (Handshake, Vec<u8>) {
        let mut hs = Handshake::with_fixed_ephemeral(Role::Initiator, &Psk::from_bytes(KEY), [3; 32]);
        let mut m1 = [0u8; MSG1_LEN];
        hs.write_message(&mut m1).unwrap();
        (hs, m1.to_vec())
    }

    fn handshake_frame(id: u32, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 24 + body.len()];
        let n = encode_raw(&mut f, FrameSpec::request(Kind::Handshake, id), &[], body).unwrap();
        f.truncate(n);
        f
    }

    fn code(meta: &[u8]) -> u16 {
        postcard::from_bytes::<msg::ErrorInfo<'_>>(meta).unwrap().code
    }

    /// §16.4, §16.6: a message 1 that does not verify is `Unauthorized`; one that is not a
    /// 48-byte body in a request with empty metadata is `Malformed`. Either way kind `0x40`, the
    /// request's id, and the session ends.
    #[test]
    fn a_message_1_of_the_wrong_shape_is_malformed_and_ends_the_session() {
        let (_, m1) = message1();
        let mut flipped = m1.clone();
        flipped[40] ^= 1;
        for (body, expected) in [
            (&m1[..40], ErrorCode::Malformed),
            (&[&m1[..], &[0][..]].concat()[..], ErrorCode::Malformed),
            (&flipped[..], ErrorCode::Unauthorized),
        ] {
            let mut rig = Rig::new();
            let answer = frames(&rig.feed(&handshake_frame(6, body)));
            assert_eq!(answer.len(), 1, "{answer:?}");
            let (kind, flags, id, meta, _) = &answer[0];
            assert_eq!(
                (*kind, *flags, *id),
                (Kind::Handshake, Flags::RESPONSE | Flags::ERROR, 6)
            );
            assert_eq!(code(meta), expected as u16, "a body of {} bytes", body.len());
            assert_eq!(rig.closed, Some(Close::Handshake));
        }
    }

    /// §16.3: before its handshake a session may send `Hello` and requests (answered
    /// `Unauthorized`); a handshake after them is accepted, and the session is sealed.
    #[test]
    fn a_handshake_after_hello_and_refused_requests_is_accepted() {
        let mut rig = Rig::new();
        let answer = frames(&rig.feed(&request(Kind::Hello, 1, &msg::Hello { client: "first" }, &[])));
        let info: msg::Info<'_> = postcard::from_bytes(&answer[0].3).unwrap();
        assert!(info.key_required);
        let answer = frames(&rig.feed(&request(Kind::Stat, 2, &msg::NameRef { name: "x" }, &[])));
        assert_eq!(code(&answer[0].3), ErrorCode::Unauthorized as u16);
        let (mut hs, m1) = message1();
        let answer = frames(&rig.feed(&handshake_frame(3, &m1)));
        let (kind, flags, id, _, body) = &answer[0];
        assert_eq!((*kind, *flags, *id), (Kind::Handshake, Flags::RESPONSE, 3));
        hs.read_message(body).unwrap();
        let mut channel: Channel = hs.into_channel().unwrap();
        let mut sealed = vec![0u8; 128];
        let n = channel.seal(&request(Kind::Echo, 4, &(), b"in"), &mut sealed).unwrap();
        let answer = rig.feed(&sealed[..n]);
        let outer = parse_datagram(&answer, N).unwrap();
        let mut plain = vec![0u8; outer.body.len()];
        let inner = channel.open(&outer, &mut plain).unwrap();
        assert_eq!((inner.request_id(), inner.body), (4, &b"in"[..]));
        assert_eq!(rig.closed, None);
    }

    /// §1, §16.3: on a device with a key, framed UDP answers `Handshake` and `Sealed` (as every
    /// kind that is not a read) with `Unauthorized`.
    #[test]
    fn handshake_and_sealed_datagrams_are_unauthorized_with_a_key() {
        let mut rig = Rig::new();
        for kind in [Kind::Handshake, Kind::Sealed] {
            let (_, _, _, code, _) = ask(&mut rig.device, Transport::Udp, &request(kind, 3, &(), &[0; 48]));
            assert_eq!(code, Some(ErrorCode::Unauthorized as u16), "{kind:?}");
        }
    }
}
