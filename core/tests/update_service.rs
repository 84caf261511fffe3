//! The firmware update service (`FwStatus` … `Reset`, PROTOCOL.md §11.12) through
//! `Device::handle`, on the simulated flash: uploads resume and are taken over like file
//! uploads, refused images leave the running one alone, and test / reset / confirm drive the
//! slot state machine.

#![cfg(feature = "update")]

mod common;

use common::flash::{board, image_with, key, signer, Flash};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use tether_core::codec::{encode, parse_datagram};
use tether_core::msg::{self, Digest};
use tether_core::service::ramstore::RamStore;
use tether_core::service::update::UpdateConfig;
use tether_core::service::{Conn, Context, Device, DeviceConfig, Transport};
use tether_core::update::{boot, Board, BoardId, Header, Slot, SlotState, Slots};
use tether_core::wire::{ErrorCode, FrameSpec, Kind};

const N: usize = 2048;

/// The application context: the board's flash.
struct Ctx {
    flash: Option<Flash>,
}

impl Context for Ctx {
    fn board(&mut self) -> Option<&mut dyn Board> {
        self.flash.as_mut().map(|f| f as &mut dyn Board)
    }
}

type Dev = Device<'static, Ctx, RamStore<'static, 2>>;

fn config() -> UpdateConfig {
    UpdateConfig {
        key: key(),
        board: board(),
        allow_downgrade: false,
    }
}

/// A device whose slot A holds the factory image 1.0.0, booted.
fn device() -> Dev {
    let mut flash = Flash::new();
    Slots::provision(&mut flash, Slot::A, &image(0, 0)).unwrap();
    let running = boot(&mut flash).unwrap();
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let config_ = DeviceConfig { name: "fw", window: 4 };
    let mut d = Device::new(config_, RamStore::new(mem), &[], Ctx { flash: Some(flash) }, N, 2);
    d.enable_update(config(), running);
    d
}

fn image(minor: u16, counter: u32) -> Vec<u8> {
    image_with(&signer(), minor, counter, board(), 900)
}

fn hash(image: &[u8]) -> Digest {
    Header::parse(image).unwrap().hash
}

/// One request; the answer's metadata bytes, or its error code and message.
fn ask<M: Serialize>(
    d: &mut Dev,
    conn: &mut Conn,
    kind: Kind,
    meta: &M,
    body: &[u8],
) -> Result<Vec<u8>, (ErrorCode, String)> {
    let mut wire = vec![0u8; N];
    let n = encode(&mut wire, FrameSpec::request(kind, 5), meta, body).unwrap();
    let frame = parse_datagram(&wire[..n], N).unwrap();
    let mut out = vec![0u8; N];
    let n = d.handle(conn, &frame, Transport::Session, &mut out);
    let answer = parse_datagram(&out[..n], N).unwrap();
    match answer.error() {
        Some(e) => Err((ErrorCode::from_u16(e.code).unwrap(), e.message.to_string())),
        None => Ok(answer.meta.to_vec()),
    }
}

fn status(d: &mut Dev) -> (u8, [(SlotState, Digest); 2]) {
    let meta = ask(d, &mut Conn::new(), Kind::FwStatus, &(), &[]).unwrap();
    let s: msg::FwState<'_> = postcard::from_bytes(&meta).unwrap();
    assert_eq!(s.board, "test-board");
    let state = |i: usize| {
        let code = s.slots[i].state;
        let st = [
            SlotState::Empty,
            SlotState::Receiving,
            SlotState::Pending,
            SlotState::Test,
            SlotState::Trial,
            SlotState::Active,
            SlotState::Confirmed,
            SlotState::Reverted,
        ][code as usize];
        (st, s.slots[i].hash)
    };
    (s.running, [state(0), state(1)])
}

fn begin(d: &mut Dev, conn: &mut Conn, image: &[u8]) -> Result<msg::PutReady, (ErrorCode, String)> {
    let req = msg::FwBegin {
        size: image.len() as u64,
        hash: hash(image),
    };
    ask(d, conn, Kind::FwBegin, &req, &[]).map(|m| postcard::from_bytes(&m).unwrap())
}

fn data(d: &mut Dev, conn: &mut Conn, offset: usize, chunk: &[u8]) -> Result<u64, (ErrorCode, String)> {
    let meta = ask(d, conn, Kind::FwData, &msg::PutData { offset: offset as u64 }, chunk)?;
    Ok(postcard::from_bytes::<msg::PutAck>(&meta).unwrap().received)
}

/// Uploads and commits `image` on one session; the commit's answer.
fn upload(d: &mut Dev, image: &[u8]) -> Result<Vec<u8>, (ErrorCode, String)> {
    let mut conn = Conn::new();
    let ready = begin(d, &mut conn, image)?;
    let mut at = ready.offset as usize;
    for chunk in image[at..].chunks(256) {
        assert_eq!(data(d, &mut conn, at, chunk)?, (at + chunk.len()) as u64);
        at += chunk.len();
    }
    let r = ask(d, &mut conn, Kind::FwCommit, &(), &[]);
    d.close(&mut conn);
    r
}

/// The device's reset: the board noted it; the next boot picks the slot.
fn reset(d: &mut Dev) {
    let resets = d.ctx.flash.as_ref().unwrap().resets;
    assert_eq!(ask(d, &mut Conn::new(), Kind::Reset, &(), &[]), Ok(vec![]));
    let flash = d.ctx.flash.as_mut().unwrap();
    assert_eq!(flash.resets, resets + 1);
    let running = boot(flash).unwrap();
    d.enable_update(config(), running);
}

#[test]
fn upload_test_reset_confirm() {
    let mut d = device();
    let (v0, v1) = (image(0, 0), image(1, 1));
    assert_eq!(
        status(&mut d),
        (0, [(SlotState::Active, hash(&v0)), (SlotState::Empty, [0; 32])])
    );
    upload(&mut d, &v1).unwrap();
    assert_eq!(status(&mut d).1[1], (SlotState::Pending, hash(&v1)));
    let test = msg::FwTest { hash: Some(hash(&v1)) };
    ask(&mut d, &mut Conn::new(), Kind::FwTest, &test, &[]).unwrap();
    assert_eq!(status(&mut d).1[1].0, SlotState::Test);
    reset(&mut d);
    assert_eq!(status(&mut d).0, 1, "the trial image runs");
    assert_eq!(d.running_image().map(|b| b.trial), Some(true));
    // While it is on trial nothing else is uploaded or tested.
    let (code, _) = begin(&mut d, &mut Conn::new(), &image(2, 1)).unwrap_err();
    assert_eq!(code, ErrorCode::Busy);
    ask(&mut d, &mut Conn::new(), Kind::FwConfirm, &(), &[]).unwrap();
    let (running, slots) = status(&mut d);
    assert_eq!(
        (running, slots[0].0, slots[1].0),
        (1, SlotState::Confirmed, SlotState::Active)
    );
    reset(&mut d);
    assert_eq!(status(&mut d).0, 1, "the confirmed image runs after a reset");
}

#[test]
fn an_unconfirmed_trial_reverts_at_the_next_reset_and_the_application_may_confirm() {
    let mut d = device();
    let v1 = image(1, 0);
    upload(&mut d, &v1).unwrap();
    ask(&mut d, &mut Conn::new(), Kind::FwTest, &msg::FwTest { hash: None }, &[]).unwrap();
    reset(&mut d);
    reset(&mut d);
    let (running, slots) = status(&mut d);
    assert_eq!(
        (running, slots[0].0, slots[1].0),
        (0, SlotState::Active, SlotState::Reverted)
    );
    // Tried again, the application confirms it itself (after its self-test).
    ask(&mut d, &mut Conn::new(), Kind::FwTest, &msg::FwTest { hash: None }, &[]).unwrap();
    reset(&mut d);
    assert_eq!(d.confirm_image(), Ok(true));
    assert_eq!(d.confirm_image(), Ok(false));
    assert_eq!(status(&mut d).1[1].0, SlotState::Active);
}

#[test]
fn an_upload_resumes_from_another_session_and_the_old_one_loses_it() {
    let mut d = device();
    let v1 = image(1, 0);
    let mut first = Conn::new();
    begin(&mut d, &mut first, &v1).unwrap();
    data(&mut d, &mut first, 0, &v1[..300]).unwrap();
    // Another image while the first session is open and uploading: busy.
    let (code, _) = begin(&mut d, &mut Conn::new(), &image(2, 0)).unwrap_err();
    assert_eq!(code, ErrorCode::Busy);
    // The same image from another session takes it over where it stands.
    let mut second = Conn::new();
    assert_eq!(begin(&mut d, &mut second, &v1).unwrap().offset, 300);
    let (code, _) = data(&mut d, &mut first, 300, &v1[300..400]).unwrap_err();
    assert_eq!(code, ErrorCode::NoTransfer);
    data(&mut d, &mut second, 300, &v1[300..600]).unwrap();
    // A chunk out of place writes nothing.
    assert_eq!(
        data(&mut d, &mut second, 700, &v1[700..710]).unwrap_err().0,
        ErrorCode::BadOffset
    );
    d.close(&mut second);
    // Suspended: any session resumes it, and another image may now replace it.
    let mut third = Conn::new();
    assert_eq!(begin(&mut d, &mut third, &v1).unwrap().offset, 600);
    data(&mut d, &mut third, 600, &v1[600..]).unwrap();
    ask(&mut d, &mut third, Kind::FwCommit, &(), &[]).unwrap();
    assert_eq!(status(&mut d).1[1], (SlotState::Pending, hash(&v1)));
}

#[test]
fn refused_images_leave_the_running_one_alone() {
    let other_signer = SigningKey::from_bytes(&[0x55; 32]);
    let cases = [
        (image_with(&other_signer, 1, 0, board(), 500), ErrorCode::BadSignature),
        (
            image_with(&signer(), 1, 0, BoardId::new("other").unwrap(), 500),
            ErrorCode::WrongBoard,
        ),
        (image_with(&signer(), 1, 0, BoardId::ANY, 500), ErrorCode::Downgrade),
    ];
    for (img, code) in cases {
        let mut d = device();
        // Confirm an image with counter 1 first, so that counter 0 is a downgrade.
        upload(&mut d, &image(2, 1)).unwrap();
        ask(&mut d, &mut Conn::new(), Kind::FwTest, &msg::FwTest { hash: None }, &[]).unwrap();
        reset(&mut d);
        ask(&mut d, &mut Conn::new(), Kind::FwConfirm, &(), &[]).unwrap();
        let before = status(&mut d);
        let flash_before = d.ctx.flash.as_ref().unwrap().slots[1].clone();
        assert_eq!(upload(&mut d, &img).unwrap_err().0, code);
        let after = status(&mut d);
        assert_eq!(
            (after.0, after.1[1]),
            (before.0, before.1[1]),
            "the running slot is untouched"
        );
        assert_eq!(after.1[0].0, SlotState::Empty, "the refused image is discarded");
        assert_eq!(d.ctx.flash.as_ref().unwrap().slots[1], flash_before);
    }
    // Any board is fine; a corrupted image is not.
    let mut d = device();
    let mut bad = image(1, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut conn = Conn::new();
    let good = image(1, 0);
    begin(&mut d, &mut conn, &good).unwrap();
    data(&mut d, &mut conn, 0, &bad).unwrap();
    let (code, _) = ask(&mut d, &mut conn, Kind::FwCommit, &(), &[]).unwrap_err();
    assert_eq!(code, ErrorCode::DigestMismatch);
    assert_eq!(status(&mut d).1[1].0, SlotState::Empty);
    let (code, _) = ask(&mut d, &mut Conn::new(), Kind::FwTest, &msg::FwTest { hash: None }, &[]).unwrap_err();
    assert_eq!(code, ErrorCode::NotFound);
    let any = image_with(&signer(), 1, 0, BoardId::ANY, 500);
    upload(&mut d, &any).unwrap();
    // Not a firmware image at all.
    let junk = vec![0x42u8; 600];
    let mut conn = Conn::new();
    let req = msg::FwBegin {
        size: 600,
        hash: [1; 32],
    };
    ask(&mut d, &mut conn, Kind::FwBegin, &req, &[]).unwrap();
    data(&mut d, &mut conn, 0, &junk).unwrap();
    assert_eq!(
        ask(&mut d, &mut conn, Kind::FwCommit, &(), &[]).unwrap_err().0,
        ErrorCode::DigestMismatch
    );
}

#[test]
fn a_device_without_a_board_has_no_update_service() {
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let config_ = DeviceConfig { name: "fw", window: 4 };
    let mut d: Dev = Device::new(config_, RamStore::new(mem), &[], Ctx { flash: None }, N, 2);
    for kind in [Kind::FwStatus, Kind::Reset] {
        let (code, message) = ask(&mut d, &mut Conn::new(), kind, &(), &[]).unwrap_err();
        assert_eq!(code, ErrorCode::UnknownKind);
        assert!(message.contains("no firmware update service"), "{message}");
    }
}
