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
/// `UnknownKind`, like any kind it does not serve (one with a key, `Unauthorized`:
/// `secure_sessions.rs`, `handshake_and_sealed_datagrams_are_unauthorized_with_a_key`).
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
