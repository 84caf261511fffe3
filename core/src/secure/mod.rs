//! Secure sessions (issue 12): a `Noise_NNpsk0_25519_ChaChaPoly_SHA256` handshake and sealed
//! frames, as a sans-I/O module. Enabled by the `secure` feature.
//!
//! - [`Psk`]: the device's 32-byte pre-shared key, and its key-file form (64 hex digits).
//! - [`Handshake`]: the initiator (client) and responder (device) state machines. Two messages,
//!   each carried in the body of a [`Kind::Handshake`](crate::wire::Kind::Handshake) frame:
//!   `-> psk, e` in the request, `<- e, ee` in the response.
//! - [`Lock`]: the device's key and the generator of its ephemeral keys; it answers handshakes.
//! - [`Channel`]: the transport keys after the handshake. It seals whole Tether frames into
//!   [`Kind::Sealed`](crate::wire::Kind::Sealed) frames and opens them, with an explicit 64-bit
//!   counter per frame that must grow strictly: replayed, reordered, truncated or modified frames
//!   are refused, and the first refusal closes the channel.
//!
//! The cryptography is RustCrypto's (`chacha20poly1305`, `sha2`, `hkdf`) and dalek's
//! `x25519-dalek`; only the Noise state machine (the `SymmetricState` of the Noise specification,
//! revision 34, section 5) is written here. No allocation, no `unsafe`; secrets are zeroized when
//! dropped. The byte layout is specified in `docs/PROTOCOL.md` ("Secure sessions") and the threat
//! model in `docs/SECURITY.md`.

mod channel;
mod handshake;
mod lock;
mod symmetric;

pub use channel::Channel;
pub use handshake::{Handshake, Role};
pub use lock::{Lock, REMEMBERED_MSG1};

use zeroize::Zeroize;

use crate::wire::{ErrorCode, HEADER_LEN};

/// The full Noise protocol name; it is hashed into the initial handshake state.
pub const PROTOCOL_NAME: &[u8] = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// The Noise prologue: both sides mix it into the handshake hash, so a handshake only completes
/// between two ends that agree on it.
pub const PROLOGUE: &[u8] = b"TetherNoise1";
/// Length of the pre-shared key.
pub const PSK_LEN: usize = 32;
/// Length of an X25519 public key, the first part of both handshake messages.
pub const DH_LEN: usize = 32;
/// Length of a Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of the first handshake message (`-> psk, e` with an empty payload): `e.pub || tag`.
pub const MSG1_LEN: usize = DH_LEN + TAG_LEN;
/// Length of the second handshake message (`<- e, ee` with an empty payload): `e.pub || tag`.
pub const MSG2_LEN: usize = DH_LEN + TAG_LEN;
/// Length of the explicit counter at the start of a sealed frame's body.
pub const COUNTER_LEN: usize = 8;
/// Where the inner frame starts in a sealed frame: outer header, then the counter.
pub const SEALED_PREFIX: usize = HEADER_LEN + COUNTER_LEN;
/// How many bytes sealing adds to an inner frame: outer header, counter and tag.
pub const SEAL_OVERHEAD: usize = SEALED_PREFIX + TAG_LEN;
/// Length of a key file's text: 64 hex digits (a trailing newline is allowed on read).
pub const KEY_HEX_LEN: usize = 2 * PSK_LEN;

/// The message 1 a frame carries, if it carries one: the body of a `Handshake` request with no
/// metadata (its length is [`Lock`]'s to check). What the session engine answers, what it takes
/// for a repeat on a line, and what the server looks at in a peer still waiting for a session.
pub fn message1<'f>(frame: &crate::wire::Frame<'f>) -> Option<&'f [u8]> {
    let request = !frame.flags().contains(crate::wire::Flags::RESPONSE);
    (frame.kind() == crate::wire::Kind::Handshake && request && frame.meta.is_empty()).then_some(frame.body)
}

// The state is fixed-size and small on every target (checked when the crate is compiled, so the
// embedded builds check it for the Cortex-M targets too): it lives in each session.
const _: () = assert!(core::mem::size_of::<Handshake>() <= 200);
const _: () = assert!(core::mem::size_of::<Channel>() <= 96);

/// Why a handshake step or a channel operation failed.
///
/// Every error of [`Handshake`] ends the handshake, and every error of [`Channel::open`] and
/// [`Channel::open_in_place`] closes the channel, so the session must then be closed — except
/// [`Error::BufferTooSmall`] (the caller's buffer, not the peer's doing) and, in `open_in_place`,
/// bytes that are not one valid frame (damage the CRC layer drops). None of them says more than needed to an attacker;
/// in particular a wrong key and a modified message look the same ([`Error::Authentication`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A handshake message or a sealed frame failed authentication: the peer does not hold the
    /// same pre-shared key, or the bytes were modified on the way.
    Authentication,
    /// A handshake message or sealed frame has the wrong length or layout (e.g. truncated).
    Malformed,
    /// The peer's ephemeral key is a low-order point: the Diffie-Hellman result is all zero.
    WeakKey,
    /// A frame that is not [`Kind::Sealed`](crate::wire::Kind::Sealed) arrived on a secure channel.
    Unsealed,
    /// A sealed frame's counter is not greater than that of the last frame accepted: a replayed or
    /// reordered frame.
    Replay,
    /// The send counter is used up (2^64 − 1 frames); a new handshake is needed.
    Exhausted,
    /// The output buffer cannot hold the result.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// The call does not fit the state: a handshake message out of turn, a step after a failure,
    /// or a channel already closed by an earlier error.
    State,
}

impl Error {
    /// The error code a device answers this failure with, before it closes the session.
    pub fn code(self) -> ErrorCode {
        match self {
            Error::Malformed | Error::Unsealed => ErrorCode::Malformed,
            Error::BufferTooSmall { .. } => ErrorCode::TooLarge,
            Error::Authentication | Error::WeakKey | Error::Replay | Error::Exhausted | Error::State => {
                ErrorCode::Unauthorized
            }
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Authentication => f.write_str("authentication failed: wrong pre-shared key or modified data"),
            Error::Malformed => f.write_str("malformed handshake message or sealed frame"),
            Error::WeakKey => f.write_str("the peer's ephemeral key is a low-order point"),
            Error::Unsealed => f.write_str("unsealed frame on a secure session"),
            Error::Replay => {
                f.write_str("replayed: a sealed frame out of order, or a handshake message 1 answered before")
            }
            Error::Exhausted => f.write_str("send counter exhausted: a new handshake is needed"),
            Error::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Error::State => f.write_str("handshake or channel step out of order or after a failure"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Why a key file's text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileError {
    /// Not exactly 64 hex digits (after removing one trailing newline).
    Length,
    /// A character that is not a hex digit.
    NotHex,
}

impl core::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyFileError::Length => f.write_str("a key file holds exactly 64 hex digits and a newline"),
            KeyFileError::NotHex => f.write_str("a key file holds only hex digits 0-9, a-f"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyFileError {}

/// A 32-byte pre-shared key. Zeroized when dropped; its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; PSK_LEN]);

impl Psk {
    /// A key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; PSK_LEN]) -> Psk {
        Psk(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }

    /// Parses a key file's text: exactly 64 hex digits (either case), optionally followed by one
    /// `\n` or `\r\n`. Nothing else is accepted, so a truncated or padded file is noticed.
    pub fn from_hex(text: &[u8]) -> Result<Psk, KeyFileError> {
        let digits = text
            .strip_suffix(b"\n")
            .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
            .unwrap_or(text);
        if digits.len() != KEY_HEX_LEN {
            return Err(KeyFileError::Length);
        }
        let mut key = [0u8; PSK_LEN];
        for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
                _ => {
                    key.zeroize();
                    return Err(KeyFileError::NotHex);
                }
            }
        }
        Ok(Psk(key))
    }

    /// Writes the key-file form: 64 lower-case hex digits and `\n`; returns the 65 bytes.
    pub fn to_hex<'o>(&self, out: &'o mut [u8; KEY_HEX_LEN + 1]) -> &'o [u8] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0.iter()) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        out[KEY_HEX_LEN] = b'\n';
        &out[..]
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl core::fmt::Debug for Psk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Psk(..)")
    }
}

impl Drop for Psk {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_refusals() {
        let key = Psk::from_bytes(core::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        let mut text = [0u8; KEY_HEX_LEN + 1];
        let written = key.to_hex(&mut text);
        assert_eq!(written.len(), 65);
        assert_eq!(&written[..6], b"00254a");
        assert_eq!(written[64], b'\n');
        assert_eq!(Psk::from_hex(written), Ok(key.clone()));
        assert_eq!(Psk::from_hex(&written[..64]), Ok(key.clone()));
        let mut upper = text;
        upper[..64].make_ascii_uppercase();
        assert_eq!(Psk::from_hex(&upper), Ok(key.clone()));
        let mut crlf = [0u8; 66];
        crlf[..64].copy_from_slice(&text[..64]);
        crlf[64..].copy_from_slice(b"\r\n");
        assert_eq!(Psk::from_hex(&crlf), Ok(key));
        assert_eq!(Psk::from_hex(&text[..63]), Err(KeyFileError::Length));
        assert_eq!(Psk::from_hex(b""), Err(KeyFileError::Length));
        let mut padded = [b'0'; 66];
        padded[64] = b'\n';
        padded[65] = b'\n';
        assert_eq!(Psk::from_hex(&padded), Err(KeyFileError::Length));
        let mut bad = text;
        bad[10] = b'g';
        assert_eq!(Psk::from_hex(&bad), Err(KeyFileError::NotHex));
        bad[10] = b' ';
        assert_eq!(Psk::from_hex(&bad), Err(KeyFileError::NotHex));
    }

    #[test]
    fn psk_debug_hides_the_key() {
        let key = Psk::from_bytes([0xAB; 32]);
        assert_eq!(std::format!("{key:?}"), "Psk(..)");
    }
}
