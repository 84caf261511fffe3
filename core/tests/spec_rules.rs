//! Rules of `docs/PROTOCOL.md` that a client written from the document alone relies on, each
//! checked against the reference device: where the document once said one thing and the device
//! did another, the answer both now give.

use tether_core::codec::{encode, parse_datagram};
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
