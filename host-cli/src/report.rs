//! How results, notes, progress and errors reach the user: human text or JSON lines.

use std::io::IsTerminal;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tether_host::ClientError;

/// Output settings for one run.
pub struct Reporter {
    json: bool,
    quiet: bool,
    verbose: bool,
    tty: bool,
}

impl Reporter {
    pub fn new(json: bool, quiet: bool, verbose: bool) -> Self {
        Reporter {
            json,
            quiet,
            verbose,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// A result: `human` for people, `value` for `--json`.
    pub fn result(&self, human: impl std::fmt::Display, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    }

    /// A remark on stderr, for people only.
    pub fn note(&self, msg: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            eprintln!("{msg}");
        }
    }

    /// A remark shown with `-v` only.
    pub fn detail(&self, msg: impl std::fmt::Display) {
        if self.verbose && !self.json {
            eprintln!("{msg}");
        }
    }

    /// A progress bar for `total` bytes, on a terminal only.
    pub fn progress(&self, total: u64, label: &str) -> Option<ProgressBar> {
        if !self.tty || self.quiet || self.json {
            return None;
        }
        let bar = ProgressBar::new(total);
        let style =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        Some(bar)
    }

    /// Reports a failure and picks the exit code: 1 device error, 2 usage or local problem,
    /// 3 connection failure or timeout.
    pub fn fail(&self, e: &ClientError) -> ExitCode {
        let (code, kind) = match e {
            ClientError::Device { .. } | ClientError::Protocol(_) => (1, "device"),
            ClientError::Local(_) => (2, "local"),
            ClientError::Connection(_) => (3, "connection"),
        };
        if self.json {
            let device_code = match e {
                ClientError::Device { code, .. } => json!(code),
                _ => Value::Null,
            };
            println!(
                "{}",
                json!({"ok": false, "error": {"kind": kind, "code": device_code, "message": e.to_string()}})
            );
        }
        eprintln!("error: {e}");
        ExitCode::from(code)
    }
}
