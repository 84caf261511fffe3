//! Firmware update from the PC: key files, signing images, and the client's side of the update
//! service (docs/PROTOCOL.md §11.12, §18).
//!
//! ```
//! use tether_core::update::{BoardId, Header, ImageKey, Semver};
//! use tether_host::firmware::{generate_signing_key, sign};
//!
//! let key = generate_signing_key();
//! let image = sign(&key, b"the firmware", Semver::new(1, 2, 0), 3, BoardId::ANY, 0);
//! let header = Header::parse(&image).unwrap();
//! let public = ImageKey::from_bytes(&key.verifying_key().to_bytes()).unwrap();
//! assert!(public.verify(&header).is_ok());
//! assert_eq!(header.image_len(), image.len() as u64);
//! ```

use std::collections::VecDeque;
use std::path::Path;

use ed25519_dalek::{Signer as _, SigningKey};
use embedded_io::{Read, Write};
use tether_core::msg::{self, Digest};
use tether_core::secure::Psk;
use tether_core::update::{BoardId, Header, ImageKey, Semver, SlotState};
use tether_core::wire::Kind;

use crate::client::{check, link_name, meta, Client};
use crate::error::{ClientError, Result};

/// Reads a key file's 32 bytes (64 hex digits and a newline, docs/PROTOCOL.md §16.2).
fn read_key_bytes(path: &Path, what: &str) -> Result<Psk> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|e| ClientError::Local(format!("cannot read the {what} {shown} ({e})")))?;
    Psk::from_hex(&text).map_err(|e| ClientError::Local(format!("{shown} is not a {what}: {e}")))
}

/// Reads a public key file (`KEY.pub` of `fw keygen`): the key images must be signed with.
pub fn read_public_key(path: &Path) -> Result<ImageKey> {
    let bytes = read_key_bytes(path, "public key file")?;
    ImageKey::from_bytes(bytes.as_bytes())
        .map_err(|e| ClientError::Local(format!("{} is not a public key file: {e}", path.display())))
}

/// Reads a signing key file (`KEY` of `fw keygen`).
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let bytes = read_key_bytes(path, "signing key file")?;
    Ok(SigningKey::from_bytes(bytes.as_bytes()))
}

/// A fresh signing key from the operating system's CSPRNG.
pub fn generate_signing_key() -> SigningKey {
    let seed = crate::secure::generate_key();
    SigningKey::from_bytes(seed.as_bytes())
}

/// The key-file text of 32 key bytes: 64 lower-case hex digits and a newline.
pub fn key_file_text(bytes: [u8; 32]) -> [u8; 65] {
    let mut text = [0u8; 65];
    Psk::from_bytes(bytes).to_hex(&mut text);
    text
}

/// A signed image of `body` (docs/PROTOCOL.md §18.1).
pub fn sign(
    key: &SigningKey,
    body: &[u8],
    version: Semver,
    security_counter: u32,
    board: BoardId,
    load_address: u32,
) -> Vec<u8> {
    let mut header = Header::for_body(version, security_counter, board, load_address, body);
    header.signature = key.sign(&header.signed_bytes()).to_bytes();
    let mut image = header.to_bytes().to_vec();
    image.extend_from_slice(body);
    image
}

/// One slot as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    /// `empty`, `pending`, `trial`, `confirmed`, `active` or `reverted`.
    pub state: &'static str,
    /// The image's version.
    pub version: Semver,
    /// The image's security counter.
    pub security_counter: u32,
    /// The image's length.
    pub size: u32,
    /// The image hash.
    pub hash: Digest,
}

/// The device's slots (`FwStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareStatus {
    /// The slot running (0 or 1).
    pub running: usize,
    /// The board id images must name.
    pub board: String,
    /// The lowest security counter the device accepts.
    pub floor: u32,
    /// Slot 0 and slot 1.
    pub slots: [SlotStatus; 2],
}

impl FirmwareStatus {
    /// The running slot's entry.
    pub fn running_slot(&self) -> &SlotStatus {
        &self.slots[self.running]
    }

    /// The slot that is not running.
    pub fn other_slot(&self) -> &SlotStatus {
        &self.slots[1 - self.running.min(1)]
    }

    /// Whether the image `hash` runs, confirmed: an update to it has nothing to do.
    pub fn runs_confirmed(&self, hash: &Digest) -> bool {
        let running = self.running_slot();
        running.hash == *hash && running.state == "active"
    }

    /// After the reset of an update to the image `hash` (version `version`): why it does not
    /// run, if it does not (the device went back to the previous image).
    pub fn went_back(&self, hash: &Digest, version: &dyn std::fmt::Display) -> Option<String> {
        let running = self.running_slot();
        (running.hash != *hash).then(|| {
            format!(
                "the device went back to {} (slot {}): the new image {version} did not stay on its trial boot",
                running.version, self.running
            )
        })
    }

    /// As `fw status --json` and the bridge's `fw-…` answers show it (docs/CLI.md): `running`
    /// {slot, version, hash}, `slots` [{slot, state, version, security_counter, size, hash}],
    /// `board`, `floor`.
    pub fn to_json(&self) -> serde_json::Value {
        let hex = |h: &Digest| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let slot = |i: usize| {
            let s = &self.slots[i];
            serde_json::json!({"slot": i, "state": s.state, "version": s.version.to_string(),
                "security_counter": s.security_counter, "size": s.size, "hash": hex(&s.hash)})
        };
        let r = self.running_slot();
        serde_json::json!({"running": {"slot": self.running, "version": r.version.to_string(), "hash": hex(&r.hash)},
            "slots": [slot(0), slot(1)], "board": self.board, "floor": self.floor})
    }
}

fn state_name(code: u8) -> Result<&'static str> {
    SlotState::from_code(code).map(SlotState::name).ok_or_else(|| {
        ClientError::Protocol(format!(
            "the device reports a slot state {code} this client does not know"
        ))
    })
}

impl TryFrom<msg::FwState<'_>> for FirmwareStatus {
    type Error = ClientError;

    fn try_from(s: msg::FwState<'_>) -> Result<FirmwareStatus> {
        if s.running > 1 {
            return Err(ClientError::Protocol(format!(
                "the device says slot {} runs",
                s.running
            )));
        }
        let slot = |i: usize| -> Result<SlotStatus> {
            let e = &s.slots[i];
            Ok(SlotStatus {
                state: state_name(e.state)?,
                version: Semver::new(e.major, e.minor, e.patch),
                security_counter: e.security_counter,
                size: e.size,
                hash: e.hash,
            })
        };
        Ok(FirmwareStatus {
            running: usize::from(s.running),
            board: s.board.to_string(),
            floor: s.floor,
            slots: [slot(0)?, slot(1)?],
        })
    }
}

/// How an image upload went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageUpload {
    /// The image hash.
    pub hash: Digest,
    /// The offset it resumed from (0: sent whole).
    pub resumed_from: u64,
}

impl<T: Read + Write> Client<T>
where
    T::Error: embedded_io::Error,
{
    fn fw_state(&mut self, kind: Kind, meta_: &impl serde::Serialize) -> Result<FirmwareStatus> {
        let frame = self.call(kind, meta_, &[])?;
        FirmwareStatus::try_from(meta::<msg::FwState<'_>>(&frame)?)
    }

    /// `FwStatus`: the slots and the image running.
    pub fn fw_status(&mut self) -> Result<FirmwareStatus> {
        self.fw_state(Kind::FwStatus, &())
    }

    /// Uploads a signed `image` into the slot that is not running, resuming where the device
    /// holds the same image, then commits it (the device checks it); `progress` sees the bytes
    /// acknowledged.
    pub fn fw_upload(&mut self, image: &[u8], mut progress: impl FnMut(u64)) -> Result<ImageUpload> {
        let header = Header::parse(image).map_err(|e| ClientError::Usage(format!("not a firmware image: {e}")))?;
        let size = image.len() as u64;
        let begin = msg::FwBegin {
            size,
            hash: header.hash,
        };
        let ready: msg::PutReady = meta(&self.call(Kind::FwBegin, &begin, &[])?)?;
        if ready.offset > size || ready.chunk == 0 {
            return Err(ClientError::Protocol(format!(
                "the device offered to resume at byte {} with chunks of {} bytes, which cannot be right",
                ready.offset, ready.chunk
            )));
        }
        progress(ready.offset);
        let window = usize::from(ready.window.max(1));
        let mut sent = ready.offset as usize;
        let mut in_flight = VecDeque::new();
        loop {
            while in_flight.len() < window && sent < image.len() {
                let end = (sent + ready.chunk as usize).min(image.len());
                let id = self.send(Kind::FwData, &msg::PutData { offset: sent as u64 }, &image[sent..end])?;
                in_flight.push_back(id);
                sent = end;
            }
            let Some(id) = in_flight.pop_front() else { break };
            let (link, lossy) = (link_name(self.peer(), self.is_lossy()), self.is_lossy());
            let ack: msg::PutAck = meta(&check(self.receive(id)?, &link, lossy)?)?;
            progress(ack.received);
        }
        let state = self.fw_state(Kind::FwCommit, &())?;
        if state.other_slot().hash != header.hash {
            return Err(ClientError::Protocol(
                "the device committed the image but reports another one in the slot".into(),
            ));
        }
        Ok(ImageUpload {
            hash: header.hash,
            resumed_from: ready.offset,
        })
    }

    /// `FwTest`: the image in the slot that is not running (the one with `hash`) runs once, on
    /// trial, at the next reset.
    pub fn fw_test(&mut self, hash: Option<Digest>) -> Result<FirmwareStatus> {
        self.fw_state(Kind::FwTest, &msg::FwTest { hash })
    }

    /// `FwConfirm`: keeps the image on trial.
    pub fn fw_confirm(&mut self) -> Result<FirmwareStatus> {
        self.fw_state(Kind::FwConfirm, &())
    }

    /// `Reset`: the device resets once the answer is out (every session ends).
    pub fn reset(&mut self) -> Result<()> {
        self.call(Kind::Reset, &(), &[]).map(|_| ())
    }
}
