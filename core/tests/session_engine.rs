//! The session engine on its own, sans I/O: a fake clock and an in-memory transport (a `Pair`
//! in the manner of quinn-proto's tests) drive one `Session`, and each of its rules
//! (`docs/PROTOCOL.md` §13, session rules) is checked at its boundary. No socket, no smoltcp:
//! the smoltcp-level tests in `tests/` keep only what needs a TCP stack (the spare socket,
//! resets, a peer that stops reading).

use tether_core::codec::{encode, Decoder};
use tether_core::msg;
use tether_core::service::exec::{Call, Command, Status};
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Device, DeviceConfig};
use tether_core::session::{pick_eviction, Close, Limits, Rank, Session, Standing};
use tether_core::wire::{ErrorCode, FrameSpec, Kind, HEADER_LEN};

const N: usize = 1024;

type Dev = Device<'static, (), RamStore<'static, 4>>;

/// A command that never finishes on its own (`Status::Wait`), as `sleep` would.
fn wait(_: &mut (), _: &mut Call<'_>) -> Status {
    Status::Wait
}

static COMMANDS: [Command<()>; 1] = [Command {
    name: "wait",
    help: "waits forever",
    run: wait,
}];

/// One device, one session and the peer's side of an in-memory transport with a fake clock.
struct Pair {
    device: Dev,
    session: Session<N>,
    now: u64,
    /// Bytes the peer sent that the session has not taken yet.
    to_device: Vec<u8>,
    /// Bytes the device sent.
    to_peer: Vec<u8>,
    /// How much the transport takes from the session per step (the peer's receive window).
    room: usize,
    closed: Option<Close>,
}

impl Pair {
    fn new(limits: Limits) -> Pair {
        let mem: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
        let config = DeviceConfig {
            name: "engine-test",
            window: 4,
        };
        let mut device = Device::new(config, RamStore::new(mem), &COMMANDS, (), N, 1);
        let mut session = Session::with_limits(limits);
        session.open(0, &mut device);
        Pair {
            device,
            session,
            now: 0,
            to_device: Vec::new(),
            to_peer: Vec::new(),
            room: usize::MAX,
            closed: None,
        }
    }

    /// Moves bytes both ways until nothing moves, then applies the rules, as a driver's poll does.
    fn step(&mut self) {
        loop {
            let mut room = vec![0u8; self.room.min(4 * N)];
            let sent = self.session.transmit(self.now, &mut room, &mut self.device);
            self.to_peer.extend_from_slice(&room[..sent]);
            let used = self.session.receive(self.now, &self.to_device, &mut self.device);
            self.to_device.drain(..used);
            if sent == 0 && used == 0 {
                break;
            }
        }
        if self.closed.is_none() {
            if let Some(why) = self.session.check(self.now) {
                self.session.drop_peer(&mut self.device, why);
                self.closed = Some(why);
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.to_device.extend_from_slice(bytes);
        self.step();
    }

    /// Advances the clock by `ms` and polls.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.step();
    }

    /// The frames the device sent so far, as (kind, error code).
    fn answers(&self) -> Vec<(Kind, Option<u16>)> {
        let mut decoder = Decoder::<N>::new();
        let mut input = &self.to_peer[..];
        let mut all = Vec::new();
        loop {
            let (used, item) = decoder.decode(input);
            input = &input[used..];
            match item {
                Some(Ok(f)) => all.push((f.kind(), f.error().map(|e| e.code))),
                Some(Err(e)) => panic!("the device sent garbage: {e}"),
                None => return all,
            }
        }
    }
}

fn frame<M: serde::Serialize + ?Sized>(kind: Kind, id: u32, meta: &M, body: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; N];
    let n = encode(&mut buf, FrameSpec::request(kind, id), meta, body).unwrap();
    buf.truncate(n);
    buf
}

fn echo(id: u32) -> Vec<u8> {
    frame(Kind::Echo, id, &(), b"ping")
}

#[test]
fn frame_deadline_counts_from_the_first_byte() {
    let limits = Limits::DEFAULT;
    let mut pair = Pair::new(limits);
    let whole = echo(1);
    pair.send(&whole[..10]);
    pair.advance(limits.frame_ms - 1);
    assert_eq!(pair.closed, None, "one millisecond short of the deadline");
    // More bytes of the same frame do not restart the clock: a drip cannot hold the session.
    pair.send(&whole[10..12]);
    pair.advance(1);
    assert_eq!(pair.closed, Some(Close::FrameTimeout));
    assert_eq!(pair.device.stats.frame_timeouts, 1);
}

#[test]
fn a_frame_in_pieces_within_the_deadline_is_answered() {
    let limits = Limits::DEFAULT;
    let mut pair = Pair::new(limits);
    let whole = echo(1);
    pair.send(&whole[..10]);
    pair.advance(limits.frame_ms - 1);
    pair.send(&whole[10..]);
    pair.advance(limits.frame_ms);
    assert_eq!(pair.closed, None);
    assert_eq!(pair.answers(), [(Kind::Echo, None)]);
    assert_eq!(pair.device.stats.frame_timeouts, 0);
}

#[test]
fn frame_deadline_does_not_count_while_the_device_waits_for_its_peer_to_read() {
    let limits = Limits::DEFAULT;
    let mut pair = Pair::new(limits);
    // The peer reads nothing: the echo's answer stays staged, and the next frame is not read.
    pair.room = 0;
    let mut two = echo(1);
    two.extend_from_slice(&echo(2)[..10]);
    pair.send(&two);
    pair.advance(2 * limits.frame_ms);
    assert_eq!(
        pair.closed, None,
        "not the peer's fault while the device is blocked on it"
    );
}

#[test]
fn idle_time_is_reset_by_frames_and_answers_only() {
    let limits = Limits {
        idle_ms: 10_000,
        ..Limits::DEFAULT
    };
    let mut pair = Pair::new(limits);
    pair.advance(9_999);
    pair.send(&echo(1));
    pair.advance(9_999);
    assert_eq!(pair.closed, None, "the echo was activity");
    // Garbage (and the error answers to it) is not.
    pair.send(&[0u8; 40]);
    pair.advance(1);
    assert_eq!(pair.closed, Some(Close::Idle));
}

#[test]
fn the_garbage_budget_ends_the_session_and_a_valid_frame_restores_it() {
    let limits = Limits {
        garbage: 100,
        ..Limits::DEFAULT
    };
    let mut pair = Pair::new(limits);
    pair.send(&[0u8; 90]);
    pair.send(&echo(1));
    pair.send(&[0u8; 90]);
    assert_eq!(pair.closed, None, "each run of garbage is within the budget");
    pair.send(&[0u8; 20]);
    assert_eq!(pair.closed, Some(Close::Garbage));
    assert!(pair.answers().iter().any(|(k, _)| *k == Kind::Echo));
}

#[test]
fn frames_with_a_bad_payload_crc_count_toward_the_garbage_budget() {
    // The default budget, as docs/RELIABILITY.md counts it: 4096 / 24 = 170 replies.
    let limits = Limits::DEFAULT;
    let mut pair = Pair::new(limits);
    // The header checks, the payload does not: answered `BadCrc` (with its request id), and its
    // header counts as garbage (the decoder resynchronises after it).
    let mut bad = echo(3);
    let last = bad.len() - 1;
    bad[last] ^= 0x20;
    let allowed = limits.garbage / HEADER_LEN;
    for _ in 0..allowed {
        pair.send(&bad);
    }
    assert_eq!(allowed, 170);
    assert_eq!(pair.closed, None, "{allowed} damaged frames are within the budget");
    assert_eq!(pair.answers().len(), allowed);
    assert!(pair
        .answers()
        .iter()
        .all(|a| *a == (Kind::Echo, Some(ErrorCode::BadCrc as u16))));
    pair.send(&bad);
    assert_eq!(pair.closed, Some(Close::Garbage));
}

#[test]
fn a_waiting_command_ends_when_the_peer_finishes_sending() {
    let mut pair = Pair::new(Limits::DEFAULT);
    let req = msg::ExecRequest {
        command: "wait",
        args: heapless::Vec::new(),
    };
    pair.send(&frame(Kind::Exec, 1, &req, &[]));
    pair.advance(1_000);
    assert!(!pair.session.is_settled(), "the command waits");
    assert!(!pair.session.wants_input(), "and the session reads nothing meanwhile");
    pair.session.finish();
    pair.step();
    assert!(pair.session.is_settled(), "FIN ended the waiting command");
    assert_eq!(pair.closed, None);
    assert!(pair.session.is_finished());
}

#[test]
fn a_device_without_a_key_has_open_sessions_that_give_way_after_the_eviction_minimum() {
    let limits = Limits::DEFAULT;
    let mut pair = Pair::new(limits);
    assert_eq!(pair.session.standing(), Standing::Open);
    assert!(pair.session.is_trusted());
    pair.advance(limits.evict_idle_ms - 1);
    assert_eq!(pair.session.eviction_rank(pair.now), None);
    pair.advance(1);
    assert_eq!(
        pair.session.eviction_rank(pair.now),
        Rank::idle(limits.evict_idle_ms, limits.evict_idle_ms)
    );
    // Traffic makes it busy again.
    pair.send(&echo(1));
    assert_eq!(pair.session.eviction_rank(pair.now), None);
    // No handshake deadline without a key.
    pair.advance(10 * limits.handshake_ms);
    assert_eq!(pair.closed, None);
}

#[test]
fn eviction_order_across_sessions() {
    // What the server asks of its sessions when a new peer waits: the idle longest on an open
    // device; chatty, then silent, then answered (after its grace) on a keyed one; never one
    // that is authenticated (secure_sessions.rs drives those standings through a handshake).
    let ranked = [
        (0, Rank::answered(1_500, 1_000).unwrap()),
        (1, Rank::locked(false, 100)),
        (2, Rank::locked(true, 50)),
    ];
    assert_eq!(pick_eviction(ranked), Some(2));
    assert_eq!(pick_eviction(ranked[..2].iter().copied()), Some(1));
    assert_eq!(pick_eviction(ranked[..1].iter().copied()), Some(0));
    assert_eq!(pick_eviction([]), None);
    let open = [
        (0, Rank::idle(3_000, 2_000).unwrap()),
        (1, Rank::idle(5_000, 2_000).unwrap()),
    ];
    assert_eq!(pick_eviction(open), Some(1));
}

#[test]
fn a_closed_session_opens_again_for_the_next_peer_with_nothing_carried_over() {
    let limits = Limits {
        garbage: 100,
        ..Limits::DEFAULT
    };
    let mut pair = Pair::new(limits);
    pair.send(&[0u8; 90]);
    pair.session.close(&mut pair.device);
    pair.session.open(pair.now, &mut pair.device);
    pair.send(&[0u8; 90]);
    assert_eq!(pair.closed, None, "the new peer's garbage budget starts at zero");
    pair.send(&frame(Kind::Remove, 3, &msg::NameRef { name: "nope" }, &[]));
    assert!(
        pair.answers()
            .iter()
            .any(|(k, code)| *k == Kind::Remove && *code == Some(ErrorCode::NotFound as u16)),
        "{:?}",
        pair.answers()
    );
}
