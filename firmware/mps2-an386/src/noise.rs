//! The `noise` command (feature `secure`): a secure-session self-test run on the device.
//!
//! It runs both ends of the handshake of the test vectors in `docs/PROTOCOL.md` (fixed key and
//! fixed ephemeral keys: the board has no random source wired up yet), then seals an Echo request
//! on one end and opens it on the other, and prints the handshake hash, which must be the
//! document's (`e2d058ee…`). It proves the cryptography on the target and makes the linker keep
//! all of it, so `scripts/firmware.sh size` measures what secure sessions cost in flash.

use tether_core::codec::encode_raw;
use tether_core::outln;
use tether_core::secure::{Handshake, Psk, Role, MSG1_LEN, SEALED_PREFIX, SEAL_OVERHEAD};
use tether_core::service::exec::{Call, Command, Status};
use tether_core::wire::{FrameSpec, Kind};

use crate::app::FwCtx;

/// The command table entry.
pub const COMMAND: Command<FwCtx> = Command {
    name: "noise",
    help: "secure-session self-test (handshake of the test vectors, seal, open)",
    run: noise,
};

/// The `noise` command.
fn noise(_ctx: &mut FwCtx, call: &mut Call<'_>) -> Status {
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
