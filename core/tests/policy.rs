//! The policy table (`tether_core::service::policy`) against `docs/PROTOCOL.md` §1 "Which kinds
//! are served where", and against what the device actually answers over every transport.

#![cfg(feature = "secure")]

use tether_core::codec::{encode, parse_datagram};
use tether_core::secure::{Lock, Psk};
use tether_core::service::policy::{self, OverUdp, Rule, ServedBy};
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Conn, Device, DeviceConfig, Transport};
use tether_core::wire::{ErrorCode, FrameSpec, Kind};

const N: usize = 2048;

/// Every kind the protocol defines.
fn kinds() -> Vec<Kind> {
    (0..=u8::MAX)
        .map(Kind::from)
        .filter(|k| !matches!(k, Kind::Unknown(_)))
        .collect()
}

/// The table's cells for one kind: sessions, before the handshake, UDP, UDP with a key, changes
/// state, safe to repeat, answer.
type Cells = [String; 7];

/// The rows of the table in PROTOCOL.md §1, one entry per kind named in them.
fn documented() -> Vec<(String, Cells)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md")).unwrap();
    let start = doc
        .find("| kinds | sessions (TCP 7070, serial) | before the handshake |")
        .expect("the table");
    let mut rows = Vec::new();
    for line in doc[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect();
        assert_eq!(cells.len(), 8, "{line}");
        for name in cells[0].split(", ") {
            let cells: Cells = core::array::from_fn(|i| cells[i + 1].clone());
            rows.push((name.trim_matches('`').to_string(), cells));
        }
    }
    rows
}

/// What the table's cells must say for `rule`.
fn cells_for(rule: &Rule) -> Cells {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let refused = |served: bool, code: &str| if served { "yes".to_string() } else { format!("`{code}`") };
    let sessions = match (rule.service, rule.on_session) {
        (ServedBy::Secure, _) => "the engine; without a key `UnknownKind`".to_string(),
        (_, true) => "yes".to_string(),
        (_, false) => "`UnknownKind` (pushed by the device)".to_string(),
    };
    let udp = match rule.over_udp {
        OverUdp::Served => "yes".to_string(),
        OverUdp::TcpOnly => "`InvalidArgument`".to_string(),
        OverUdp::Unknown if rule.kind == Kind::Event => "`UnknownKind` (pushed to subscribers)".to_string(),
        OverUdp::Unknown => "`UnknownKind`".to_string(),
    };
    [
        sessions,
        refused(rule.before_handshake, "Unauthorized"),
        udp,
        refused(rule.udp_with_key, "Unauthorized"),
        yes_no(rule.changes_state),
        yes_no(rule.idempotent),
        if rule.streams { "stream" } else { "one frame" }.to_string(),
    ]
}

#[test]
fn the_table_is_the_one_in_the_protocol_document() {
    let doc = documented();
    for kind in kinds() {
        let rule = policy::rule(kind);
        assert_eq!(rule.kind, kind);
        assert_ne!(rule.service, ServedBy::None, "{kind:?} has no row in the policy table");
        let name = format!("{kind:?}");
        let rows: Vec<_> = doc.iter().filter(|(n, _)| *n == name).collect();
        assert_eq!(
            rows.len(),
            1,
            "{name} must be in exactly one row of PROTOCOL.md §1's table"
        );
        assert_eq!(
            rows[0].1,
            cells_for(&rule),
            "{name}: the document and the table disagree"
        );
    }
    assert_eq!(
        doc.len(),
        kinds().len(),
        "the document names a kind the protocol does not have"
    );
    let rows: usize = policy::TABLE.iter().map(|rows| rows.len()).sum();
    assert_eq!(rows, kinds().len(), "one row per kind");
    assert_eq!(policy::rule(Kind::Unknown(0x7f)).service, ServedBy::None);
}

fn device(keyed: bool) -> Device<'static, (), RamStore<'static, 4>> {
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
    let config = DeviceConfig {
        name: "policy",
        window: 4,
    };
    let mut device = Device::new(config, RamStore::new(mem), &[], (), N, 2);
    if keyed {
        device.require_key(Lock::new(Psk::from_bytes([0x42; 32]), [7; 32]));
    }
    device
}

/// The error code and message the device answers `kind` with over `transport` (`None`: served,
/// whatever the service then made of the empty request).
fn answer(
    device: &mut Device<'static, (), RamStore<'static, 4>>,
    kind: Kind,
    transport: Transport,
) -> Option<(u16, String)> {
    let mut wire = vec![0u8; 256];
    let n = encode(&mut wire, FrameSpec::request(kind, 9), &(), &[]).unwrap();
    let frame = parse_datagram(&wire[..n], N).unwrap();
    let mut out = vec![0u8; N];
    let mut conn = Conn::new();
    let n = device.handle(&mut conn, &frame, transport, &mut out);
    device.close(&mut conn);
    let answer = parse_datagram(&out[..n], N).unwrap();
    answer.error().map(|e| (e.code, e.message.to_string()))
}

/// Whether the answer is the policy's refusal `code` (rather than the service's own answer).
fn refused(answer: &Option<(u16, String)>, code: ErrorCode, message: &str) -> bool {
    matches!(answer, Some((c, m)) if *c == code as u16 && m.contains(message))
}

#[test]
fn the_device_serves_what_the_table_says_over_every_transport() {
    let (mut open, mut keyed) = (device(false), device(true));
    for kind in kinds() {
        let rule = policy::rule(kind);
        // This device has no firmware update service (no board), which answers its kinds
        // `UnknownKind` on a session; core/tests/update_service.rs serves them on one that has.
        // A device built without discovery answers `Discover` `UnknownKind` everywhere.
        let unknown = matches!(rule.service, ServedBy::Secure | ServedBy::Update)
            || !rule.on_session
            || (rule.service == ServedBy::Discover && !cfg!(feature = "discover"));
        // A session on an open device (or a sealed one): everything the services answer.
        let got = answer(&mut open, kind, Transport::Session);
        assert_eq!(
            refused(&got, ErrorCode::UnknownKind, ""),
            unknown,
            "{kind:?} on a session: {got:?}"
        );
        // Before the handshake (the engine runs `Handshake` itself and never hands it over).
        if kind != Kind::Handshake {
            let got = answer(&mut keyed, kind, Transport::Locked);
            let unauthorized = refused(&got, ErrorCode::Unauthorized, "requires its key");
            assert_eq!(
                unauthorized, !rule.before_handshake,
                "{kind:?} before the handshake: {got:?}"
            );
        }
        // UDP, open device.
        let got = answer(&mut open, kind, Transport::Udp);
        let tcp_only = refused(&got, ErrorCode::InvalidArgument, "use TCP");
        assert_eq!(
            tcp_only,
            rule.over_udp == OverUdp::TcpOnly,
            "{kind:?} over UDP: {got:?}"
        );
        if rule.over_udp == OverUdp::Unknown {
            assert!(refused(&got, ErrorCode::UnknownKind, ""), "{kind:?} over UDP: {got:?}");
        }
        // UDP, keyed device.
        let got = answer(&mut keyed, kind, Transport::Udp);
        let unauthorized = refused(&got, ErrorCode::Unauthorized, "requires its key");
        assert_eq!(
            unauthorized, !rule.udp_with_key,
            "{kind:?} over UDP with a key: {got:?}"
        );
    }
}
