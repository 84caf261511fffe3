//! How results, notes, progress and errors reach the user: human text or JSON lines.
//!
//! Human mode: results on stdout, notes and errors on stderr. `--json`: every result and every
//! error is one JSON object on stdout, and nothing goes to stderr (see docs/CLI.md for the
//! schema).

use std::cell::{Cell, RefCell};
use std::io::IsTerminal;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use tether_core::wire::ErrorCode;
use tether_host::ClientError;

/// What kind of failure, which fixes the exit code (see [`crate::cli::EXIT_CODES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// The device refused the request.
    Device,
    /// Bad flags, arguments, names or config.
    Usage,
    /// Cannot reach the device, it timed out, or the connection broke.
    Connection,
    /// The link (a serial line, or whatever sits under TCP) damaged or lost frames faster than
    /// the transfer could recover them.
    Link,
    /// The link delivered only damaged frames for a whole timeout (a wrong baud rate).
    Garbled,
    /// The peer does not speak Tether.
    NotTether,
    /// A local file problem.
    Local,
    /// The device broke the protocol.
    Protocol,
    /// An exec'd command exited with a non-zero status.
    Command,
    /// Ctrl-C.
    Interrupted,
    /// No secure session: a key is required, refused, or not proven by the device.
    Auth,
    /// `fw update`: the new image did not stay; the device went back to the previous one.
    Reverted,
}

impl FailKind {
    /// The name in `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            FailKind::Device => "device",
            FailKind::Usage => "usage",
            FailKind::Connection => "connection",
            FailKind::Link | FailKind::Garbled => "link",
            FailKind::NotTether => "not_tether",
            FailKind::Local => "local",
            FailKind::Protocol => "protocol",
            FailKind::Command => "command",
            FailKind::Interrupted => "interrupted",
            FailKind::Auth => "auth",
            FailKind::Reverted => "reverted",
        }
    }
}

/// The exit code for an exec'd command's non-zero status: 10 + status for 1..=115, else 126.
pub fn exec_exit_code(status: i32) -> u8 {
    match status {
        1..=115 => (status + 10) as u8,
        _ => 126,
    }
}

/// A failed run: what failed and where, what to try, and the details scripts need.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The class, which fixes the exit code.
    pub kind: FailKind,
    /// What failed, where.
    pub message: String,
    /// What to try.
    pub hint: Option<String>,
    /// The protocol error code, for device refusals.
    pub device_code: Option<u16>,
    /// The exec'd command's status.
    pub status: Option<i32>,
    /// Extra fields for `--json` (e.g. the output of a failed command).
    pub extra: Map<String, Value>,
    /// The client's error this failure reports, if it is one: hints are chosen by its variant.
    pub source: Option<ClientError>,
}

impl Failure {
    pub fn new(kind: FailKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            hint: None,
            device_code: None,
            status: None,
            extra: Map::new(),
            source: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(FailKind::Usage, message)
    }

    pub fn local(message: impl Into<String>) -> Self {
        Failure::new(FailKind::Local, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Marks the failure with the device's error code it amounts to (a refusal host-cli makes on
    /// the device's behalf, knowing what it would say).
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.device_code = Some(code as u16);
        self
    }

    /// Adds a hint unless there is one.
    pub fn or_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint.get_or_insert_with(|| hint.into());
        self
    }

    /// The device error code, if this is a device refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        self.device_code.and_then(ErrorCode::from_u16)
    }

    pub fn exit_code(&self) -> u8 {
        match self.kind {
            FailKind::Device => 1,
            FailKind::Usage => 2,
            FailKind::Connection | FailKind::Link | FailKind::Garbled | FailKind::NotTether => 3,
            FailKind::Local => 4,
            FailKind::Protocol => 5,
            FailKind::Auth => 6,
            FailKind::Reverted => 7,
            FailKind::Command => exec_exit_code(self.status.unwrap_or(0)),
            FailKind::Interrupted => 130,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let kind = match &e {
            ClientError::Device { .. } | ClientError::Full(_) => FailKind::Device,
            ClientError::Connection { .. } => FailKind::Connection,
            ClientError::Link(_) => FailKind::Link,
            ClientError::Garbled(_) => FailKind::Garbled,
            ClientError::NotTether(_) => FailKind::NotTether,
            ClientError::Protocol(_) => FailKind::Protocol,
            ClientError::Local(_) => FailKind::Local,
            ClientError::Usage(_) => FailKind::Usage,
            ClientError::Auth(_) => FailKind::Auth,
        };
        let mut f = Failure::new(kind, e.to_string());
        f.device_code = e.code().map(|c| c as u16);
        if let ClientError::Device { code, .. } = e {
            // Also a code this client does not know.
            f.device_code = Some(code);
        }
        if e.is_timeout() {
            f.hint = Some("raise --timeout if the device is slow, or check that it is up".into());
        }
        f.source = Some(e);
        f
    }
}

/// Output settings for one run, and the safety facts its results carry.
pub struct Reporter {
    json: bool,
    quiet: bool,
    verbose: bool,
    tty: bool,
    /// Whether the device is open (has no key), once the run knows: every `--json` result and
    /// failure then carries it as `"open_device"`.
    open_device: Cell<Option<bool>>,
    /// Warnings given in `--json` mode, where stderr stays empty: they go into the result as
    /// `"warnings"`.
    warnings: RefCell<Vec<String>>,
    /// Whether the open-device warning was shown (once a run).
    warned_open: Cell<bool>,
    /// A capturing reporter's results and items, (human text, JSON), instead of printing them
    /// (one device of a fan-out, see [`Reporter::capturing`]).
    captured: Option<RefCell<Vec<(String, Value)>>>,
}

impl Reporter {
    pub fn new(json: bool, quiet: bool, verbose: bool) -> Self {
        Reporter {
            json,
            quiet,
            verbose,
            tty: std::io::stderr().is_terminal(),
            open_device: Cell::new(None),
            warnings: RefCell::new(Vec::new()),
            warned_open: Cell::new(false),
            captured: None,
        }
    }

    /// A reporter that prints nothing and keeps every result and item for
    /// [`Reporter::take_captured`]: commands run as with `--json` (their whole output in the
    /// result, no progress, warnings in the result).
    pub fn capturing() -> Self {
        Reporter {
            tty: false,
            captured: Some(RefCell::new(Vec::new())),
            ..Reporter::new(true, true, false)
        }
    }

    /// What a capturing reporter kept, in order: (human text, JSON object).
    pub fn take_captured(&self) -> Vec<(String, Value)> {
        self.captured.as_ref().map(|c| c.take()).unwrap_or_default()
    }

    /// The `--json` object of a failure, with the safety fields (what [`Reporter::fail`] prints).
    pub fn failure_value(&self, f: &Failure) -> Value {
        self.with_safety(failure_json(f))
    }

    /// Keeps a result or item of a capturing reporter; false when this one prints.
    fn keep(&self, human: impl std::fmt::Display, value: &Value) -> bool {
        match &self.captured {
            Some(c) => {
                c.borrow_mut().push((human.to_string(), value.clone()));
                true
            }
            None => false,
        }
    }

    /// Records whether the device is open (has no key). The first time it is open, `warning`
    /// is shown: on stderr for people (even with `--quiet`), and in `--json` mode as the
    /// result's `"open_device": true` (every result then says `"open_device"` either way).
    pub fn device_open(&self, open: bool, warning: impl std::fmt::Display) {
        self.open_device.set(Some(open));
        if open && !self.warned_open.replace(true) && !self.json {
            eprintln!("warning: {warning}");
        }
    }

    /// The safety fields of a `--json` object: `open_device` and `warnings`.
    fn safety(&self, m: &mut Map<String, Value>) {
        if let Some(open) = self.open_device.get() {
            m.insert("open_device".into(), json!(open));
        }
        let w = self.warnings.borrow();
        if !w.is_empty() {
            m.insert("warnings".into(), json!(*w));
        }
    }

    fn with_safety(&self, value: Value) -> Value {
        match value {
            Value::Object(mut m) => {
                self.safety(&mut m);
                Value::Object(m)
            }
            other => other,
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// The result of a command: `human` for people, `value` (an object; `"ok": true` is added)
    /// for `--json`.
    pub fn result(&self, human: impl std::fmt::Display, value: Value) {
        let value = with_ok(self.with_safety(value));
        if self.keep(&human, &value) {
            return;
        }
        if self.json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    }

    /// The result, on stderr in human mode and on stdout in `--json` mode (for `get NAME -`,
    /// whose stdout is the file in human mode).
    pub fn result_aside(&self, human: impl std::fmt::Display, value: Value) {
        if self.captured.is_some() {
            return self.result(human, value);
        }
        if self.json {
            eprintln!("{}", with_ok(self.with_safety(value)));
        } else if !self.quiet {
            eprintln!("{human}");
        }
    }

    /// One item of a stream (a ping reply, an event): a line for people, an object for scripts.
    pub fn item(&self, human: impl std::fmt::Display, value: Value) {
        if self.keep(&human, &value) {
            return;
        }
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

    /// A warning on stderr: shown even with `--quiet` (it is about safety), not with `--json`
    /// (scripts get it in the `"warnings"` list of their result or failure instead).
    pub fn warn(&self, msg: impl std::fmt::Display) {
        if self.json {
            self.warnings.borrow_mut().push(msg.to_string());
        } else {
            eprintln!("warning: {msg}");
        }
    }

    /// A remark shown with `-v` only.
    pub fn detail(&self, msg: impl std::fmt::Display) {
        if self.verbose && !self.json {
            eprintln!("{msg}");
        }
    }

    /// A progress bar for `total` bytes, on a terminal only; it shows once the transfer starts.
    pub fn progress(&self, total: u64, label: &str) -> Option<ProgressBar> {
        self.bar(
            total,
            label,
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
    }

    /// A progress bar for `total` steps (round trips), on a terminal only; hidden until
    /// `transfer::start_bar` shows it.
    pub fn steps(&self, total: u64, label: &str) -> Option<ProgressBar> {
        self.bar(total, label, "{msg} [{bar:30}] {pos}/{len} ETA {eta}")
    }

    fn bar(&self, total: u64, label: &str, template: &str) -> Option<ProgressBar> {
        if !self.tty || self.quiet || self.json {
            return None;
        }
        // Hidden until the work starts: nothing to show before.
        let bar = ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        Some(bar)
    }

    /// Reports a failure and returns its exit code.
    pub fn fail(&self, f: &Failure) -> ExitCode {
        let code = f.exit_code();
        if self.json {
            println!("{}", self.with_safety(failure_json(f)));
        } else {
            eprintln!("error: {}", f.message);
            if let Some(h) = &f.hint {
                eprintln!("hint: {h}");
            }
        }
        ExitCode::from(code)
    }
}

fn with_ok(value: Value) -> Value {
    match value {
        Value::Object(mut m) => {
            let mut out = Map::new();
            out.insert("ok".into(), Value::Bool(true));
            m.remove("ok");
            out.extend(m);
            Value::Object(out)
        }
        other => other,
    }
}

/// `{"ok": false, "error": {...}, ...extra}`.
pub fn failure_json(f: &Failure) -> Value {
    let mut error = Map::new();
    error.insert("kind".into(), json!(f.kind.name()));
    error.insert("message".into(), json!(f.message));
    error.insert("hint".into(), json!(f.hint));
    error.insert("exit_code".into(), json!(f.exit_code()));
    if let Some(c) = f.device_code {
        error.insert("device_code".into(), json!(c));
        error.insert(
            "device_error".into(),
            json!(ErrorCode::from_u16(c).map(|c| c.text()).unwrap_or("unknown error")),
        );
    }
    let mut out = Map::new();
    out.insert("ok".into(), json!(false));
    if let Some(s) = f.status {
        out.insert("status".into(), json!(s));
    }
    out.extend(f.extra.clone());
    out.insert("error".into(), Value::Object(error));
    Value::Object(out)
}
