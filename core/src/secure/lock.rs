//! The device's side of secure sessions: its pre-shared key and the generator of its ephemeral
//! keys.
//!
//! A device has no operating system to ask for randomness, so the platform seeds the generator
//! once at boot (from a hardware RNG where the chip has one; see `docs/PORTING.md`) and may mix in
//! more entropy as it goes ([`Lock::mix_entropy`]). The generator is ChaCha20 (`chacha20`'s
//! `ChaCha20Rng`), a CSPRNG: one 32-byte secret seed yields every ephemeral key of the boot.

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{Channel, Error, Handshake, Psk, MSG1_LEN, MSG2_LEN};

/// Domain separation for reseeding, so that a reseed never reproduces an output of the generator.
const RESEED_LABEL: &[u8] = b"tether-lock-reseed";

/// How many answered messages 1 the lock remembers, to refuse them replayed.
pub const REMEMBERED_MSG1: usize = 32;
/// The bytes of a message 1 remembered: the start of the client's ephemeral public key, which
/// a client draws afresh for every handshake and which no one without the key can pair with a
/// valid message 1.
const FINGERPRINT: usize = 8;

/// What a device needs to require secure sessions: its key and a source of ephemeral keys.
///
/// Give it to [`Device::require_key`](crate::service::Device::require_key); the session engine
/// then answers every handshake with [`Lock::respond`].
pub struct Lock {
    psk: Psk,
    rng: ChaCha20Rng,
    /// The last [`REMEMBERED_MSG1`] messages 1 answered (a ring; all zero: empty).
    answered: [[u8; FINGERPRINT]; REMEMBERED_MSG1],
    next: usize,
    /// The board's RNG, if it gave one: mixed in before every handshake.
    entropy: Option<&'static dyn crate::hooks::EntropySource>,
}

impl Lock {
    /// A lock for `psk` whose ephemeral keys come from a generator seeded with `seed`.
    ///
    /// `seed` must be secret and must differ at every boot (a hardware RNG, or a seed stored on the
    /// device and replaced each boot): two boots with the same seed answer their handshakes with
    /// the same ephemeral keys, which gives up forward secrecy for those sessions.
    pub fn new(psk: Psk, mut seed: [u8; 32]) -> Lock {
        let rng = ChaCha20Rng::from_seed(seed);
        seed.zeroize();
        Lock {
            psk,
            rng,
            answered: [[0; FINGERPRINT]; REMEMBERED_MSG1],
            next: 0,
            entropy: None,
        }
    }

    /// Gives the lock the board's random number generator: before every handshake what it has
    /// ready (up to 32 bytes) is mixed into the generator of ephemeral keys ([`Lock::mix_entropy`]),
    /// so each ephemeral key has fresh hardware entropy behind it, whatever the boot seed was.
    pub fn set_entropy(&mut self, source: &'static dyn crate::hooks::EntropySource) {
        self.entropy = Some(source);
    }

    /// Mixes `entropy` into the generator: the new seed is SHA-256 over a label, 32 bytes of the
    /// generator's output and `entropy`. Unpredictable input (interrupt timing, radio noise, an
    /// ADC's low bits) makes later ephemeral keys unpredictable even to someone who learned the
    /// boot seed; predictable input does no harm.
    pub fn mix_entropy(&mut self, entropy: &[u8]) {
        let mut current = [0u8; 32];
        self.rng.fill_bytes(&mut current);
        let mut hash = Sha256::new();
        hash.update(RESEED_LABEL);
        hash.update(current);
        hash.update(entropy);
        let mut seed: [u8; 32] = hash.finalize().into();
        self.rng = ChaCha20Rng::from_seed(seed);
        current.zeroize();
        seed.zeroize();
    }

    /// Answers a client's handshake message 1 (the body of a `Handshake` request): writes message
    /// 2 into `out` and returns its length and the session's channel.
    ///
    /// Every failure means the peer does not hold the key, or sent something else than message
    /// 1: the session must then be closed.
    ///
    /// Message 1 carries nothing fresh from the device, so one recorded on the wire could be
    /// answered again and again, each answer a session that looks mid-handshake and two X25519
    /// operations for the device. A client never sends the same message 1 twice, so one of the
    /// last [`REMEMBERED_MSG1`] answered is refused as [`Error::Replay`] before any of that work.
    ///
    /// With the board's RNG ([`Lock::set_entropy`]), the fresh bytes it has ready are mixed in first.
    pub fn respond(&mut self, message1: &[u8], out: &mut [u8]) -> Result<(usize, Channel), Error> {
        if message1.len() != MSG1_LEN {
            return Err(Error::Malformed);
        }
        if out.len() < MSG2_LEN {
            return Err(Error::BufferTooSmall { needed: MSG2_LEN });
        }
        // A board's RNG, where it gave one: fresh entropy for every ephemeral key.
        if let Some(source) = self.entropy {
            let mut fresh = [0u8; 32];
            let n = source.fill(&mut fresh).min(fresh.len());
            if n > 0 {
                self.mix_entropy(&fresh[..n]);
            }
            fresh.zeroize();
        }
        let mut handshake = Handshake::responder(&self.psk, &mut self.rng);
        handshake.read_message(message1)?;
        let mut fingerprint = [0u8; FINGERPRINT];
        fingerprint.copy_from_slice(&message1[..FINGERPRINT]);
        if self.answered.contains(&fingerprint) {
            return Err(Error::Replay);
        }
        self.answered[self.next] = fingerprint;
        self.next = (self.next + 1) % REMEMBERED_MSG1;
        let n = handshake.write_message(out)?;
        Ok((n, handshake.into_channel()?))
    }

    /// Whether `message1` (the body of a `Handshake` request) proves the key and is not one
    /// [`Lock::respond`] answered lately, without answering it: reading a message 1 takes hashes
    /// and one AEAD open, no Diffie-Hellman. The server asks this of a peer waiting for a session
    /// (`docs/PROTOCOL.md` §13 rule 5), whose bytes it does not take until it has one.
    pub fn admits(&self, message1: &[u8]) -> bool {
        if message1.len() != MSG1_LEN || self.answered.iter().any(|f| message1.starts_with(f)) {
            return false;
        }
        // The responder's own ephemeral key plays no part in reading message 1, and this one is
        // never used for anything else: nothing is written with it.
        let mut handshake = Handshake::with_fixed_ephemeral(super::Role::Responder, &self.psk, [0; 32]);
        handshake.read_message(message1).is_ok()
    }
}

impl core::fmt::Debug for Lock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Lock(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::Role;

    fn key() -> Psk {
        Psk::from_bytes([7; 32])
    }

    #[test]
    fn responds_to_the_right_key_and_refuses_a_wrong_one() {
        let mut lock = Lock::new(key(), [1; 32]);
        let mut client = Handshake::with_fixed_ephemeral(Role::Initiator, &key(), [9; 32]);
        let mut m1 = [0u8; MSG1_LEN];
        client.write_message(&mut m1).unwrap();
        let mut m2 = [0u8; MSG2_LEN];
        let (n, _) = lock.respond(&m1, &mut m2).unwrap();
        client.read_message(&m2[..n]).unwrap();
        assert!(client.is_finished());

        let mut stranger = Handshake::with_fixed_ephemeral(Role::Initiator, &Psk::from_bytes([8; 32]), [9; 32]);
        stranger.write_message(&mut m1).unwrap();
        assert_eq!(lock.respond(&m1, &mut m2).map(|_| ()), Err(Error::Authentication));
        assert_eq!(lock.respond(&m1[..47], &mut m2).map(|_| ()), Err(Error::Malformed));
    }

    #[test]
    fn a_message_1_answered_lately_is_refused_as_a_replay() {
        let mut lock = Lock::new(key(), [1; 32]);
        let message1 = |seed: u8| {
            let mut client = Handshake::with_fixed_ephemeral(Role::Initiator, &key(), [seed; 32]);
            let mut m1 = [0u8; MSG1_LEN];
            client.write_message(&mut m1).unwrap();
            m1
        };
        let mut m2 = [0u8; MSG2_LEN];
        let recorded = message1(1);
        assert!(lock.respond(&recorded, &mut m2).is_ok());
        assert_eq!(lock.respond(&recorded, &mut m2).map(|_| ()), Err(Error::Replay));
        // Remembered while fewer than REMEMBERED_MSG1 others came after it; then forgotten.
        for seed in 2..=REMEMBERED_MSG1 as u8 {
            assert!(lock.respond(&message1(seed), &mut m2).is_ok());
        }
        assert_eq!(lock.respond(&recorded, &mut m2).map(|_| ()), Err(Error::Replay));
        assert!(lock.respond(&message1(200), &mut m2).is_ok());
        assert!(lock.respond(&recorded, &mut m2).is_ok());
    }

    #[test]
    fn admits_a_fresh_message_1_of_the_key_only_and_answers_nothing() {
        let mut lock = Lock::new(key(), [1; 32]);
        let message1 = |psk: &Psk, seed: u8| {
            let mut client = Handshake::with_fixed_ephemeral(Role::Initiator, psk, [seed; 32]);
            let mut m1 = [0u8; MSG1_LEN];
            client.write_message(&mut m1).unwrap();
            m1
        };
        let fresh = message1(&key(), 1);
        assert!(lock.admits(&fresh));
        assert!(lock.admits(&fresh), "asking changes nothing");
        assert!(!lock.admits(&message1(&Psk::from_bytes([8; 32]), 1)), "another key");
        assert!(!lock.admits(&fresh[..MSG1_LEN - 1]));
        let mut flipped = fresh;
        flipped[40] ^= 1;
        assert!(!lock.admits(&flipped));
        // Once answered it is a replay, refused by both.
        let mut m2 = [0u8; MSG2_LEN];
        assert!(lock.respond(&fresh, &mut m2).is_ok());
        assert!(!lock.admits(&fresh));
    }

    #[test]
    fn every_handshake_gets_a_new_ephemeral_and_mixing_changes_the_stream() {
        // (Each client draws its own ephemeral: the lock refuses a message 1 it answered lately.)
        let answer = |lock: &mut Lock, client_seed: u8| {
            let mut client = Handshake::with_fixed_ephemeral(Role::Initiator, &key(), [client_seed; 32]);
            let mut m1 = [0u8; MSG1_LEN];
            client.write_message(&mut m1).unwrap();
            let mut m2 = [0u8; MSG2_LEN];
            lock.respond(&m1, &mut m2).unwrap();
            m2
        };
        let mut a = Lock::new(key(), [1; 32]);
        let mut b = Lock::new(key(), [1; 32]);
        let first = answer(&mut a, 9);
        assert_ne!(first[..32], answer(&mut a, 10)[..32], "a fresh ephemeral per handshake");
        assert_eq!(first, answer(&mut b, 9), "the generator is deterministic in its seed");
        let mut c = Lock::new(key(), [1; 32]);
        c.mix_entropy(b"interrupt timing");
        assert_ne!(first[..32], answer(&mut c, 9)[..32]);
    }
}
