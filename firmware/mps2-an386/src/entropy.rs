//! The board's key and the seeding of its generator of ephemeral keys (feature `secure`).
//!
//! **The MPS2 AN386 (and QEMU's model of it) has no hardware random number generator.** So the
//! generator of [`Lock`] starts from a boot seed drawn from the build machine's CSPRNG when the
//! firmware was provisioned (build.rs, beside the key), and the board mixes into it what varies
//! from boot to boot and from packet to packet: the LAN9118's free-running 25 MHz counter and the
//! SysTick counter at boot and at every wake-up of the main loop (interrupt timing, so the
//! arrival times of frames and bytes), and the MAC address (distinct per real board, not secret).
//!
//! tether-core's session engine also mixes in, per handshake, the arrival time and the client's
//! message 1: no secrecy (message 1 is public), but no repeats while clients' ephemerals are fresh.
//!
//! What that gives, honestly: ephemeral keys nobody can predict without the firmware image (the
//! boot seed is as secret as the key). What it does not give: in QEMU these counters follow the
//! emulator's virtual clock, so they carry a few bits of host jitter at best, and none at all
//! under `-icount`, where these samples repeat exactly from boot to boot. Then someone who later
//! learns the image (key and seed) and recorded the sessions (message 1 included) can search that
//! jitter, recompute the board's ephemeral keys and decrypt them: no forward secrecy against a
//! leaked image. A real board must seed [`Lock::new`] from its hardware RNG (STM32 `RNG`, nRF52
//! `RNG`, RP2350 `TRNG`, i.MX RT `TRNG`, ...) at every boot; see docs/PORTING.md, "Provisioning a
//! key".

use tether_core::secure::{Lock, Psk};

mod key {
    include!(concat!(env!("OUT_DIR"), "/key.rs"));
}

/// How often the pool is mixed into the generator, at most (ms). Mixing costs one ChaCha20 block
/// and two SHA-256 blocks; samples between two mixes are folded into the pool.
const MIX_EVERY_MS: u64 = 100;

/// The device's lock: the provisioned key, the boot seed, and `boot` (whatever varied during
/// start-up) mixed in.
pub fn lock(boot: &[u8]) -> Lock {
    let mut lock = Lock::new(Psk::from_bytes(key::PSK), key::BOOT_SEED);
    lock.mix_entropy(boot);
    lock
}

/// A short fingerprint of the key, for the console: the first 8 bytes of SHA-256 over the key
/// file's canonical text (64 lower-case hex digits and `\n`), so `sha256sum KEYFILE` on a file
/// written that way (`xxd -p -c64`, `host-cli keygen`) starts with the same 16 digits. It tells
/// which key a board holds without saying anything useful about the key.
pub fn key_id() -> [u8; 8] {
    use sha2::{Digest as _, Sha256};
    let mut text = [0u8; 65];
    let psk = Psk::from_bytes(key::PSK);
    let digest = Sha256::digest(psk.to_hex(&mut text));
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// Timing samples gathered between two mixes.
pub struct Pool {
    words: [u32; 8],
    samples: u32,
    next_mix_ms: u64,
}

impl Pool {
    /// An empty pool.
    pub const fn new() -> Pool {
        Pool {
            words: [0; 8],
            samples: 0,
            next_mix_ms: 0,
        }
    }

    /// Folds one sample (a counter read at an event whose timing varies) into the pool.
    pub fn sample(&mut self, value: u32) {
        let i = self.samples as usize % self.words.len();
        self.words[i] = self.words[i].rotate_left(7) ^ value;
        self.samples = self.samples.wrapping_add(1);
    }

    /// Mixes the pool into `lock` when it holds samples and the last mix is `MIX_EVERY_MS` old;
    /// returns whether it did.
    pub fn mix_if_due(&mut self, now_ms: u64, lock: &mut Lock) -> bool {
        if self.samples == 0 || now_ms < self.next_mix_ms {
            return false;
        }
        let mut bytes = [0u8; 36];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(self.words.iter().chain([&self.samples])) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        lock.mix_entropy(&bytes);
        *self = Pool {
            next_mix_ms: now_ms + MIX_EVERY_MS,
            ..Pool::new()
        };
        true
    }
}
