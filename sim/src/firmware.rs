//! The simulated board's firmware slots (`sim --fw-key KEY.pub`): two slots and the two copies
//! of the state record in files, so that they survive a reboot and a new process like flash.
//!
//! The simulator runs no image. It keeps the slots, the record and the state machine of
//! `tether_core::update` exactly as a board does, and `reset` boots "the image the slots pick":
//! the device then reports that image's slot and version (`FwStatus`, `host-cli fw status`,
//! `host-cli info`), so the whole update flow can be rehearsed against it. A fresh slot store
//! starts with a built-in image, version 0.0.0, in slot 0.
//!
//! Files, in `DIR` (`--root`'s `.tether-fw/`, or a temporary directory): `slot0`, `slot1` (the
//! slots, [`SLOT_SIZE`] bytes at most), `record0`, `record1` (the record's copies).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use tether_core::service::update::UpdateConfig;
use tether_core::update::{
    boot, Board, BoardId, Boot, Fault, Header, Semver, Slot, SlotStore, Slots, UpdateError, RECORD_LEN,
};

/// Each slot's size: the largest image the simulated board takes.
pub const SLOT_SIZE: u32 = 4 << 20;
/// The simulated board's id (`sim --fw-board`).
pub const BOARD: &str = "tether-sim";
/// The body of the built-in image.
pub const BUILTIN_BODY: &[u8] = b"tether-sim built-in image: the simulator runs no image\n";

/// The built-in image a fresh slot store starts with: version 0.0.0, security counter 0, for any
/// board, unsigned (it stands for the image a board was flashed with at the factory; images are
/// signed only to be sent to a device).
pub fn builtin_image() -> Vec<u8> {
    let header = Header::for_body(Semver::new(0, 0, 0), 0, BoardId::ANY, 0, BUILTIN_BODY);
    let mut image = header.to_bytes().to_vec();
    image.extend_from_slice(BUILTIN_BODY);
    image
}

/// The slots and the record in files.
#[derive(Debug)]
pub struct FileSlots {
    dir: PathBuf,
    slots: [File; 2],
    reset: bool,
}

fn fault(e: io::Error) -> Fault {
    log::warn!("firmware slots: {e}");
    Fault::Io
}

impl FileSlots {
    /// Opens (creating) the slot files in `dir`.
    pub fn open(dir: &Path) -> io::Result<FileSlots> {
        fs::create_dir_all(dir)?;
        let open = |name: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(name))
        };
        Ok(FileSlots {
            dir: dir.to_path_buf(),
            slots: [open("slot0")?, open("slot1")?],
            reset: false,
        })
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a `Reset` was asked for since the last call.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }

    fn record_path(&self, copy: usize) -> PathBuf {
        self.dir.join(format!("record{copy}"))
    }
}

impl SlotStore for FileSlots {
    fn slot_size(&self) -> u32 {
        SLOT_SIZE
    }

    fn read(&mut self, slot: Slot, offset: u32, buf: &mut [u8]) -> Result<(), Fault> {
        // Bytes past the end of a file were never written: erased flash reads 0xff.
        let f = &self.slots[slot.index()];
        let len = f.metadata().map_err(fault)?.len();
        buf.fill(0xff);
        let start = u64::from(offset);
        if start < len {
            let n = ((len - start) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], start).map_err(fault)?;
        }
        Ok(())
    }

    fn write(&mut self, slot: Slot, offset: u32, data: &[u8]) -> Result<(), Fault> {
        if u64::from(offset) + data.len() as u64 > u64::from(SLOT_SIZE) {
            return Err(Fault::Io);
        }
        self.slots[slot.index()]
            .write_all_at(data, u64::from(offset))
            .map_err(fault)
    }

    fn erase(&mut self, slot: Slot) -> Result<(), Fault> {
        self.slots[slot.index()].set_len(0).map_err(fault)
    }

    fn read_record(&mut self, copy: usize, buf: &mut [u8; RECORD_LEN]) -> Result<(), Fault> {
        match fs::read(self.record_path(copy)) {
            Ok(bytes) if bytes.len() == RECORD_LEN => buf.copy_from_slice(&bytes),
            Ok(_) => buf.fill(0xff),
            Err(e) if e.kind() == io::ErrorKind::NotFound => buf.fill(0xff),
            Err(e) => return Err(fault(e)),
        }
        Ok(())
    }

    fn write_record(&mut self, copy: usize, record: &[u8; RECORD_LEN]) -> Result<(), Fault> {
        // In place, like flash: a copy cut short by a kill is what the other copy is for.
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.record_path(copy))
            .map_err(fault)?;
        f.write_all_at(record, 0).map_err(fault)?;
        f.sync_data().map_err(fault)
    }
}

impl Board for FileSlots {
    fn schedule_reset(&mut self) {
        self.reset = true;
    }

    fn start_watchdog(&mut self) {
        log::info!("firmware: watchdog started for the trial boot (the simulator runs no image: it cannot hang)");
    }
}

/// The simulated board's firmware: its slots and how it takes updates.
#[derive(Debug)]
pub struct Firmware {
    /// The slots.
    pub slots: FileSlots,
    /// The key, board id and downgrade setting.
    pub config: UpdateConfig,
}

impl Firmware {
    /// Opens the slots in `dir`, provisions the built-in image into slot 0 if they were never
    /// used, and boots: returns the firmware and the image the boot picked.
    pub fn start(dir: &Path, config: UpdateConfig) -> Result<(Firmware, Boot), String> {
        let mut slots = FileSlots::open(dir).map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
        match Slots::open(&mut slots) {
            Ok(_) => {}
            Err(UpdateError::NoRecord) => {
                Slots::provision(&mut slots, Slot::A, &builtin_image()).map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
        let mut fw = Firmware { slots, config };
        let running = fw.boot()?;
        Ok((fw, running))
    }

    /// A boot: the state machine picks the slot (a trial that was reset before it confirmed is
    /// reverted) and the simulator "runs" it.
    pub fn boot(&mut self) -> Result<Boot, String> {
        let running = boot(&mut self.slots).map_err(|e| format!("boot: {e}"))?;
        log::info!("firmware: {}", self.describe(running));
        Ok(running)
    }

    /// `slot N runs X.Y.Z` (and `on trial`).
    pub fn describe(&mut self, running: Boot) -> String {
        let version = Slots::open(&mut self.slots)
            .map(|s| s.record().slot(running.slot).version.to_string())
            .unwrap_or_else(|_| "?".into());
        let trial = if running.trial { " on trial" } else { "" };
        format!("slot {} runs {version}{trial}", running.slot.index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::update::{ImageKey, SlotState};

    #[test]
    fn a_fresh_store_runs_the_builtin_image_and_keeps_its_record_across_opens() {
        let dir = std::env::temp_dir().join(format!("tether-fw-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let config = UpdateConfig {
            // RFC 8032's first test key.
            key: ImageKey::from_bytes(
                tether_core::secure::Psk::from_hex(b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap(),
            board: BoardId::new(BOARD).unwrap(),
            allow_downgrade: false,
        };
        let (mut fw, running) = Firmware::start(&dir, config).unwrap();
        assert_eq!(
            running,
            Boot {
                slot: Slot::A,
                trial: false
            }
        );
        assert_eq!(fw.describe(running), "slot 0 runs 0.0.0");
        let record = *Slots::open(&mut fw.slots).unwrap().record();
        assert_eq!(record.slot(Slot::A).state, SlotState::Active);
        // Erased bytes read 0xff; a reset request is noted once.
        let mut buf = [0u8; 4];
        fw.slots.read(Slot::B, 100, &mut buf).unwrap();
        assert_eq!(buf, [0xff; 4]);
        fw.slots.schedule_reset();
        assert!(fw.slots.take_reset() && !fw.slots.take_reset());
        drop(fw);
        let (mut again, _) = Firmware::start(&dir, config).unwrap();
        assert_eq!(Slots::open(&mut again.slots).unwrap().record().seq, record.seq);
        let _ = fs::remove_dir_all(&dir);
    }
}
