//! The `noise` command (feature `secure`): a secure-session self-test run on the device.
//!
//! It runs both ends of the handshake of the test vectors in `docs/PROTOCOL.md` (fixed key and
//! fixed ephemeral keys, so the result is known; the board's own key and generator are not
//! involved), then seals an Echo request on one end and opens it on the other, and prints the
//! handshake hash, which must be the document's (`e2d058ee…`). It proves the cryptography on the
//! target, byte for byte against the document; the board's sessions (src/entropy.rs) use the same
//! code with its provisioned key. Like every command of a keyed board, it runs only in a sealed
//! session.

use tether_core::codec::encode_raw;
use tether_core::outln;
use tether_core::secure::{Handshake, Lock, Psk, Role, MSG1_LEN, MSG2_LEN, SEALED_PREFIX, SEAL_OVERHEAD};
use tether_core::service::exec::{Call, Command, Status};
use tether_core::wire::{FrameSpec, Kind};

use crate::app::{FwCtx, MAX_FRAME};
use crate::lan9118;

/// The command table entry.
pub const COMMAND: Command<FwCtx> = Command {
    name: "noise",
    help: "[time]: secure-session self-test (handshake of the test vectors, seal, open); time: what a handshake and a sealed frame cost here",
    run: noise,
};

/// The `noise` command.
fn noise(_ctx: &mut FwCtx, call: &mut Call<'_>) -> Status {
    match call.args {
        [] => {}
        ["time"] => return time(call),
        _ => {
            outln!(call.out, "usage: noise [time]");
            return Status::Done(2);
        }
    }
    match self_test() {
        Ok(hash) => {
            outln!(
                call.out,
                "noise ok: handshake hash {:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}, sealed echo opened",
                hash[0],
                hash[1],
                hash[2],
                hash[3],
                hash[4],
                hash[5],
                hash[6],
                hash[7]
            );
            Status::Done(0)
        }
        Err(what) => {
            outln!(call.out, "noise FAILED: {what}");
            Status::Done(1)
        }
    }
}

fn self_test() -> Result<[u8; 32], &'static str> {
    let psk = Psk::from_bytes(core::array::from_fn(|i| i as u8));
    let mut initiator =
        Handshake::with_fixed_ephemeral(Role::Initiator, &psk, core::array::from_fn(|i| 0x20 + i as u8));
    let mut responder =
        Handshake::with_fixed_ephemeral(Role::Responder, &psk, core::array::from_fn(|i| 0x40 + i as u8));
    let mut msg = [0u8; MSG1_LEN];
    initiator.write_message(&mut msg).map_err(|_| "write message 1")?;
    responder.read_message(&msg).map_err(|_| "read message 1")?;
    responder.write_message(&mut msg).map_err(|_| "write message 2")?;
    initiator.read_message(&msg).map_err(|_| "read message 2")?;
    let hash = *initiator.handshake_hash();
    if hash != *responder.handshake_hash() {
        return Err("handshake hashes differ");
    }
    let mut client = initiator.into_channel().map_err(|_| "client channel")?;
    let mut device = responder.into_channel().map_err(|_| "device channel")?;
    let mut buf = [0u8; 64 + SEAL_OVERHEAD];
    let inner = encode_raw(
        &mut buf[SEALED_PREFIX..],
        FrameSpec::request(Kind::Echo, 2),
        &[],
        b"hello",
    )
    .map_err(|_| "encode")?;
    client.seal_in_place(&mut buf, inner).map_err(|_| "seal")?;
    let opened = device
        .open_in_place(&mut buf[..inner + SEAL_OVERHEAD])
        .map_err(|_| "open")?;
    if opened.body != b"hello" {
        return Err("opened body differs");
    }
    Ok(hash)
}

/// Handshakes timed by `noise time`.
const ROUNDS: u32 = 4;

/// `noise time`: the device's side of a handshake, [`Lock::respond`] (what the session engine runs
/// for every Handshake request), and sealing and opening one frame of the largest size, timed
/// with the LAN9118's free-running 25 MHz counter. Under QEMU that counter follows the virtual
/// clock: host time normally, and one tick per 40 instructions with `-icount shift=0` (then the
/// figures are instruction counts, reproducible; docs/BENCHMARKS.md).
fn time(call: &mut Call<'_>) -> Status {
    match time_rounds() {
        Ok((respond_min, respond_max, seal, open)) => {
            outln!(
                call.out,
                "handshake (Lock::respond, {ROUNDS} rounds): min {respond_min} max {respond_max} ticks"
            );
            outln!(call.out, "seal {MAX_FRAME} B frame: {seal} ticks; open: {open} ticks");
            outln!(call.out, "ticks: LAN9118 FREE_RUN, 25 MHz (40 ns of the board's clock)");
            Status::Done(0)
        }
        Err(what) => {
            outln!(call.out, "noise time FAILED: {what}");
            Status::Done(1)
        }
    }
}

/// Min and max ticks of `Lock::respond`, then the ticks of one seal and one open of a
/// `MAX_FRAME` frame. The key and seeds are fixed (this measures cost, not secrecy).
fn time_rounds() -> Result<(u32, u32, u32, u32), &'static str> {
    let key = || Psk::from_bytes(core::array::from_fn(|i| 0x80 ^ i as u8));
    let mut lock = Lock::new(key(), [0x5a; 32]);
    let (mut min, mut max) = (u32::MAX, 0);
    let mut channels = None;
    for round in 0..ROUNDS {
        let mut client =
            Handshake::with_fixed_ephemeral(Role::Initiator, &key(), core::array::from_fn(|i| round as u8 + i as u8));
        let mut m1 = [0u8; MSG1_LEN];
        client.write_message(&mut m1).map_err(|_| "write message 1")?;
        let mut m2 = [0u8; MSG2_LEN];
        let start = lan9118::ticks();
        let (n, device) = lock.respond(&m1, &mut m2).map_err(|_| "respond")?;
        let took = lan9118::ticks().wrapping_sub(start);
        min = min.min(took);
        max = max.max(took);
        client.read_message(&m2[..n]).map_err(|_| "read message 2")?;
        channels = Some((client.into_channel().map_err(|_| "client channel")?, device));
    }
    let (mut client, mut device) = channels.ok_or("no round")?;
    let mut buf = [0u8; MAX_FRAME];
    let body = MAX_FRAME - SEAL_OVERHEAD - tether_core::wire::HEADER_LEN;
    let inner = encode_raw(
        &mut buf[SEALED_PREFIX..],
        FrameSpec::request(Kind::Echo, 3),
        &[],
        &[0x33; MAX_FRAME][..body],
    )
    .map_err(|_| "encode")?;
    let start = lan9118::ticks();
    let sealed = client.seal_in_place(&mut buf, inner).map_err(|_| "seal")?;
    let seal = lan9118::ticks().wrapping_sub(start);
    let start = lan9118::ticks();
    let opened = device.open_in_place(&mut buf[..sealed]).map_err(|_| "open")?;
    let open = lan9118::ticks().wrapping_sub(start);
    if opened.body.len() != body {
        return Err("opened body differs");
    }
    Ok((min, max, seal, open))
}
