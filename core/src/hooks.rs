//! Hardware hooks: a board's CRC unit, SHA-256 engine, ChaCha20-Poly1305 engine and random
//! number generator, in place of tether-core's software.
//!
//! Many microcontrollers compute CRC-32 and SHA-256 in hardware (an STM32's CRC unit, the SHA-256
//! accelerators of the RP2350, ESP32 or nRF52840's CryptoCell), some ChaCha20-Poly1305 too, and
//! most have a true random number generator. A board implements the small trait of each engine it
//! has and installs them once at boot with [`install`]; what it does not install stays software,
//! which is also the default of every board, the QEMU ones included. The hooks are
//! process-wide (one set per device) and looked up once per frame or per hash, not per byte.
//!
//! | hook | replaces | used for |
//! |---|---|---|
//! | [`Crc32Unit`] | the table-driven CRC-32 of [`crate::crc32`] | every frame's payload and header CRC |
//! | [`Sha256Engine`] | `sha2`'s block compression | the SHA-256 of uploads and downloads ([`Sha256`]) |
//! | `AeadEngine` (feature `secure`) | RustCrypto's ChaCha20-Poly1305 | sealing and opening frames |
//! | `EntropySource` (feature `secure`) | nothing: adds entropy | mixed into the generator of ephemeral keys before every handshake (given to the device's `Lock`, `Lock::set_entropy`, not installed here) |
//!
//! The handshake's own hashing (HKDF, the Noise transcript) and X25519 stay software: they run
//! once per session. docs/PORTING.md, "Hardware hooks", shows a board's implementation;
//! `scripts/firmware.sh cost` measures what the software costs per byte.

use core::cell::Cell;

use critical_section::Mutex;
use digest::array::Array;
use digest::block_buffer::{BlockBuffer, Eager};
use digest::typenum::U64;

/// A CRC unit computing CRC-32/ISO-HDLC (the Ethernet/zlib CRC: polynomial `0x04C11DB7`,
/// reflected, init and xorout `0xFFFFFFFF`).
pub trait Crc32Unit: Sync {
    /// The CRC of the bytes whose CRC is `crc`, followed by `data` (zlib's `crc32(crc, data)`
    /// convention: `crc` is a finished CRC, 0 before any byte). A unit that keeps its running
    /// value in a register loads it from `crc` (most take the register's pre-xorout form,
    /// `!crc`) and reads it back.
    fn update(&self, crc: u32, data: &[u8]) -> u32;
}

/// A SHA-256 engine that compresses 64-byte blocks into a chaining value. Padding, buffering and
/// the initial value stay in software ([`Sha256`]), so any engine that can be loaded with a
/// chaining value and read back fits; several hashes may be in progress at once (uploads on two
/// sessions), each with its own state.
pub trait Sha256Engine: Sync {
    /// Runs the SHA-256 compression function over `blocks`, in order, starting from `state`.
    fn compress(&self, state: &mut [u32; 8], blocks: &[[u8; 64]]);
}

/// A ChaCha20-Poly1305 engine (RFC 8439), working in place.
#[cfg(feature = "secure")]
pub trait AeadEngine: Sync {
    /// Encrypts `buf` in place with `key`, `nonce` and associated data `ad`; returns the tag.
    fn seal(&self, key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16];
    /// Checks `tag` and decrypts `buf` in place; returns whether the tag was right. On a wrong tag
    /// `buf` must be left as it was (or at least not handed out: the caller then drops it).
    fn open(&self, key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool;
}

/// A random number generator (a TRNG peripheral). Given to the device's lock
/// (`secure::Lock::set_entropy`), which mixes what it has into its generator before every
/// handshake; seed the lock from it at boot too (`secure::Lock::new`, waiting for 32 bytes).
#[cfg(feature = "secure")]
pub trait EntropySource: Sync {
    /// Writes the random bytes it has ready into `out`, without waiting, and returns how many (a
    /// TRNG is slow, some 20 ms for 32 bytes on an nRF51: a board collects its bytes in the
    /// background and hands over what it has; none is a valid answer).
    fn fill(&self, out: &mut [u8]) -> usize;
}

/// The engines a board has. `None` is software (or, for entropy, none).
#[derive(Clone, Copy, Default)]
pub struct Hooks {
    /// The CRC unit.
    pub crc32: Option<&'static dyn Crc32Unit>,
    /// The SHA-256 engine.
    pub sha256: Option<&'static dyn Sha256Engine>,
    /// The ChaCha20-Poly1305 engine.
    #[cfg(feature = "secure")]
    pub aead: Option<&'static dyn AeadEngine>,
}

impl Hooks {
    /// Software for everything.
    pub const NONE: Hooks = Hooks {
        crc32: None,
        sha256: None,
        #[cfg(feature = "secure")]
        aead: None,
    };
}

impl core::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("Hooks");
        d.field("crc32", &self.crc32.is_some());
        d.field("sha256", &self.sha256.is_some());
        #[cfg(feature = "secure")]
        d.field("aead", &self.aead.is_some());
        d.finish()
    }
}

static HOOKS: Mutex<Cell<Hooks>> = Mutex::new(Cell::new(Hooks::NONE));

/// Installs a board's engines (those it leaves `None` are software). Call once at boot, before
/// serving; a later call replaces the set, for frames and hashes begun after it.
pub fn install(hooks: Hooks) {
    critical_section::with(|cs| HOOKS.borrow(cs).set(hooks));
}

/// The engines installed.
pub fn installed() -> Hooks {
    critical_section::with(|cs| HOOKS.borrow(cs).get())
}

/// SHA-256 whose block compression runs on the installed [`Sha256Engine`], or `sha2`'s software
/// when there is none: the digest of uploads and downloads. The same methods as `sha2::Sha256`
/// (new, update, finalize) and the same size: the chaining value, the block count and the partial
/// block (`block_buffer`, the RustCrypto buffer `sha2` itself pads with). The engine is looked up
/// at every update (compression is a pure function, so a hash may even change engines midway).
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    blocks: u64,
    buffer: BlockBuffer<U64, Eager>,
}

/// SHA-256's initial chaining value (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Compresses `blocks` into `state` on the installed engine, or in software.
fn compress(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    match installed().sha256 {
        Some(engine) => engine.compress(state, blocks),
        None => sha2::block_api::compress256(state, blocks),
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A new hash.
    pub fn new() -> Sha256 {
        Sha256 {
            state: H0,
            blocks: 0,
            buffer: BlockBuffer::default(),
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: impl AsRef<[u8]>) {
        let Sha256 { state, blocks, buffer } = self;
        buffer.digest_blocks(data.as_ref(), |full| {
            *blocks += full.len() as u64;
            compress(state, Array::cast_slice_to_core(full));
        });
    }

    /// The digest of everything fed.
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = 8 * (64 * self.blocks + self.buffer.get_pos() as u64);
        let Sha256 { state, buffer, .. } = &mut self;
        buffer.len64_padding_be(bits, |block| compress(state, &[block.0]));
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

impl core::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sha256(..)")
    }
}

/// Serialises the unit tests that install hooks (they are process-wide; the engines the tests
/// install compute the same results as the software, so other tests running meanwhile pass either
/// way, but each of these counts its engine's calls).
#[cfg(test)]
pub(crate) fn test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn pads_and_buffers_as_sha2_does() {
        let data: std::vec::Vec<u8> = (0..1000u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000] {
            for split in [0, 1, len / 3, len] {
                let split = split.min(len);
                let mut h = Sha256::new();
                h.update(&data[..split]);
                h.update(&data[split..len]);
                let want: [u8; 32] =
                    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&data[..len])).into();
                assert_eq!(h.finalize(), want, "length {len}, split at {split}");
            }
        }
    }

    /// `sha2`'s compression behind the engine trait, counting its calls.
    struct CountingEngine(AtomicUsize);
    impl Sha256Engine for CountingEngine {
        fn compress(&self, state: &mut [u32; 8], blocks: &[[u8; 64]]) {
            self.0.fetch_add(1, Ordering::Relaxed);
            sha2::block_api::compress256(state, blocks);
        }
    }

    #[test]
    fn an_installed_engine_compresses_every_block() {
        static ENGINE: CountingEngine = CountingEngine(AtomicUsize::new(0));
        let _serial = test_lock();
        install(Hooks {
            sha256: Some(&ENGINE),
            ..Hooks::NONE
        });
        let mut on_engine = Sha256::new();
        on_engine.update([0x61u8; 200]);
        let on_engine = on_engine.finalize();
        install(Hooks::NONE);
        let software: [u8; 32] =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix([0x61u8; 200])).into();
        assert_eq!(on_engine, software);
        // 200 bytes: three whole blocks in one call, then the padded last one (and whatever other
        // tests running meanwhile hashed).
        assert!(ENGINE.0.load(Ordering::Relaxed) >= 2);
    }

    #[cfg(feature = "secure")]
    mod secure {
        use super::*;
        use crate::secure::{Handshake, Lock, Psk, Role, MSG1_LEN, MSG2_LEN, SEALED_PREFIX, SEAL_OVERHEAD};
        use chacha20poly1305::aead::AeadInOut as _;
        use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _, Nonce, Tag};

        /// RustCrypto's ChaCha20-Poly1305 behind the engine trait, counting its calls.
        struct CountingAead(AtomicUsize);
        impl AeadEngine for CountingAead {
            fn seal(&self, key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
                self.0.fetch_add(1, Ordering::Relaxed);
                ChaCha20Poly1305::new(&(*key).into())
                    .encrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into())
                    .unwrap()
                    .into()
            }
            fn open(&self, key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
                self.0.fetch_add(1, Ordering::Relaxed);
                ChaCha20Poly1305::new(&(*key).into())
                    .decrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into(), &Tag::from(*tag))
                    .is_ok()
            }
        }

        /// A "TRNG" that counts its calls.
        struct CountingRng(AtomicUsize);
        impl EntropySource for CountingRng {
            fn fill(&self, out: &mut [u8]) -> usize {
                let n = self.0.fetch_add(1, Ordering::Relaxed);
                out.fill(n as u8 ^ 0xA5);
                out.len()
            }
        }

        #[test]
        fn handshake_and_sealed_frames_go_through_the_installed_engines() {
            static AEAD: CountingAead = CountingAead(AtomicUsize::new(0));
            static RNG: CountingRng = CountingRng(AtomicUsize::new(0));
            let _serial = test_lock();
            install(Hooks {
                aead: Some(&AEAD),
                ..Hooks::NONE
            });
            let psk = || Psk::from_bytes([3; 32]);
            let mut lock = Lock::new(psk(), [4; 32]);
            lock.set_entropy(&RNG);
            let mut client = Handshake::with_fixed_ephemeral(Role::Initiator, &psk(), [5; 32]);
            let mut m1 = [0u8; MSG1_LEN];
            client.write_message(&mut m1).unwrap();
            let mut m2 = [0u8; MSG2_LEN];
            let (n, mut device) = lock.respond(&m1, &mut m2).unwrap();
            client.read_message(&m2[..n]).unwrap();
            let mut client = client.into_channel().unwrap();
            let mut buf = [0u8; 128];
            let inner = crate::codec::encode_raw(
                &mut buf[SEALED_PREFIX..],
                crate::wire::FrameSpec::request(crate::wire::Kind::Echo, 1),
                &[],
                b"on the engine",
            )
            .unwrap();
            let sealed = client.seal_in_place(&mut buf, inner).unwrap();
            assert_eq!(sealed, inner + SEAL_OVERHEAD);
            let opened = device.open_in_place(&mut buf[..sealed]).unwrap();
            assert_eq!(opened.body, b"on the engine");
            install(Hooks::NONE);
            assert_eq!(RNG.0.load(Ordering::Relaxed), 1, "one handshake, one fill");
            // The handshake's two AEAD operations on each side, then a seal and an open.
            assert!(AEAD.0.load(Ordering::Relaxed) >= 6);
        }
    }
}
