//! Runs the device's side of N secure-session handshakes ([`Lock::respond`]) against initiators
//! with fixed keys, so that `scripts/callgrind.sh` can count what one costs on the host
//! (`valgrind --tool=callgrind --toggle-collect='*Lock::respond'`): deterministic, no I/O.
//!
//! `cargo run --release -p tether-core --features secure --example handshakes -- [N]`

use tether_core::secure::{Handshake, Lock, Psk, Role, MSG1_LEN, MSG2_LEN};

fn main() {
    let rounds: u8 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10);
    let key = || Psk::from_bytes(core::array::from_fn(|i| 0x80 ^ i as u8));
    let mut lock = Lock::new(key(), [0x5a; 32]);
    for round in 0..rounds {
        let mut client =
            Handshake::with_fixed_ephemeral(Role::Initiator, &key(), core::array::from_fn(|i| round ^ i as u8));
        let mut m1 = [0u8; MSG1_LEN];
        client.write_message(&mut m1).expect("message 1");
        let mut m2 = [0u8; MSG2_LEN];
        let (n, _device) = lock.respond(&m1, &mut m2).expect("respond");
        client.read_message(&m2[..n]).expect("message 2");
    }
    println!("{rounds} handshakes");
}
