//! The Noise `SymmetricState` and `CipherState` (Noise specification rev. 34, §5.1–5.2) for
//! `25519_ChaChaPoly_SHA256`, over RustCrypto primitives.
//!
//! `HKDF(ck, ikm, n)` of §4.3 is RFC 5869 HKDF-SHA256 with salt `ck`, input `ikm` and empty info,
//! expanded to `n × 32` bytes; the `hkdf` crate computes exactly that.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{Error, TAG_LEN};

/// Length of a SHA-256 output, Noise's `HASHLEN`.
pub(crate) const HASH_LEN: usize = 32;

/// The ChaChaPoly nonce of Noise (§12.3): 32 bits of zeros, then the 64-bit counter little-endian.
pub(crate) fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::from(bytes)
}

/// An AEAD key.
fn cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&(*key).into())
}

/// Encrypts `buf` in place with `key`, nonce counter `n` and associated data `ad`; returns the
/// tag. On the board's AEAD engine when one is installed ([`crate::hooks::AeadEngine`]).
pub(crate) fn seal(key: &[u8; 32], n: u64, ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    if let Some(engine) = crate::hooks::installed().aead {
        return engine.seal(key, &nonce(n).into(), ad, buf);
    }
    // ChaCha20Poly1305 refuses only plaintexts above 256 GiB, far beyond any frame.
    let tag = cipher(key)
        .encrypt_inout_detached(&nonce(n), ad, buf.into())
        .unwrap_or_default();
    tag.into()
}

/// Checks the tag and decrypts `buf` in place; on failure `buf` is left as it was. On the board's
/// AEAD engine when one is installed.
pub(crate) fn open(key: &[u8; 32], n: u64, ad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Malformed)?;
    if let Some(engine) = crate::hooks::installed().aead {
        return match engine.open(key, &nonce(n).into(), ad, buf, &tag) {
            true => Ok(()),
            false => Err(Error::Authentication),
        };
    }
    cipher(key)
        .decrypt_inout_detached(&nonce(n), ad, buf.into(), &Tag::from(tag))
        .map_err(|_| Error::Authentication)
}

/// Noise's `SymmetricState`: chaining key, handshake hash and the current `CipherState`.
#[derive(Clone)]
pub(crate) struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
    /// The `CipherState` key, once one has been mixed in.
    k: Option<[u8; 32]>,
    /// The `CipherState` nonce.
    n: u64,
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)`.
    pub(crate) fn new(protocol_name: &[u8]) -> SymmetricState {
        let mut h = [0u8; HASH_LEN];
        if protocol_name.len() <= HASH_LEN {
            h[..protocol_name.len()].copy_from_slice(protocol_name);
        } else {
            h = Sha256::digest(protocol_name).into();
        }
        SymmetricState {
            ck: h,
            h,
            k: None,
            n: 0,
        }
    }

    /// `MixHash(data)`: `h = SHA-256(h || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    /// `HKDF(ck, ikm, N)` with `N × 32` = `out.len()`.
    fn hkdf(&self, ikm: &[u8], out: &mut [u8]) {
        // At most 3 outputs of 32 bytes: far below HKDF's limit of 255 × 32.
        let _ = Hkdf::<Sha256>::new(Some(&self.ck), ikm).expand(&[], out);
    }

    /// `MixKey(ikm)`: new chaining key and cipher key, nonce reset.
    pub(crate) fn mix_key(&mut self, ikm: &[u8]) {
        let mut out = [0u8; 2 * HASH_LEN];
        self.hkdf(ikm, &mut out);
        self.ck.copy_from_slice(&out[..HASH_LEN]);
        let mut k = [0u8; 32];
        k.copy_from_slice(&out[HASH_LEN..]);
        self.set_key(k);
        out.zeroize();
    }

    /// `MixKeyAndHash(ikm)`, used for the `psk` token.
    pub(crate) fn mix_key_and_hash(&mut self, ikm: &[u8]) {
        let mut out = [0u8; 3 * HASH_LEN];
        self.hkdf(ikm, &mut out);
        self.ck.copy_from_slice(&out[..HASH_LEN]);
        self.mix_hash(&out[HASH_LEN..2 * HASH_LEN]);
        let mut k = [0u8; 32];
        k.copy_from_slice(&out[2 * HASH_LEN..]);
        self.set_key(k);
        out.zeroize();
    }

    fn set_key(&mut self, k: [u8; 32]) {
        if let Some(old) = self.k.as_mut() {
            old.zeroize();
        }
        self.k = Some(k);
        self.n = 0;
    }

    /// The handshake hash `h`.
    pub(crate) fn handshake_hash(&self) -> &[u8; HASH_LEN] {
        &self.h
    }

    /// `EncryptAndHash(plaintext)` in place: `buf` holds the plaintext and becomes the
    /// ciphertext; the tag is written to `tag`. Without a key the plaintext is sent as it is (not
    /// reached in NNpsk0, where the `psk` token sets a key before any payload).
    pub(crate) fn encrypt_and_hash(&mut self, buf: &mut [u8], tag: &mut [u8; TAG_LEN]) -> Result<(), Error> {
        let Some(k) = self.k else {
            return Err(Error::State);
        };
        if self.n == u64::MAX {
            return Err(Error::Exhausted);
        }
        *tag = seal(&k, self.n, &self.h, buf);
        self.n += 1;
        self.mix_hash_ciphertext(buf, tag);
        Ok(())
    }

    /// `DecryptAndHash(ciphertext)` in place: `buf` holds the ciphertext without its tag.
    pub(crate) fn decrypt_and_hash(&mut self, buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Error> {
        let Some(k) = self.k else {
            return Err(Error::State);
        };
        if self.n == u64::MAX {
            return Err(Error::Exhausted);
        }
        // The hash covers the ciphertext: take it before decrypting in place.
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(&*buf);
        hasher.update(tag);
        let next: [u8; HASH_LEN] = hasher.finalize().into();
        open(&k, self.n, &self.h, buf, tag)?;
        self.n += 1;
        self.h = next;
        Ok(())
    }

    /// `MixHash(ciphertext || tag)` without copying them together.
    fn mix_hash_ciphertext(&mut self, ciphertext: &[u8], tag: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(ciphertext);
        hasher.update(tag);
        self.h = hasher.finalize().into();
    }

    /// `Split()`: the two transport keys, initiator-to-responder first.
    pub(crate) fn split(&self) -> ([u8; 32], [u8; 32]) {
        let mut out = [0u8; 2 * HASH_LEN];
        self.hkdf(&[], &mut out);
        let mut k1 = [0u8; 32];
        let mut k2 = [0u8; 32];
        k1.copy_from_slice(&out[..32]);
        k2.copy_from_slice(&out[32..]);
        out.zeroize();
        (k1, k2)
    }
}

impl Drop for SymmetricState {
    fn drop(&mut self) {
        self.ck.zeroize();
        self.h.zeroize();
        if let Some(k) = self.k.as_mut() {
            k.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_protocol_name_is_hashed_a_short_one_padded() {
        let long = SymmetricState::new(super::super::PROTOCOL_NAME);
        let expected: [u8; 32] = Sha256::digest(super::super::PROTOCOL_NAME).into();
        assert_eq!(long.handshake_hash(), &expected);
        let short = SymmetricState::new(b"abc");
        let mut padded = [0u8; 32];
        padded[..3].copy_from_slice(b"abc");
        assert_eq!(short.handshake_hash(), &padded);
    }

    #[test]
    fn encrypt_then_decrypt_in_step_and_out_of_step() {
        let mut a = SymmetricState::new(b"test");
        let mut b = SymmetricState::new(b"test");
        a.mix_key_and_hash(b"key");
        b.mix_key_and_hash(b"key");
        let mut buf = *b"payload";
        let mut tag = [0u8; TAG_LEN];
        a.encrypt_and_hash(&mut buf, &mut tag).unwrap();
        assert_ne!(&buf, b"payload");
        let sent = buf;
        b.decrypt_and_hash(&mut buf, &tag).unwrap();
        assert_eq!(&buf, b"payload");
        assert_eq!(a.handshake_hash(), b.handshake_hash());
        // The same ciphertext again: the nonce has moved on, so it no longer authenticates.
        let mut again = sent;
        assert_eq!(b.decrypt_and_hash(&mut again, &tag), Err(Error::Authentication));
        assert_eq!(again, sent, "a failed decryption leaves the buffer alone");
    }

    #[test]
    fn no_key_no_payload_encryption() {
        let mut s = SymmetricState::new(b"test");
        let mut tag = [0u8; TAG_LEN];
        assert_eq!(s.encrypt_and_hash(&mut [], &mut tag), Err(Error::State));
    }
}
