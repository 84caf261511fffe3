//! The signed firmware image: a 256-byte header, then the body (`docs/PROTOCOL.md` §18.1).
//!
//! ```text
//! offset  size  field
//!   0x00     4  magic             "TIMG"
//!   0x04     2  format            u16 LE: 1
//!   0x06     2  header_len        u16 LE: 256 (the body starts there)
//!   0x08     6  version           major, minor, patch: u16 LE each
//!   0x0e     2  reserved          0
//!   0x10     4  security_counter  u32 LE: an image below the device's floor is a downgrade
//!   0x14    16  board             ASCII, zero-padded; all zeros: any board
//!   0x24     4  load_address      u32 LE: where the body must lie to run
//!   0x28     4  body_len          u32 LE
//!   0x2c     4  reserved          0
//!   0x30    32  hash              SHA-256 of bytes 0x00..0x30 and the body
//!   0x50    64  signature         Ed25519 over bytes 0x00..0x50
//!   0x90   112  padding           zeros
//! ```
//!
//! The hash covers every header field and the body; the signature covers the fields and the hash,
//! so it covers the body through the hash. The padding must be zero, so no byte of an image goes
//! unchecked. Parsing, hashing and verifying need no allocation and never hold the body: a
//! device hashes the image as it arrives ([`ImageHasher`]) and checks the header at the end.

use core::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::msg::Digest;

/// The four bytes an image starts with.
pub const MAGIC: [u8; 4] = *b"TIMG";
/// The image format this crate reads and writes.
pub const FORMAT: u16 = 1;
/// Length of the header; the body starts there (a multiple of 256, so a vector table at the
/// start of the body can be run in place).
pub const HEADER_LEN: usize = 256;
/// The header bytes the hash covers (every field before the hash).
pub const HASHED_LEN: usize = 0x30;
/// The header bytes the signature covers (the fields and the hash).
pub const SIGNED_LEN: usize = 0x50;
/// Where the signature lies in the header.
pub const SIGNATURE_AT: usize = SIGNED_LEN;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 public (verifying) key.
pub const KEY_LEN: usize = 32;
/// Longest board id, in bytes.
pub const BOARD_LEN: usize = 16;

/// An image version: semantic version numbers (the security counter is separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Semver {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Patch version.
    pub patch: u16,
}

impl Semver {
    /// `major.minor.patch`.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Semver {
        Semver { major, minor, patch }
    }

    /// Parses `X.Y.Z`: three decimal numbers of at most 65535, nothing else.
    pub fn parse(text: &str) -> Option<Semver> {
        let mut parts = text.split('.');
        let mut next = || -> Option<u16> {
            let p = parts.next()?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Semver::new(next()?, next()?, next()?);
        parts.next().is_none().then_some(v)
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The board an image is built for: 1 to 16 bytes of `A-Z a-z 0-9 . _ -`, or any board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BoardId([u8; BOARD_LEN]);

impl BoardId {
    /// Any board (all zeros in the header).
    pub const ANY: BoardId = BoardId([0; BOARD_LEN]);

    /// A board id from its name; `None` if the name is empty, too long or has other characters.
    pub fn new(name: &str) -> Option<BoardId> {
        let ok = !name.is_empty()
            && name.len() <= BOARD_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return None;
        }
        let mut id = [0u8; BOARD_LEN];
        id[..name.len()].copy_from_slice(name.as_bytes());
        Some(BoardId(id))
    }

    /// The header's 16 bytes, checked: a name zero-padded, or all zeros.
    fn from_bytes(bytes: [u8; BOARD_LEN]) -> Option<BoardId> {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(BOARD_LEN);
        if bytes[len..].iter().any(|&b| b != 0) {
            return None;
        }
        match core::str::from_utf8(&bytes[..len]) {
            Ok("") => Some(BoardId::ANY),
            Ok(name) => BoardId::new(name),
            Err(_) => None,
        }
    }

    /// The name; empty for any board.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(BOARD_LEN);
        core::str::from_utf8(&self.0[..len]).unwrap_or("")
    }

    /// Whether this is [`BoardId::ANY`].
    pub fn is_any(&self) -> bool {
        *self == BoardId::ANY
    }

    /// Whether an image built for `self` may run on the board `device`.
    pub fn fits(&self, device: &BoardId) -> bool {
        self.is_any() || self == device
    }
}

/// Why an image, or a key, is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than its header, or than its header says.
    Truncated,
    /// Not an image: the magic is wrong.
    Magic,
    /// An image format this device does not read.
    Format,
    /// The header's layout is wrong: header length, reserved bytes or padding not zero, a board
    /// id that is not one.
    Layout,
    /// The image does not fit the slot.
    TooLarge,
    /// The bytes do not hash to the header's hash (or to the hash announced for them).
    Hash,
    /// The signature does not verify with the device's key: unsigned, signed with another key,
    /// or modified after signing.
    Signature,
    /// Built for another board.
    WrongBoard,
    /// Its security counter is below the device's floor: an older, possibly vulnerable image.
    Downgrade,
    /// Linked to run at another address than the slot's.
    Address,
    /// Not an Ed25519 public key.
    Key,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageError::Truncated => "the image is shorter than its header says",
            ImageError::Magic => "not a Tether firmware image (bad magic)",
            ImageError::Format => "an image format this device does not read",
            ImageError::Layout => "the image header's layout is wrong",
            ImageError::TooLarge => "the image does not fit the slot",
            ImageError::Hash => "the image does not match its SHA-256",
            ImageError::Signature => "the image's signature does not verify with the device's key",
            ImageError::WrongBoard => "the image is for another board",
            ImageError::Downgrade => "the image's security counter is below the device's",
            ImageError::Address => "the image is linked for another load address",
            ImageError::Key => "not an Ed25519 public key",
        })
    }
}

/// An image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The image's version.
    pub version: Semver,
    /// The monotonic security counter: raise it when an image fixes a vulnerability, so the
    /// older ones can no longer be installed.
    pub security_counter: u32,
    /// The board it is built for.
    pub board: BoardId,
    /// Where the body must lie to run (a board that runs images in place checks it).
    pub load_address: u32,
    /// Length of the body.
    pub body_len: u32,
    /// SHA-256 of header bytes `0..HASHED_LEN` and the body: the image's identity.
    pub hash: Digest,
    /// Ed25519 signature over header bytes `0..SIGNED_LEN`.
    pub signature: [u8; SIGNATURE_LEN],
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// Parses and checks the layout of the first [`HEADER_LEN`] bytes of `image` (hash and
    /// signature are not checked here: [`ImageHasher`], [`ImageKey::verify`]).
    pub fn parse(image: &[u8]) -> Result<Header, ImageError> {
        let b = image.get(..HEADER_LEN).ok_or(ImageError::Truncated)?;
        if b[..4] != MAGIC {
            return Err(ImageError::Magic);
        }
        if le16(b, 4) != FORMAT {
            return Err(ImageError::Format);
        }
        let zeros = |r: core::ops::Range<usize>| b[r].iter().all(|&x| x == 0);
        if usize::from(le16(b, 6)) != HEADER_LEN || !zeros(0x0e..0x10) || !zeros(0x2c..0x30) {
            return Err(ImageError::Layout);
        }
        if !zeros(SIGNATURE_AT + SIGNATURE_LEN..HEADER_LEN) {
            return Err(ImageError::Layout);
        }
        let mut board = [0u8; BOARD_LEN];
        board.copy_from_slice(&b[0x14..0x24]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[HASHED_LEN..SIGNED_LEN]);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&b[SIGNATURE_AT..SIGNATURE_AT + SIGNATURE_LEN]);
        Ok(Header {
            version: Semver::new(le16(b, 8), le16(b, 10), le16(b, 12)),
            security_counter: le32(b, 0x10),
            board: BoardId::from_bytes(board).ok_or(ImageError::Layout)?,
            load_address: le32(b, 0x24),
            body_len: le32(b, 0x28),
            hash,
            signature,
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..SIGNED_LEN].copy_from_slice(&self.signed_bytes());
        b[SIGNATURE_AT..SIGNATURE_AT + SIGNATURE_LEN].copy_from_slice(&self.signature);
        b
    }

    /// The bytes the hash covers: every field before it.
    pub fn hashed_bytes(&self) -> [u8; HASHED_LEN] {
        let mut b = [0u8; HASHED_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&FORMAT.to_le_bytes());
        b[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[8..10].copy_from_slice(&self.version.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.version.minor.to_le_bytes());
        b[12..14].copy_from_slice(&self.version.patch.to_le_bytes());
        b[0x10..0x14].copy_from_slice(&self.security_counter.to_le_bytes());
        b[0x14..0x24].copy_from_slice(&self.board.0);
        b[0x24..0x28].copy_from_slice(&self.load_address.to_le_bytes());
        b[0x28..0x2c].copy_from_slice(&self.body_len.to_le_bytes());
        b
    }

    /// The bytes the signature covers: the fields and the hash.
    pub fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[..HASHED_LEN].copy_from_slice(&self.hashed_bytes());
        b[HASHED_LEN..].copy_from_slice(&self.hash);
        b
    }

    /// The whole image's length: header and body.
    pub fn image_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len)
    }

    /// A header for `body` with its hash computed and no signature yet (all zeros): what a
    /// signer signs ([`Header::signed_bytes`]) before it sets [`Header::signature`].
    pub fn for_body(version: Semver, security_counter: u32, board: BoardId, load_address: u32, body: &[u8]) -> Header {
        let mut h = Header {
            version,
            security_counter,
            board,
            load_address,
            body_len: body.len() as u32,
            hash: [0; 32],
            signature: [0; SIGNATURE_LEN],
        };
        let mut sha = Sha256::new();
        sha.update(h.hashed_bytes());
        sha.update(body);
        h.hash = sha.finalize().into();
        h
    }
}

/// The image hash of bytes streamed from an image's first byte: it takes every byte and hashes
/// those the hash covers (header bytes `0..HASHED_LEN`, then the body).
#[derive(Clone)]
pub struct ImageHasher {
    at: u64,
    sha: Sha256,
}

impl Default for ImageHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageHasher {
    /// At the image's first byte.
    pub fn new() -> ImageHasher {
        ImageHasher {
            at: 0,
            sha: Sha256::new(),
        }
    }

    /// Takes the next bytes of the image.
    pub fn update(&mut self, bytes: &[u8]) {
        let start = self.at;
        self.at += bytes.len() as u64;
        // The part of `bytes` inside [0, HASHED_LEN) and the part at or past HEADER_LEN.
        let cut = |limit: u64| (limit.saturating_sub(start).min(bytes.len() as u64)) as usize;
        self.sha.update(&bytes[..cut(HASHED_LEN as u64)]);
        self.sha.update(&bytes[cut(HEADER_LEN as u64)..]);
    }

    /// How many bytes it has taken.
    pub fn position(&self) -> u64 {
        self.at
    }

    /// The image hash of what it took.
    pub fn finish(self) -> Digest {
        self.sha.finalize().into()
    }
}

/// The key images must be signed with: an Ed25519 public key. The device holds only this; the
/// signing key stays on the PC that signs (`host-cli fw sign`). It keeps the 32 bytes (checked
/// to be a curve point when made) rather than the decompressed point: 160 bytes less of the
/// device's RAM, for one decompression per verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKey([u8; KEY_LEN]);

impl ImageKey {
    /// The key from its 32 bytes (an Ed25519 public key, as `fw keygen` writes it to KEY.pub).
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<ImageKey, ImageError> {
        VerifyingKey::from_bytes(bytes).map_err(|_| ImageError::Key)?;
        Ok(ImageKey(*bytes))
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    /// Checks the header's signature (strict RFC 8032 verification: no malleable or small-order
    /// signatures or keys).
    pub fn verify(&self, header: &Header) -> Result<(), ImageError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| ImageError::Key)?;
        let signature = Signature::from_bytes(&header.signature);
        key.verify_strict(&header.signed_bytes(), &signature)
            .map_err(|_| ImageError::Signature)
    }
}

/// What a device accepts: its key, its board, its security floor, and where a slot's image must
/// run.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance<'a> {
    /// The key images must be signed with.
    pub key: &'a ImageKey,
    /// This board.
    pub board: BoardId,
    /// The lowest security counter accepted (the counter of the last image confirmed).
    pub floor: u32,
    /// Accept an image whose counter is below the floor (a device setting, never a request's).
    pub allow_downgrade: bool,
    /// Where the slot's image must be linked to run, for a board that runs images in place.
    pub load_address: Option<u32>,
    /// The slot's size.
    pub slot_size: u32,
}

impl Acceptance<'_> {
    /// Checks a parsed header whose image hashed to `hash`: the hash, the signature, the board,
    /// the security counter, the load address and the size, in that order.
    pub fn check(&self, header: &Header, hash: &Digest) -> Result<(), ImageError> {
        if header.image_len() > u64::from(self.slot_size) {
            return Err(ImageError::TooLarge);
        }
        if header.hash != *hash {
            return Err(ImageError::Hash);
        }
        self.key.verify(header)?;
        if !header.board.fits(&self.board) {
            return Err(ImageError::WrongBoard);
        }
        if header.security_counter < self.floor && !self.allow_downgrade {
            return Err(ImageError::Downgrade);
        }
        if self.load_address.is_some_and(|a| a != header.load_address) {
            return Err(ImageError::Address);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(body: &[u8], counter: u32, board: BoardId) -> ([u8; HEADER_LEN], ImageKey) {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let mut h = Header::for_body(Semver::new(1, 2, 3), counter, board, 0x2100_1000, body);
        h.signature = sk.sign(&h.signed_bytes()).to_bytes();
        (h.to_bytes(), ImageKey(sk.verifying_key().to_bytes()))
    }

    #[test]
    fn semver_and_board_ids() {
        assert_eq!(Semver::parse("1.2.3"), Some(Semver::new(1, 2, 3)));
        assert_eq!(
            Semver::parse("0.0.0").map(|v| std::format!("{v}")).as_deref(),
            Some("0.0.0")
        );
        for bad in [
            "1.2",
            "1.2.3.4",
            "a.b.c",
            "1..3",
            "65536.0.0",
            "-1.0.0",
            "+1.0.0",
            " 1.0.0",
        ] {
            assert_eq!(Semver::parse(bad), None, "{bad}");
        }
        assert!(Semver::new(1, 10, 0) > Semver::new(1, 9, 9));
        let sim = BoardId::new("tether-sim").unwrap();
        assert_eq!(sim.as_str(), "tether-sim");
        assert!(BoardId::ANY.fits(&sim) && sim.fits(&sim));
        assert!(!BoardId::new("mps2-an386").unwrap().fits(&sim));
        for bad in ["", "a b", "0123456789abcdefg", "é"] {
            assert_eq!(BoardId::new(bad), None, "{bad}");
        }
        assert_eq!(BoardId::from_bytes(*b"ab\0c\0\0\0\0\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn a_header_round_trips_and_its_layout_is_checked() {
        let body = [0x5a; 1000];
        let (bytes, key) = signed(&body, 4, BoardId::ANY);
        let h = Header::parse(&bytes).unwrap();
        assert_eq!(h.to_bytes(), bytes);
        assert_eq!(h.image_len(), 1256);
        key.verify(&h).unwrap();
        assert_eq!(Header::parse(&bytes[..255]), Err(ImageError::Truncated));
        for (at, err) in [
            (0, ImageError::Magic),
            (4, ImageError::Format),
            (6, ImageError::Layout),
            (0x0e, ImageError::Layout),
            (0x2c, ImageError::Layout),
            (0x90, ImageError::Layout),
            (0xff, ImageError::Layout),
        ] {
            let mut b = bytes;
            b[at] ^= 1;
            assert_eq!(Header::parse(&b), Err(err), "byte {at:#x}");
        }
        let mut b = bytes;
        b[0x14] = b' ';
        assert_eq!(Header::parse(&b), Err(ImageError::Layout));
    }

    #[test]
    fn the_hasher_takes_any_split_and_skips_hash_signature_and_padding() {
        let body: std::vec::Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let (header, _) = signed(&body, 1, BoardId::ANY);
        let mut image = header.to_vec();
        image.extend_from_slice(&body);
        for step in [1, 7, 48, 255, 256, 1000, image.len()] {
            let mut hasher = ImageHasher::new();
            for chunk in image.chunks(step) {
                hasher.update(chunk);
            }
            assert_eq!(hasher.position(), image.len() as u64);
            assert_eq!(hasher.finish(), Header::parse(&image).unwrap().hash, "step {step}");
        }
        // The signature is outside the hash; a body byte is inside it.
        let mut other = image.clone();
        other[SIGNATURE_AT] ^= 1;
        let mut hasher = ImageHasher::new();
        hasher.update(&other);
        assert_eq!(hasher.finish(), Header::parse(&image).unwrap().hash);
        other[HEADER_LEN + 5] ^= 1;
        let mut hasher = ImageHasher::new();
        hasher.update(&other);
        assert_ne!(hasher.finish(), Header::parse(&image).unwrap().hash);
    }

    #[test]
    fn acceptance_refuses_each_fault_in_turn() {
        let body = [1u8; 64];
        let sim = BoardId::new("tether-sim").unwrap();
        let (bytes, key) = signed(&body, 5, sim);
        let h = Header::parse(&bytes).unwrap();
        let ok = Acceptance {
            key: &key,
            board: sim,
            floor: 5,
            allow_downgrade: false,
            load_address: None,
            slot_size: 4096,
        };
        assert_eq!(ok.check(&h, &h.hash), Ok(()));
        assert_eq!(ok.check(&h, &[0; 32]), Err(ImageError::Hash));
        let other_key = ImageKey(SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes());
        assert_eq!(
            Acceptance { key: &other_key, ..ok }.check(&h, &h.hash),
            Err(ImageError::Signature)
        );
        let mut forged = h;
        forged.security_counter = 9;
        assert_eq!(ok.check(&forged, &forged.hash), Err(ImageError::Signature));
        let board = BoardId::new("mps2-an386").unwrap();
        assert_eq!(
            Acceptance { board, ..ok }.check(&h, &h.hash),
            Err(ImageError::WrongBoard)
        );
        assert_eq!(
            Acceptance { floor: 6, ..ok }.check(&h, &h.hash),
            Err(ImageError::Downgrade)
        );
        let downgrade = Acceptance {
            floor: 6,
            allow_downgrade: true,
            ..ok
        };
        assert_eq!(downgrade.check(&h, &h.hash), Ok(()));
        let xip = Acceptance {
            load_address: Some(0x2100_1000),
            ..ok
        };
        assert_eq!(xip.check(&h, &h.hash), Ok(()));
        let elsewhere = Acceptance {
            load_address: Some(0x2180_1000),
            ..ok
        };
        assert_eq!(elsewhere.check(&h, &h.hash), Err(ImageError::Address));
        assert_eq!(
            Acceptance { slot_size: 300, ..ok }.check(&h, &h.hash),
            Err(ImageError::TooLarge)
        );
        // About half of all 32-byte strings are not the encoding of a curve point.
        let not_a_point = (2u8..64)
            .map(|y| [y; 32])
            .find(|b| ImageKey::from_bytes(b) == Err(ImageError::Key));
        assert!(not_a_point.is_some());
    }
}
