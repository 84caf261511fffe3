//! The slot state machine (`tether_core::update`) on a simulated flash that can lose power after
//! any write step: test, confirm and revert do what PROTOCOL.md §18.4 says, and a power cut at
//! every step of a long update history leaves a record that is one of those the history wrote
//! and a board that boots an image that checks.

#![cfg(feature = "update")]

mod common;

use common::flash::{board, image_with, key, signer, Flash, GRAIN, SLOT_SIZE};
use ed25519_dalek::SigningKey;
use tether_core::update::image::{Acceptance, HEADER_LEN};
use tether_core::update::{
    boot, BoardId, Boot, Header, ImageError, ImageHasher, ImageKey, Slot, SlotState, Slots, UpdateError, RECORD_LEN,
};

/// A boot of `slot`, on trial or not.
const fn boot_of(slot: Slot, trial: bool) -> Boot {
    Boot { slot, trial }
}

/// The boot of each slot as the confirmed image, and on trial.
const RUNS_A: Boot = boot_of(Slot::A, false);
const RUNS_B: Boot = boot_of(Slot::B, false);
const TRIAL_B: Boot = boot_of(Slot::B, true);

/// Image 1.`minor`.0 with security counter `counter`, signed with [`signer`] for [`board`]
/// (made once: signing in a debug build is slow, and the power-cut test needs many).
fn image(minor: u16, counter: u32) -> Vec<u8> {
    type Made = Vec<((u16, u32), Vec<u8>)>;
    static MADE: std::sync::Mutex<Made> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap();
    if let Some((_, img)) = made.iter().find(|(k, _)| *k == (minor, counter)) {
        return img.clone();
    }
    let img = image_with(&signer(), minor, counter, board(), 700 + 100 * minor as usize);
    made.push(((minor, counter), img.clone()));
    img
}

fn hash_of(image: &[u8]) -> [u8; 32] {
    Header::parse(image).unwrap().hash
}

fn accept<'k>(key: &'k ImageKey, floor: u32) -> Acceptance<'k> {
    Acceptance {
        key,
        board: board(),
        floor,
        allow_downgrade: false,
        load_address: None,
        slot_size: SLOT_SIZE as u32,
    }
}

/// A board provisioned with image 1.0.0 (counter 0) in slot A.
fn provisioned() -> Flash {
    let mut f = Flash::new();
    Slots::provision(&mut f, Slot::A, &image(0, 0)).unwrap();
    f.written.clear();
    f.steps = 0;
    f
}

/// Uploads `img` into the slot that is not running, in 100-byte chunks, checkpointing every 300
/// bytes; the image hash is computed as the service does, from the bytes streamed.
fn upload(f: &mut Flash, running: Boot, img: &[u8], floor_key: &ImageKey) -> Result<Slot, UpdateError> {
    let mut slots = Slots::open(f)?;
    let floor = slots.record().floor;
    let (slot, held) = slots.begin(running, img.len() as u32, hash_of(img))?;
    let mut hasher = ImageHasher::new();
    hasher.update(&img[..held as usize]);
    let mut at = held as usize;
    for piece in img[held as usize..].chunks(100) {
        slots.write(slot, at as u32, piece)?;
        hasher.update(piece);
        at += piece.len();
        if at.is_multiple_of(300) {
            slots.checkpoint(slot, at as u32)?;
        }
    }
    slots.finish(slot, &hasher.finish(), &accept(floor_key, floor))?;
    Ok(slot)
}

fn test(f: &mut Flash, running: Boot, hash: Option<&[u8; 32]>) -> Result<Slot, UpdateError> {
    let key = key();
    let mut slots = Slots::open(f)?;
    let floor = slots.record().floor;
    slots.test(running, hash, &accept(&key, floor))
}

fn confirm(f: &mut Flash, running: Boot) -> Result<bool, UpdateError> {
    Slots::open(f)?.confirm(running)
}

fn state(f: &mut Flash, slot: Slot) -> SlotState {
    Slots::open(f).unwrap().record().slot(slot).state
}

/// A provisioned board running slot A, with image 1.1.0 uploaded into slot B and marked by `test`.
fn marked_for_trial() -> (Flash, Boot) {
    let mut f = provisioned();
    let running = boot(&mut f).unwrap();
    upload(&mut f, running, &image(1, 0), &key()).unwrap();
    test(&mut f, running, None).unwrap();
    (f, running)
}

#[test]
fn test_boots_once_and_confirm_keeps_it() {
    let mut f = provisioned();
    let running = boot(&mut f).unwrap();
    assert_eq!(running, RUNS_A);
    let v1 = image(1, 1);
    assert_eq!(upload(&mut f, running, &v1, &key()), Ok(Slot::B));
    assert_eq!(state(&mut f, Slot::B), SlotState::Pending);
    // Pending is never booted: a reset changes nothing.
    assert_eq!(boot(&mut f).unwrap(), running);
    assert_eq!(test(&mut f, running, Some(&hash_of(&v1))), Ok(Slot::B));
    assert_eq!(f.watchdogs, 0);
    let trial = boot(&mut f).unwrap();
    assert_eq!(trial, TRIAL_B);
    assert_eq!(f.watchdogs, 1, "a trial boot starts the watchdog");
    assert_eq!(state(&mut f, Slot::B), SlotState::Trial);
    // While on trial, nothing else can be tested or uploaded.
    assert_eq!(test(&mut f, trial, None), Err(UpdateError::TrialRunning));
    assert_eq!(
        upload(&mut f, trial, &image(2, 1), &key()),
        Err(UpdateError::TrialRunning)
    );
    assert_eq!(confirm(&mut f, trial), Ok(true));
    assert_eq!(
        confirm(&mut f, Boot { trial: false, ..trial }),
        Ok(false),
        "confirming again changes nothing"
    );
    let r = *Slots::open(&mut f).unwrap().record();
    assert_eq!(
        (r.slot(Slot::B).state, r.slot(Slot::A).state),
        (SlotState::Active, SlotState::Confirmed)
    );
    assert_eq!(r.floor, 1, "the floor rises to the confirmed image's counter");
    assert_eq!(boot(&mut f).unwrap(), RUNS_B);
    assert_eq!(f.watchdogs, 1);
}

#[test]
fn a_trial_reset_before_it_confirms_reverts() {
    let mut f = provisioned();
    let running = boot(&mut f).unwrap();
    let v1 = image(1, 0);
    upload(&mut f, running, &v1, &key()).unwrap();
    test(&mut f, running, None).unwrap();
    assert_eq!(boot(&mut f).unwrap(), TRIAL_B);
    assert_eq!(boot(&mut f).unwrap(), RUNS_A);
    assert_eq!(state(&mut f, Slot::B), SlotState::Reverted);
    assert_eq!(state(&mut f, Slot::A), SlotState::Active);
    // A reverted image can be tried again.
    assert_eq!(test(&mut f, running, Some(&hash_of(&v1))), Ok(Slot::B));
    assert_eq!(boot(&mut f).unwrap(), TRIAL_B);
}

#[test]
fn a_trial_image_damaged_before_its_boot_is_reverted_without_running() {
    let (mut f, running) = marked_for_trial();
    f.slots[Slot::B.index()][HEADER_LEN + 1] ^= 1;
    assert_eq!(boot(&mut f).unwrap(), running);
    assert_eq!(state(&mut f, Slot::B), SlotState::Reverted);
    assert_eq!(f.watchdogs, 0, "nothing ran on trial");
}

#[test]
fn test_names_the_image_and_checks_it_again() {
    let mut f = provisioned();
    let running = boot(&mut f).unwrap();
    assert_eq!(
        test(&mut f, running, None),
        Err(UpdateError::NoImage),
        "slot B is empty"
    );
    let v1 = image(1, 0);
    upload(&mut f, running, &v1, &key()).unwrap();
    assert_eq!(test(&mut f, running, Some(&[7; 32])), Err(UpdateError::NoImage));
    assert_eq!(
        test(&mut f, running, Some(&hash_of(&image(0, 0)))),
        Err(UpdateError::IsRunning)
    );
    // Damaged after it arrived: test hashes it again and refuses.
    let mut damaged = f.clone();
    damaged.slots[1][HEADER_LEN + 3] ^= 1;
    assert_eq!(
        test(&mut damaged, running, None),
        Err(UpdateError::Image(ImageError::Hash))
    );
    assert_eq!(state(&mut damaged, Slot::B), SlotState::Pending);
    assert_eq!(test(&mut f, running, None), Ok(Slot::B));
    assert_eq!(test(&mut f, running, None), Ok(Slot::B), "testing again is harmless");
}

#[test]
fn refused_images_are_discarded_and_the_running_one_is_untouched() {
    let key = key();
    let other = SigningKey::from_bytes(&[0x43; 32]);
    let cases: [(Vec<u8>, ImageError); 3] = [
        (image_with(&other, 1, 0, board(), 500), ImageError::Signature),
        (
            image_with(&signer(), 1, 0, BoardId::new("other-board").unwrap(), 500),
            ImageError::WrongBoard,
        ),
        (image(1, 0), ImageError::Downgrade),
    ];
    for (img, err) in cases {
        let mut f = provisioned();
        // Raise the floor to 1 by confirming an image with counter 1.
        let running = boot(&mut f).unwrap();
        upload(&mut f, running, &image(2, 1), &key).unwrap();
        test(&mut f, running, None).unwrap();
        let running = boot(&mut f).unwrap();
        confirm(&mut f, running).unwrap();
        let running = Boot {
            trial: false,
            ..running
        };
        let before = f.slots[running.slot.index()].clone();
        assert_eq!(upload(&mut f, running, &img, &key), Err(UpdateError::Image(err)));
        assert_eq!(state(&mut f, running.slot.other()), SlotState::Empty);
        assert_eq!(f.slots[running.slot.index()], before);
        assert_eq!(boot(&mut f).unwrap(), running);
    }
    // A corrupted upload: the bytes do not hash to what was announced.
    let mut f = provisioned();
    let running = boot(&mut f).unwrap();
    let img = image(1, 0);
    let mut slots = Slots::open(&mut f).unwrap();
    let (slot, _) = slots.begin(running, img.len() as u32, hash_of(&img)).unwrap();
    let mut bad = img.clone();
    bad[HEADER_LEN + 10] ^= 0x80;
    slots.write(slot, 0, &bad).unwrap();
    let mut hasher = ImageHasher::new();
    hasher.update(&bad);
    let accepted = accept(&key, 0);
    assert_eq!(
        slots.finish(slot, &hasher.finish(), &accepted),
        Err(UpdateError::Image(ImageError::Hash))
    );
    assert_eq!(state(&mut f, Slot::B), SlotState::Empty);
    // Too large for the slot: refused before anything is written.
    let mut slots = Slots::open(&mut f).unwrap();
    assert_eq!(
        slots.begin(running, SLOT_SIZE as u32 + 1, [0; 32]),
        Err(UpdateError::Image(ImageError::TooLarge))
    );
}

#[test]
fn an_upload_resumes_from_its_checkpoint_after_a_restart() {
    let mut f = provisioned();
    let running = boot(&mut f).unwrap();
    let img = image(3, 0);
    let hash = hash_of(&img);
    {
        let mut slots = Slots::open(&mut f).unwrap();
        let (slot, held) = slots.begin(running, img.len() as u32, hash).unwrap();
        assert_eq!(held, 0);
        slots.write(slot, 0, &img[..600]).unwrap();
        slots.checkpoint(slot, 600).unwrap();
        slots.write(slot, 600, &img[600..650]).unwrap();
    }
    // The power goes; after the restart the same upload resumes from the checkpoint.
    let mut f = f.power_on();
    let running = boot(&mut f).unwrap();
    let mut slots = Slots::open(&mut f).unwrap();
    assert_eq!(slots.begin(running, img.len() as u32, hash), Ok((Slot::B, 600)));
    // Another image starts again from 0.
    let other = image(4, 0);
    assert_eq!(
        slots.begin(running, other.len() as u32, hash_of(&other)),
        Ok((Slot::B, 0))
    );
}

#[test]
fn a_damaged_active_image_falls_back_to_the_confirmed_one() {
    let (mut f, _) = marked_for_trial();
    let trial = boot(&mut f).unwrap();
    confirm(&mut f, trial).unwrap();
    f.slots[Slot::B.index()][HEADER_LEN] ^= 1;
    assert_eq!(boot(&mut f).unwrap(), RUNS_A);
    assert_eq!(state(&mut f, Slot::A), SlotState::Active);
    assert_eq!(state(&mut f, Slot::B), SlotState::Empty);
    f.slots[Slot::A.index()][HEADER_LEN] ^= 1;
    assert_eq!(boot(&mut f), Err(UpdateError::NothingBootable));
    assert!(matches!(Slots::open(&mut Flash::new()), Err(UpdateError::NoRecord)));
}

/// One step of an update history.
#[derive(Debug, Clone, Copy)]
enum Op {
    Boot,
    Upload(u16, u32),
    Test,
    Confirm,
}

/// A long history: update to 1.1 and confirm it, try 1.2 and revert it, try it again and
/// confirm it.
const HISTORY: [Op; 13] = [
    Op::Boot,
    Op::Upload(1, 1),
    Op::Test,
    Op::Boot,
    Op::Confirm,
    Op::Boot,
    Op::Upload(2, 2),
    Op::Test,
    Op::Boot,
    Op::Boot,
    Op::Test,
    Op::Boot,
    Op::Confirm,
];

/// Runs the history on `f` until the power goes (an error).
fn run(f: &mut Flash) -> Result<(), UpdateError> {
    let key = key();
    let mut running = Boot {
        slot: Slot::A,
        trial: false,
    };
    for op in HISTORY {
        match op {
            Op::Boot => running = boot(f)?,
            Op::Upload(minor, counter) => {
                upload(f, running, &image(minor, counter), &key)?;
            }
            Op::Test => {
                test(f, running, None)?;
            }
            Op::Confirm => {
                confirm(f, running)?;
                running.trial = false;
            }
        }
    }
    Ok(())
}

#[test]
fn a_power_cut_at_every_write_step_leaves_a_bootable_board() {
    let mut whole = provisioned();
    let start = *Slots::open(&mut whole).unwrap().record();
    run(&mut whole).unwrap();
    let total = whole.steps;
    let mut records = vec![start];
    records.extend(whole.written.iter().copied());
    let images: Vec<[u8; 32]> = [image(0, 0), image(1, 1), image(2, 2)]
        .iter()
        .map(|i| hash_of(i))
        .collect();
    assert!(total > 300, "the history writes in many steps ({total})");
    for cut in 0..=total {
        let mut f = provisioned();
        f.budget = Some(cut);
        let finished = run(&mut f).is_ok();
        assert_eq!(finished, cut == total, "cut after {cut} of {total} steps");
        let mut f = f.power_on();
        // The record is one the history wrote whole: never a mix, never a lost one.
        let found = *Slots::open(&mut f).expect("a record survives").record();
        assert!(records.contains(&found), "cut after {cut}: {found:?}");
        // The board boots an image that checks, twice in a row (the second boot may revert).
        for _ in 0..2 {
            let b = boot(&mut f).unwrap_or_else(|e| panic!("cut after {cut}: {e}"));
            let mut slots = Slots::open(&mut f).unwrap();
            let entry = *slots.record().slot(b.slot);
            assert!(images.contains(&entry.hash), "cut after {cut}: boots an unknown image");
            assert!(slots.verify(b.slot).is_ok(), "cut after {cut}");
            let expected = if b.trial { SlotState::Trial } else { SlotState::Active };
            assert_eq!(entry.state, expected, "cut after {cut}");
        }
    }
}

/// A power cut inside the record write itself, at every step, with the other copy older: the
/// reader gets the old record or the new one.
#[test]
fn a_record_write_cut_anywhere_leaves_the_old_or_the_new_record() {
    let mut f = provisioned();
    let old = *Slots::open(&mut f).unwrap().record();
    let running = boot(&mut f).unwrap();
    let steps_before = f.steps;
    let mut probe = f.clone();
    upload(&mut probe, running, &image(1, 0), &key()).unwrap();
    let first_write = probe.steps - steps_before;
    assert!(first_write > RECORD_LEN / GRAIN);
    for cut in 0..=(RECORD_LEN / GRAIN + 1) {
        let mut g = f.clone();
        g.budget = Some(cut);
        let _ = Slots::open(&mut g).unwrap().begin(running, 900, [1; 32]);
        let mut g = g.power_on();
        let r = *Slots::open(&mut g).unwrap().record();
        let new = r.slot(Slot::B).state == SlotState::Receiving;
        assert!(new || r.slots == old.slots, "cut {cut}: {r:?}");
        assert_eq!(new, cut > RECORD_LEN / GRAIN, "cut {cut}");
    }
}
