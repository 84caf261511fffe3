//! Ctrl-C: what an interrupted run tells the device, says, and leaves behind.
//!
//! One handler for the whole run, installed before the first command talks to a device. On
//! SIGINT it
//!
//! 1. tells a device on a serial line to stop what it streams ([`tether_host::serial::abandon`]):
//!    a line has no connection whose end would do that, and an abandoned download would hold the
//!    line for the rest of the file;
//! 2. stops the writes to a download's `.part` file ([`PartFile`]), so that what it reports is
//!    what the file holds;
//! 3. reports what the command set with [`on_interrupt`] (a transfer: what was kept and how to
//!    resume), or just "interrupted", and exits with 130.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use crate::report::{failure_json, FailKind, Failure};

/// What an interrupt reports, set while a command runs.
type Report = Box<dyn Fn() -> Failure + Send>;
static REPORT: Mutex<Option<Report>> = Mutex::new(None);

/// Held by every write to a `.part` file, and by the handler from the moment it starts: after
/// that no byte reaches the file.
static PART_WRITES: Mutex<()> = Mutex::new(());

/// Installs the handler once; `json` picks the form of its report.
pub fn install(json: bool) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(move || handle(json));
    });
}

fn handle(json: bool) {
    tether_host::serial::abandon();
    // Kept until the process exits: the file stays as reported.
    let _writes = PART_WRITES.lock();
    let f = match REPORT.lock().ok().as_ref().and_then(|s| s.as_ref()) {
        Some(report) => report(),
        None => Failure::new(FailKind::Interrupted, "interrupted"),
    };
    if json {
        println!("{}", failure_json(&f));
    } else {
        // A progress bar may own the line: start a fresh one.
        eprintln!("\nerror: {}", f.message);
        if let Some(h) = &f.hint {
            eprintln!("hint: {h}");
        }
    }
    std::process::exit(130);
}

/// What a Ctrl-C from now on reports (until [`clear`]).
pub fn on_interrupt(report: impl Fn() -> Failure + Send + 'static) {
    if let Ok(mut slot) = REPORT.lock() {
        *slot = Some(Box::new(report));
    }
}

/// Back to the plain "interrupted".
pub fn clear() {
    if let Ok(mut slot) = REPORT.lock() {
        *slot = None;
    }
}

/// A download's `.part` file: every write is whole or not made at all when Ctrl-C comes, so the
/// size the interrupt reports is the size the file keeps.
pub struct PartFile(pub File);

impl Write for PartFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _writing = PART_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
