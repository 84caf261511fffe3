//! The firmware update service: `FwStatus`, `FwBegin`, `FwData`, `FwCommit`, `FwTest`,
//! `FwConfirm`, `Reset` (`docs/PROTOCOL.md` §11.12), over the slot state machine of
//! [`crate::update`] (feature `update`). Without the feature, or on a device whose application
//! gives no [`Board`](crate::update::Board) ([`Context::board`](super::Context)), every kind of
//! it is answered `UnknownKind`.
//!
//! An image upload is the file upload's design again (§11.4): announced by size and hash, sent
//! from the offset the device answers in windowed chunks, resumable from any session while the
//! device runs (and from its last checkpoint after a restart), taken over by a session that
//! presents the same image, and checked before it counts.

use super::policy::{Rule, ServedBy};
use crate::wire::Kind;

/// The update kinds: sessions only, so on a device with a key only inside a sealed session.
/// Sent again, `FwBegin` answers the same offset (the upload resumes), and the others answer
/// the same state.
pub(crate) const RULES: [Rule; 7] = [
    Rule::session_only(Kind::FwStatus, ServedBy::Update, false, true),
    Rule::session_only(Kind::FwBegin, ServedBy::Update, true, true),
    Rule::session_only(Kind::FwData, ServedBy::Update, true, false),
    Rule::session_only(Kind::FwCommit, ServedBy::Update, true, false),
    Rule::session_only(Kind::FwTest, ServedBy::Update, true, true),
    Rule::session_only(Kind::FwConfirm, ServedBy::Update, true, true),
    Rule::session_only(Kind::Reset, ServedBy::Update, true, false),
];

#[cfg(feature = "update")]
pub use enabled::UpdateConfig;
/// What the update service keeps in the device, in bytes: its settings, the running image and an
/// upload in progress (hash state included).
#[cfg(feature = "update")]
pub const STATE_LEN: usize = core::mem::size_of::<enabled::Update>();
#[cfg(feature = "update")]
pub(crate) use enabled::{close, Update};

#[cfg(feature = "update")]
mod enabled {
    use super::super::{Conn, Context, Failure, Shared};
    use crate::msg::{self, Digest};
    use crate::update::image::Acceptance;
    use crate::update::{
        Board, BoardId, Boot, ImageError, ImageHasher, ImageKey, Slot, Slots, UpdateError, CHECKPOINT,
    };
    use crate::wire::{ErrorCode, Frame, FrameSpec, Kind};

    /// How a device takes updates: the key images must be signed with, its board, and whether it
    /// accepts a lower security counter.
    #[derive(Debug, Clone, Copy)]
    pub struct UpdateConfig {
        /// The Ed25519 public key of the images' signer.
        pub key: ImageKey,
        /// This board's id; images must name it or any board.
        pub board: BoardId,
        /// Accept images whose security counter is below the floor (development boards).
        pub allow_downgrade: bool,
    }

    /// An image upload in progress: one per device, into the slot that is not running.
    struct Progress {
        slot: Slot,
        size: u32,
        hash: Digest,
        received: u32,
        /// `received` when the record last noted it.
        checkpoint: u32,
        hasher: ImageHasher,
        /// The largest chunk `PutReady` allowed.
        chunk: usize,
        /// The session that sends it (its `Conn::fw_owner`).
        owner: u16,
        /// Whether that session is still open.
        attached: bool,
    }

    /// The update service's state: its settings and the image running (from the boot), and the
    /// upload in progress.
    pub(crate) struct Update {
        enabled: Option<(UpdateConfig, Boot)>,
        upload: Option<Progress>,
        last_owner: u16,
    }

    fn failure(e: UpdateError) -> Failure {
        match e {
            UpdateError::Storage => (ErrorCode::Internal, "the slot storage failed"),
            UpdateError::NoRecord | UpdateError::NothingBootable => {
                (ErrorCode::Internal, "the slots hold no valid state record")
            }
            UpdateError::TrialRunning => (
                ErrorCode::Busy,
                "an image on trial runs: confirm it, or reset to go back, first",
            ),
            UpdateError::NoImage => (ErrorCode::NotFound, "no such image in the slot that is not running"),
            UpdateError::IsRunning => (ErrorCode::InvalidArgument, "that image is the one running"),
            UpdateError::NotReceiving => (ErrorCode::NoTransfer, "no image upload in progress"),
            UpdateError::Image(e) => image_failure(e),
        }
    }

    fn image_failure(e: ImageError) -> Failure {
        let code = match e {
            ImageError::Hash => ErrorCode::DigestMismatch,
            ImageError::Signature => ErrorCode::BadSignature,
            ImageError::WrongBoard => ErrorCode::WrongBoard,
            ImageError::Downgrade => ErrorCode::Downgrade,
            ImageError::TooLarge => ErrorCode::NoSpace,
            ImageError::Key => ErrorCode::Internal,
            ImageError::Truncated
            | ImageError::Magic
            | ImageError::Format
            | ImageError::Layout
            | ImageError::Address => ErrorCode::BadImage,
        };
        let detail = match e {
            ImageError::Hash => "the image does not match its SHA-256; discarded",
            ImageError::Signature => "the signature does not verify with the device's key; discarded",
            ImageError::WrongBoard => "the image is for another board; discarded",
            ImageError::Downgrade => "the image's security counter is below the device's; discarded",
            ImageError::TooLarge => "the image does not fit the slot",
            ImageError::Address => "the image is linked for another load address",
            ImageError::Truncated => "the image is shorter than its header says",
            ImageError::Magic => "not a firmware image (bad magic)",
            ImageError::Format => "an image format this device does not read",
            ImageError::Layout => "the image header's layout is wrong",
            ImageError::Key => "the device's image key is not an Ed25519 key",
        };
        (code, detail)
    }

    const NO_SERVICE: Failure = (ErrorCode::UnknownKind, "this device has no firmware update service");
    const NO_UPLOAD: Failure = (ErrorCode::NoTransfer, "no image upload on this session: send fw-begin");

    impl Update {
        /// No update service until [`Update::enable`].
        pub(crate) const fn new() -> Self {
            Update {
                enabled: None,
                upload: None,
                last_owner: 0,
            }
        }

        /// Serves updates with `config`; `running` is what the last boot chose.
        pub(crate) fn enable(&mut self, config: UpdateConfig, running: Boot) {
            self.enabled = Some((config, running));
            self.upload = None;
        }

        /// The image running, on a device with the service.
        pub(crate) fn running(&self) -> Option<Boot> {
            self.enabled.map(|(_, r)| r)
        }

        /// The application confirms the image on trial (after its own self-test).
        pub(crate) fn confirm_running(&mut self, board: &mut dyn Board) -> Result<bool, UpdateError> {
            let Some((_, running)) = &mut self.enabled else {
                return Ok(false);
            };
            let changed = Slots::open(board)?.confirm(*running)?;
            running.trial = false;
            Ok(changed)
        }

        /// Answers a request of the update service ([`super::RULES`]).
        pub(in crate::service) fn serve<C: Context, S>(
            &mut self,
            sh: &mut Shared<'_, C, S>,
            conn: &mut Conn,
            frame: &Frame<'_>,
            out: &mut [u8],
        ) -> Result<usize, Failure> {
            let (config, running) = self.enabled.ok_or(NO_SERVICE)?;
            let id = frame.request_id();
            let kind = frame.kind();
            let board = sh.ctx.board().ok_or(NO_SERVICE)?;
            let answer = match kind {
                Kind::FwStatus => {
                    frame.meta::<()>().map_err(|c| (c, "fw-status takes no metadata"))?;
                    Answer::State
                }
                Kind::FwBegin => {
                    let req = frame.meta::<msg::FwBegin>().map_err(|c| (c, "fw-begin metadata"))?;
                    let chunk = sh.facts.max_chunk();
                    let window = sh.facts.config.window.max(1);
                    let offset = self.begin(board, conn, running, req, chunk, out)?;
                    Answer::Ready(msg::PutReady {
                        offset: u64::from(offset),
                        chunk: chunk as u32,
                        window,
                    })
                }
                Kind::FwData => {
                    let req = frame.meta::<msg::PutData>().map_err(|c| (c, "fw-data metadata"))?;
                    Answer::Ack(self.data(board, conn, req.offset, frame.body)?)
                }
                Kind::FwCommit => {
                    frame.meta::<()>().map_err(|c| (c, "fw-commit takes no metadata"))?;
                    self.commit(board, conn, &config)?;
                    Answer::State
                }
                Kind::FwTest => {
                    let req = frame.meta::<msg::FwTest>().map_err(|c| (c, "fw-test metadata"))?;
                    let mut slots = Slots::open(board).map_err(failure)?;
                    let accept = acceptance(&config, &mut slots, running.slot.other());
                    slots.test(running, req.hash.as_ref(), &accept).map_err(failure)?;
                    Answer::State
                }
                Kind::FwConfirm => {
                    frame.meta::<()>().map_err(|c| (c, "fw-confirm takes no metadata"))?;
                    self.confirm_running(board).map_err(failure)?;
                    Answer::State
                }
                Kind::Reset => {
                    frame.meta::<()>().map_err(|c| (c, "reset takes no metadata"))?;
                    self.checkpoint(board);
                    board.schedule_reset();
                    Answer::Empty
                }
                _ => return Err((ErrorCode::UnknownKind, "no such service")),
            };
            let spec = FrameSpec::response(kind, id);
            Ok(match answer {
                Answer::Ready(ready) => sh.reply(out, spec, &ready, &[]),
                Answer::Ack(received) => sh.reply(
                    out,
                    spec,
                    &msg::PutAck {
                        received: u64::from(received),
                    },
                    &[],
                ),
                Answer::Empty => sh.reply(out, spec, &(), &[]),
                Answer::State => {
                    let board = sh.ctx.board().ok_or(NO_SERVICE)?;
                    let state = self.state(board, &config)?;
                    sh.reply(out, spec, &state, &[])
                }
            })
        }

        /// The slots as they stand.
        fn state<'c>(&self, board: &mut dyn Board, config: &'c UpdateConfig) -> Result<msg::FwState<'c>, Failure> {
            let slots = Slots::open(board).map_err(failure)?;
            let r = slots.record();
            let running = self.running().map_or(0, |b| b.slot.index() as u8);
            Ok(msg::FwState {
                running,
                board: config.board.as_str(),
                floor: r.floor,
                slots: Slot::BOTH.map(|s| {
                    let e = r.slot(s);
                    msg::SlotInfo {
                        state: e.state as u8,
                        major: e.version.major,
                        minor: e.version.minor,
                        patch: e.version.patch,
                        security_counter: e.security_counter,
                        size: e.size,
                        hash: e.hash,
                    }
                }),
            })
        }

        /// `conn`'s upload owner number, given on first use.
        fn owner_of(&mut self, conn: &mut Conn) -> u16 {
            if conn.fw_owner == 0 {
                self.last_owner = self.last_owner.wrapping_add(1).max(1);
                conn.fw_owner = self.last_owner;
            }
            conn.fw_owner
        }

        /// `FwBegin`: resumes the upload of the same image (this session's, a suspended one, or
        /// another session's, taken over), or starts a new one. Returns the offset to send from.
        fn begin(
            &mut self,
            board: &mut dyn Board,
            conn: &mut Conn,
            running: Boot,
            req: msg::FwBegin,
            chunk: usize,
            scratch: &mut [u8],
        ) -> Result<u32, Failure> {
            let size = u32::try_from(req.size).map_err(|_| image_failure(ImageError::TooLarge))?;
            let owner = self.owner_of(conn);
            if running.trial {
                return Err(failure(UpdateError::TrialRunning));
            }
            if let Some(p) = &mut self.upload {
                if p.size == size && p.hash == req.hash {
                    p.owner = owner;
                    p.attached = true;
                    p.chunk = chunk;
                    return Ok(p.received);
                }
                if p.attached && p.owner != owner {
                    return Err((
                        ErrorCode::Busy,
                        "another session is uploading another image; it must finish or end first",
                    ));
                }
            }
            self.upload = None;
            let mut slots = Slots::open(board).map_err(failure)?;
            let (slot, held) = slots.begin(running, size, req.hash).map_err(failure)?;
            // Resuming after a restart: the hash state is rebuilt from the bytes held.
            let mut hasher = ImageHasher::new();
            let mut at = 0;
            let room = scratch.len().max(1);
            while at < held {
                let n = ((held - at) as usize).min(room);
                slots
                    .store()
                    .read(slot, at, &mut scratch[..n])
                    .map_err(|_| failure(UpdateError::Storage))?;
                hasher.update(&scratch[..n]);
                at += n as u32;
            }
            self.upload = Some(Progress {
                slot,
                size,
                hash: req.hash,
                received: held,
                checkpoint: held,
                hasher,
                chunk,
                owner,
                attached: true,
            });
            Ok(held)
        }

        /// `FwData`: writes one chunk; returns the bytes received.
        fn data(&mut self, board: &mut dyn Board, conn: &Conn, offset: u64, body: &[u8]) -> Result<u32, Failure> {
            let p = self
                .upload
                .as_mut()
                .filter(|p| p.attached && p.owner == conn.fw_owner && conn.fw_owner != 0)
                .ok_or(NO_UPLOAD)?;
            if body.len() > p.chunk {
                return Err((ErrorCode::TooLarge, "a chunk larger than put-ready allows"));
            }
            if offset != u64::from(p.received) {
                return Err((ErrorCode::BadOffset, "the chunk is not where the upload stands"));
            }
            if u64::from(p.received) + body.len() as u64 > u64::from(p.size) {
                return Err((ErrorCode::BadOffset, "the chunk ends past the announced size"));
            }
            let mut slots = Slots::open(board).map_err(failure)?;
            slots.write(p.slot, p.received, body).map_err(failure)?;
            p.hasher.update(body);
            p.received += body.len() as u32;
            if p.received - p.checkpoint >= CHECKPOINT {
                slots.checkpoint(p.slot, p.received).map_err(failure)?;
                p.checkpoint = p.received;
            }
            Ok(p.received)
        }

        /// `FwCommit`: checks the image and makes it `Pending`; a refused image is discarded.
        fn commit(&mut self, board: &mut dyn Board, conn: &Conn, config: &UpdateConfig) -> Result<(), Failure> {
            let p = self
                .upload
                .as_ref()
                .filter(|p| p.attached && p.owner == conn.fw_owner && conn.fw_owner != 0)
                .ok_or(NO_UPLOAD)?;
            if p.received != p.size {
                return Err((ErrorCode::BadOffset, "the image is not complete yet"));
            }
            let hash = p.hasher.clone().finish();
            let slot = p.slot;
            self.upload = None;
            let mut slots = Slots::open(board).map_err(failure)?;
            let accept = acceptance(config, &mut slots, slot);
            slots.finish(slot, &hash, &accept).map_err(failure)?;
            Ok(())
        }

        /// Notes the upload's progress in the record, so that it resumes from there after a
        /// restart (a session that ends, a reset).
        fn checkpoint(&mut self, board: &mut dyn Board) {
            if let Some(p) = &mut self.upload {
                if p.received > p.checkpoint {
                    if let Ok(mut slots) = Slots::open(board) {
                        if slots.checkpoint(p.slot, p.received).is_ok() {
                            p.checkpoint = p.received;
                        }
                    }
                }
            }
        }
    }

    /// What the device accepts into `slot` now.
    fn acceptance<'c>(config: &'c UpdateConfig, slots: &mut Slots<'_, dyn Board + '_>, slot: Slot) -> Acceptance<'c> {
        let floor = slots.record().floor;
        let store = slots.store();
        Acceptance {
            key: &config.key,
            board: config.board,
            floor,
            allow_downgrade: config.allow_downgrade,
            load_address: store.load_address(slot),
            slot_size: store.slot_size(),
        }
    }

    /// What a handler answers, encoded once the board is no longer borrowed.
    enum Answer {
        State,
        Ready(msg::PutReady),
        Ack(u32),
        Empty,
    }

    /// Ends `conn`'s part in the update service: its upload stays, suspended, resumable by any
    /// session, and its progress is noted in the record.
    pub(crate) fn close<C: Context>(update: &mut Update, ctx: &mut C, conn: &mut Conn) {
        if let Some(p) = &mut update.upload {
            if p.owner == conn.fw_owner && conn.fw_owner != 0 {
                p.attached = false;
                if let Some(board) = ctx.board() {
                    update.checkpoint(board);
                }
            }
        }
        conn.fw_owner = 0;
    }
}
