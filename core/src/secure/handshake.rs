//! The `NNpsk0` handshake, sans I/O:
//!
//! ```text
//! NNpsk0:
//!   -> psk, e        message 1, initiator (client) to responder (device): e.pub || tag
//!   <- e, ee         message 2, responder to initiator:                    e.pub || tag
//! ```
//!
//! Both payloads are empty, so each message is 48 bytes: the sender's ephemeral public key and the
//! tag of the empty payload, which proves that the sender mixed in the same pre-shared key (and,
//! in message 2, the same ephemeral keys).

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use super::symmetric::{SymmetricState, HASH_LEN};
use super::{Channel, Error, Psk, DH_LEN, MSG1_LEN, MSG2_LEN, PROLOGUE, PROTOCOL_NAME, TAG_LEN};

/// Which end of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that sends the first message: the client (host).
    Initiator,
    /// The end that answers: the device.
    Responder,
}

/// Where a handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The initiator's turn to write message 1.
    WriteFirst,
    /// The responder waits for message 1.
    ReadFirst,
    /// The responder's turn to write message 2.
    WriteSecond,
    /// The initiator waits for message 2.
    ReadSecond,
    /// Both messages are through: [`Handshake::into_channel`] gives the transport.
    Done,
    /// A step failed; nothing more can happen.
    Failed,
}

/// One end of a `Noise_NNpsk0_25519_ChaChaPoly_SHA256` handshake with prologue [`PROLOGUE`].
///
/// The initiator calls [`write_message`](Handshake::write_message) then
/// [`read_message`](Handshake::read_message); the responder the other way round. Then
/// [`into_channel`](Handshake::into_channel) gives the [`Channel`]. Any error ends the handshake
/// for good (every later call returns [`Error::State`]); a client that may be handed a message 2
/// that is not the answer to its message 1 (a stale one on a serial line) tries it on a clone.
#[derive(Clone)]
pub struct Handshake {
    role: Role,
    step: Step,
    state: SymmetricState,
    /// This end's ephemeral private key.
    e: StaticSecret,
    /// The peer's ephemeral public key, once read.
    re: Option<PublicKey>,
}

impl Handshake {
    /// A client's handshake with a fresh ephemeral key from `rng`.
    pub fn initiator<R: CryptoRng + ?Sized>(psk: &Psk, rng: &mut R) -> Handshake {
        Handshake::new(Role::Initiator, psk, ephemeral(rng))
    }

    /// A device's handshake with a fresh ephemeral key from `rng`.
    pub fn responder<R: CryptoRng + ?Sized>(psk: &Psk, rng: &mut R) -> Handshake {
        Handshake::new(Role::Responder, psk, ephemeral(rng))
    }

    /// A handshake with a given ephemeral private key, **for test vectors only**: an ephemeral key
    /// that is not fresh and secret gives up forward secrecy, and reusing one with the same peer
    /// key repeats the transport keys. The key is used as X25519 clamps it (RFC 7748).
    pub fn with_fixed_ephemeral(role: Role, psk: &Psk, ephemeral: [u8; 32]) -> Handshake {
        Handshake::new(role, psk, StaticSecret::from(ephemeral))
    }

    fn new(role: Role, psk: &Psk, e: StaticSecret) -> Handshake {
        let mut state = SymmetricState::new(PROTOCOL_NAME);
        state.mix_hash(PROLOGUE);
        // NN has no pre-messages. The first token of message 1 is `psk`, processed alike by
        // writer and reader before anything else, so it is mixed in here and the key not kept.
        state.mix_key_and_hash(psk.as_bytes());
        let step = match role {
            Role::Initiator => Step::WriteFirst,
            Role::Responder => Step::ReadFirst,
        };
        Handshake {
            role,
            step,
            state,
            e,
            re: None,
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether both messages are through.
    pub fn is_finished(&self) -> bool {
        self.step == Step::Done
    }

    /// Whether it is this end's turn to write a message.
    pub fn is_my_turn(&self) -> bool {
        matches!(self.step, Step::WriteFirst | Step::WriteSecond)
    }

    /// The length of the next message this end writes or reads (0 when finished or failed).
    pub fn next_message_len(&self) -> usize {
        match self.step {
            Step::WriteFirst | Step::ReadFirst => MSG1_LEN,
            Step::WriteSecond | Step::ReadSecond => MSG2_LEN,
            Step::Done | Step::Failed => 0,
        }
    }

    /// The handshake hash so far; after the handshake it identifies the session (both ends have
    /// the same one) and is part of the test vectors.
    pub fn handshake_hash(&self) -> &[u8; HASH_LEN] {
        self.state.handshake_hash()
    }

    /// Writes this end's next message into `out`; returns its length ([`MSG1_LEN`] or
    /// [`MSG2_LEN`]).
    pub fn write_message(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let len = match self.step {
            Step::WriteFirst => MSG1_LEN,
            Step::WriteSecond => MSG2_LEN,
            _ => return Err(self.fail(Error::State)),
        };
        if out.len() < len {
            // Not the peer's doing: the handshake can go on with a larger buffer.
            return Err(Error::BufferTooSmall { needed: len });
        }
        let result = self.write_tokens(&mut out[..len]);
        self.finish_step(result.map(|()| len))
    }

    /// Reads the peer's next message, which must be exactly [`MSG1_LEN`] or [`MSG2_LEN`] bytes.
    pub fn read_message(&mut self, message: &[u8]) -> Result<(), Error> {
        let len = match self.step {
            Step::ReadFirst => MSG1_LEN,
            Step::ReadSecond => MSG2_LEN,
            _ => return Err(self.fail(Error::State)),
        };
        if message.len() != len {
            return Err(self.fail(Error::Malformed));
        }
        let result = self.read_tokens(message);
        self.finish_step(result)
    }

    /// The transport channel; only once the handshake is finished.
    pub fn into_channel(self) -> Result<Channel, Error> {
        if self.step != Step::Done {
            return Err(Error::State);
        }
        let (mut k1, mut k2) = self.state.split();
        let channel = match self.role {
            Role::Initiator => Channel::new(&k1, &k2),
            Role::Responder => Channel::new(&k2, &k1),
        };
        k1.zeroize();
        k2.zeroize();
        Ok(channel)
    }

    /// `e` (with the psk-mode `MixKey`), then `ee` for message 2, then the empty payload's tag.
    fn write_tokens(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let e_pub = PublicKey::from(&self.e);
        out[..DH_LEN].copy_from_slice(e_pub.as_bytes());
        self.state.mix_hash(e_pub.as_bytes());
        self.state.mix_key(e_pub.as_bytes());
        if self.step == Step::WriteSecond {
            self.mix_ee()?;
        }
        let mut tag = [0u8; TAG_LEN];
        self.state.encrypt_and_hash(&mut [], &mut tag)?;
        out[DH_LEN..].copy_from_slice(&tag);
        Ok(())
    }

    /// The peer's `e` (with the psk-mode `MixKey`), then `ee` for message 2, then the payload's tag.
    fn read_tokens(&mut self, message: &[u8]) -> Result<(), Error> {
        let mut re = [0u8; DH_LEN];
        re.copy_from_slice(&message[..DH_LEN]);
        self.state.mix_hash(&re);
        self.state.mix_key(&re);
        self.re = Some(PublicKey::from(re));
        if self.step == Step::ReadSecond {
            self.mix_ee()?;
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&message[DH_LEN..]);
        self.state.decrypt_and_hash(&mut [], &tag)
    }

    /// `MixKey(DH(e, re))`; a low-order peer key (all-zero result) is refused.
    fn mix_ee(&mut self) -> Result<(), Error> {
        let re = self.re.as_ref().ok_or(Error::State)?;
        let shared = self.e.diffie_hellman(re);
        if !shared.was_contributory() {
            return Err(Error::WeakKey);
        }
        self.state.mix_key(shared.as_bytes());
        Ok(())
    }

    fn finish_step<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Ok(value) => {
                self.step = match self.step {
                    Step::WriteFirst => Step::ReadSecond,
                    Step::ReadFirst => Step::WriteSecond,
                    Step::WriteSecond | Step::ReadSecond => Step::Done,
                    other => other,
                };
                Ok(value)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.step = Step::Failed;
        e
    }
}

impl core::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// A fresh ephemeral private key: 32 bytes from the caller's CSPRNG.
fn ephemeral<R: CryptoRng + ?Sized>(rng: &mut R) -> StaticSecret {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let secret = StaticSecret::from(bytes);
    bytes.zeroize();
    secret
}
