//! `put` and `get`: verified transfers that resume, refuse to clobber, and say what they kept.
//!
//! Both directions resume on their own when the partial state verifies: the device keeps a
//! suspended upload keyed by the file's size and SHA-256; a download keeps `LOCAL.part` next to
//! `LOCAL.part.tether`, which records the size and SHA-256 of the device file it is a prefix
//! of. Neither overwrites an existing file without `--overwrite`.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Seek, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tether_core::msg::Digest;
use tether_core::wire::ErrorCode;
use tether_host::client::{sha256_of, sha256_state_of, Transfer};
use tether_host::units::{bytes, plural, rate};

use tether_host::net::AnyClient;

use super::{check_name, file_refused, open, shell_quote, Result, Target};
use crate::interrupt::{self, PartFile};
use crate::report::{FailKind, Failure, Reporter};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn local_err(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::local(format!("cannot {what} {} ({})", path.display(), io_text(&e)))
}

/// An I/O error's text without the `(os error N)` suffix people do not need.
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// How many attempts in a row the link may damage, without the transfer moving, before it gives
/// up: a damaged frame costs an attempt, and a line that damages nine in a row without one
/// chunk getting through is not going to carry the file.
const DAMAGE_TRIES: u32 = 8;

/// Runs `attempt` until it succeeds, recovering what is worth another try:
///
/// * frames the link damaged or lost ([`FailKind::Link`]): at once, without a pause and without
///   counting against `retries`, up to [`DAMAGE_TRIES`] attempts in a row that move nothing;
/// * a dropped connection, a timeout or a busy device after an attempt that moved the transfer
///   (`progress()`, the bytes secured, grew): at once, since the link worked a moment ago;
/// * the same without progress: up to `retries` times in a row, with pauses of 0.2 s, 0.4 s, …
///   up to 5 s, which start again from 0.2 s once an attempt moves the transfer.
///
/// `recovered` counts the attempts that were repeated.
pub(super) fn with_retries<T>(
    out: &Reporter,
    retries: u32,
    progress: impl Fn() -> u64,
    recovered: &mut u32,
    attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    retry_loop(out, retries, progress, recovered, attempt, std::thread::sleep)
}

/// [`with_retries`], pausing with `pause`.
fn retry_loop<T>(
    out: &Reporter,
    retries: u32,
    progress: impl Fn() -> u64,
    recovered: &mut u32,
    mut attempt: impl FnMut() -> Result<T>,
    mut sleep: impl FnMut(Duration),
) -> Result<T> {
    let mut failed = 0;
    let mut damaged = 0;
    loop {
        let before = progress();
        let f = match attempt() {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        let moved = progress() > before;
        if moved {
            (failed, damaged) = (0, 0);
        }
        if !retryable(&f) {
            return Err(f);
        }
        if f.kind == FailKind::Link {
            damaged += 1;
            if damaged > DAMAGE_TRIES {
                let message = format!(
                    "{}; that was {damaged} damaged attempts in a row without a byte getting through",
                    f.message
                );
                return Err(Failure { message, ..f });
            }
            out.detail(format_args!("{}; resuming", f.message));
        } else if moved {
            out.detail(format_args!("{}; reconnecting to resume", f.message));
        } else {
            failed += 1;
            if failed > retries {
                return Err(f);
            }
            let pause = Duration::from_millis(200u64 << (failed - 1).min(5)).min(Duration::from_secs(5));
            out.note(format_args!(
                "{}; retrying in {:.1} s (retry {failed} of {retries})",
                f.message,
                pause.as_secs_f64()
            ));
            sleep(pause);
        }
        *recovered += 1;
    }
}

/// Dropped connections and timeouts, frames damaged or lost on the link, and a busy device are
/// worth another try (the same as `ClientError::is_link_damage`, and `Busy`).
fn retryable(f: &Failure) -> bool {
    matches!(f.kind, FailKind::Connection | FailKind::Link | FailKind::Garbled)
        || matches!(
            f.code(),
            Some(ErrorCode::Busy | ErrorCode::Malformed | ErrorCode::BadCrc)
        )
}

/// A download's `.part` file behind a buffer that reaches the file at least every quarter of a
/// second: on a slow line the buffer would otherwise hold many seconds of data, which a Ctrl-C
/// would lose.
struct PartWriter {
    inner: BufWriter<PartFile>,
    flushed: Instant,
}

impl PartWriter {
    fn new(file: File) -> Self {
        PartWriter {
            inner: BufWriter::with_capacity(256 * 1024, PartFile(file)),
            flushed: Instant::now(),
        }
    }
}

impl std::io::Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.flushed.elapsed() > Duration::from_millis(250) {
            self.inner.flush()?;
            self.flushed = Instant::now();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Moves the bar to where a (resumed) transfer starts, so that rate and ETA count only what
/// moves from there.
pub(super) fn start_bar(bar: &Option<ProgressBar>, at: u64) {
    if let Some(b) = bar {
        b.set_position(at);
        // Let the rate estimator record the jump, then forget it: the rate counts from here.
        b.tick();
        b.reset_eta();
        b.reset_elapsed();
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
}

/// The result line of a transfer; `recovered` is how many attempts were repeated (a damaged or
/// lost frame, a dropped connection).
#[allow(clippy::too_many_arguments)]
fn report(
    out: &Reporter,
    verb: &str,
    name: &str,
    local: &str,
    t: &Transfer,
    took: Duration,
    recovered: u32,
    aside: bool,
) {
    let secs = took.as_secs_f64().max(1e-9);
    let moved = t.size - t.resumed_from;
    let bps = moved as f64 / secs;
    let resumed = if t.resumed_from > 0 {
        format!(", resumed at {} ({} moved)", bytes(t.resumed_from), bytes(moved))
    } else {
        String::new()
    };
    let resent = if recovered > 0 {
        format!(", resumed {} after link trouble", plural(u64::from(recovered), "time"))
    } else {
        String::new()
    };
    let human = format!(
        "{verb} {name}: {} in {secs:.2} s, {}{resumed}{resent}, sha256 {}",
        bytes(t.size),
        rate(bps),
        hex(&t.sha256)
    );
    let value = json!({"name": name, "local": local, "size": t.size, "sha256": hex(&t.sha256),
                       "resumed_from": t.resumed_from, "transferred": moved, "seconds": secs, "bytes_per_s": bps,
                       "recoveries": recovered});
    if aside {
        out.result_aside(human, value);
    } else {
        out.result(human, value);
    }
}

/// `put LOCAL [NAME]`: prepares the upload (the name, the file or spooled stdin, whether it can
/// fit, its SHA-256), sends it with retries and resumption, and reports it.
pub fn put(
    t: &Target,
    out: &Reporter,
    local: &Path,
    remote: Option<&str>,
    overwrite: bool,
    retries: u32,
) -> Result<()> {
    let mut upload = Upload::prepare(t, out, local, remote, overwrite, retries)?;
    let start = Instant::now();
    let (tr, recovered) = upload.send(t, out, retries)?;
    let recovered = recovered + upload.recovered;
    report(
        out,
        "put",
        &upload.name,
        &upload.shown,
        &tr,
        start.elapsed(),
        recovered,
        false,
    );
    Ok(())
}

/// An upload ready to send: its name on the device, the file with its size and SHA-256, the
/// command that resumes it, and the session that asked the device whether it fits.
struct Upload {
    name: String,
    /// The local file as the result names it (`-` for stdin).
    shown: String,
    /// Whether the bytes came from stdin (spooled to `file`).
    stdin: bool,
    file: File,
    size: u64,
    sha: Digest,
    overwrite: bool,
    resume_cmd: String,
    first_session: Option<AnyClient>,
    /// Attempts at the first session that were repeated (link damage).
    recovered: u32,
}

impl Upload {
    /// Everything that can fail before a byte goes out: the name, the local file, whether it can
    /// fit on the device at all (asked before hashing, which takes a while for a big file).
    fn prepare(
        t: &Target,
        out: &Reporter,
        local: &Path,
        remote: Option<&str>,
        overwrite: bool,
        retries: u32,
    ) -> Result<Upload> {
        let stdin = local.as_os_str() == "-";
        let name = match (remote, stdin) {
            (Some(r), _) => r.to_string(),
            (None, true) => {
                return Err(Failure::usage("`put -` reads stdin and needs a name for the device")
                    .hint("give one: `host-cli put - NAME`"))
            }
            (None, false) => local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        check_name(&name)?;
        interrupt::on_interrupt(|| {
            Failure::new(
                FailKind::Interrupted,
                "interrupted before the upload started: nothing was sent",
            )
        });
        // Stdin is spooled to a temporary file: the upload announces size and SHA-256 first.
        let (file, shown) = if stdin {
            let mut spool =
                tempfile::tempfile().map_err(|e| local_err("create a temporary file for", Path::new("stdin"), e))?;
            std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .map_err(|e| local_err("read", Path::new("stdin"), e))?;
            spool.rewind().map_err(|e| local_err("rewind", Path::new("stdin"), e))?;
            (spool, "-".to_string())
        } else {
            if local.is_dir() {
                return Err(Failure::local(format!("{} is a directory", local.display()))
                    .hint("put uploads one file; give its path"));
            }
            let f = File::open(local).map_err(|e| {
                local_err("open", local, e).hint("check the path: `put` uploads an existing file (or `-` for stdin)")
            })?;
            (f, local.display().to_string())
        };
        let resume_cmd = t.command(&format!(
            "put {} {}{}",
            shell_quote(&shown),
            shell_quote(&name),
            if overwrite { " --overwrite" } else { "" }
        ));
        let len = file.metadata().map_err(|e| local_err("read", local, e))?.len();
        let mut recovered = 0;
        let first_session = with_retries(
            out,
            retries,
            || 0,
            &mut recovered,
            || {
                let mut c = open(t, out)?;
                fits(t, &mut c, &name, len, overwrite, &resume_cmd)?;
                Ok(c)
            },
        )?;
        let (sha, size) = sha256_of(BufReader::new(&file)).map_err(|e| local_err("read", local, e))?;
        Ok(Upload {
            name,
            shown,
            stdin,
            file,
            size,
            sha,
            overwrite,
            resume_cmd,
            first_session: Some(first_session),
            recovered,
        })
    }

    /// Sends the file, resuming after link trouble and retrying as `retries` allows; returns what
    /// moved and how many attempts were repeated.
    fn send(&mut self, t: &Target, out: &Reporter, retries: u32) -> Result<(Transfer, u32)> {
        let (size, sha, overwrite, stdin) = (self.size, self.sha, self.overwrite, self.stdin);
        let (name, resume_cmd) = (self.name.as_str(), self.resume_cmd.as_str());
        let first_session = &mut self.first_session;
        let mut reader = BufReader::with_capacity(256 * 1024, &self.file);
        let bar = out.progress(size, &format!("put {name}"));
        {
            let (n, cmd) = (name.to_string(), resume_cmd.to_string());
            interrupt::on_interrupt(move || {
                let f = Failure::new(
                    FailKind::Interrupted,
                    format!("interrupted: the device keeps what it received of `{n}` for a while"),
                );
                if stdin {
                    f.hint("run the same upload again to resume it (stdin must give the same bytes)")
                } else {
                    f.hint(format!("resume with: {cmd}"))
                }
            });
        }
        // Where the first attempt started, the most the device acknowledged (what a retry keeps),
        // and whether an attempt got every byte acknowledged (so that it may have sent its commit,
        // and the device may have carried it out although the answer never came back).
        let mut started_at = None;
        let acked = Cell::new(0u64);
        let mut all_acked = false;
        let mut recovered = 0;
        let mut attempts = 0;
        let result = with_retries(
            out,
            retries,
            || acked.get(),
            &mut recovered,
            || {
                let mut c = match first_session.take() {
                    Some(c) => c,
                    None => open(t, out)?,
                };
                // The first call is where the device stands; the bar shows, and its rate counts,
                // from the first acknowledgement, since the first chunks need a while to cross a
                // slow line (counted from the start, put's rate began far too low there).
                attempts += 1;
                let mut calls = 0;
                let r = c.put(name, &mut reader, size, sha, overwrite, |n| {
                    started_at.get_or_insert(n);
                    acked.set(acked.get().max(n));
                    all_acked |= n == size;
                    calls += 1;
                    match (calls, &bar) {
                        (1, _) if attempts > 1 && n > 0 => out.detail(format_args!(
                            "the device holds {} of the upload; resuming there",
                            bytes(n)
                        )),
                        (1, _) if attempts > 1 => out.detail("the device holds none of the upload; starting over"),
                        (1, Some(b)) => b.set_position(n),
                        (2, _) => start_bar(&bar, n),
                        (_, Some(b)) => b.set_position(n),
                        _ => {}
                    }
                });
                match r {
                    // A retry after an attempt that may have committed: the file is there, and
                    // counts as this upload only if the device shows exactly its size and SHA-256.
                    Err(e) if all_acked && !overwrite && e.code() == Some(ErrorCode::AlreadyExists) => {
                        if c.holds(name, size, sha)? {
                            out.note(format_args!(
                                "the device had already committed `{name}` (its answer was lost); it holds exactly the file sent"
                            ));
                            return Ok(Transfer {
                                size,
                                sha256: sha,
                                resumed_from: started_at.unwrap_or(0),
                            });
                        }
                        Err(e.into())
                    }
                    r => r.map_err(|e| broke_mid_upload(e, calls > 0)),
                }
            },
        );
        interrupt::clear();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let mut tr = result.map_err(|f| put_refused(t, f, name, size, overwrite, resume_cmd))?;
        // Where this run started, not its last attempt.
        tr.resumed_from = started_at.unwrap_or(tr.resumed_from);
        Ok((tr, recovered))
    }
}

/// What a failed upload attempt reports: a session that broke or closed after the device took
/// the upload (`answered`: its `PutReady` came) is trouble on the way, like a damaged frame. A
/// flipped bit in a chunk's header makes the device skip the rest as garbage past its budget and
/// reset the session (PROTOCOL.md §13 rule 3), maybe before its first acknowledgement, so the
/// attempt secured nothing; it is resumed at once like damage (up to [`DAMAGE_TRIES`] in a row
/// that move nothing), not counted against `--retries`, which is for a device that cannot be
/// reached or is busy.
fn broke_mid_upload(e: tether_host::ClientError, answered: bool) -> Failure {
    use tether_host::{Cause, ClientError, Over};
    match &e {
        ClientError::Connection {
            over: Over::Stream,
            cause: Cause::Broke | Cause::Closed,
            ..
        } if answered => Failure::from(ClientError::Link(format!("{e} during the upload"))),
        _ => e.into(),
    }
}

/// Whether `len` bytes can fit on the device, as far as its hello (and, when its free space is
/// short, its listing) tells: larger than all its storage, or than what its visible files leave,
/// is a refusal before anything is sent.
fn fits(t: &Target, c: &mut AnyClient, name: &str, len: u64, overwrite: bool, resume_cmd: &str) -> Result<()> {
    let Some(i) = t.device_info() else {
        return Ok(());
    };
    if len > i.storage_capacity {
        return Err(Failure::new(
            FailKind::Device,
            format!(
                "`{name}` ({}) is larger than all the storage space of {} ({})",
                bytes(len),
                t.device_name(),
                bytes(i.storage_capacity)
            ),
        )
        .with_code(ErrorCode::NoSpace)
        .hint("no removal makes room for it: upload a smaller file, or use a device with more storage"));
    }
    let free = i.storage_capacity.saturating_sub(i.storage_used);
    if len > free {
        // Unfinished uploads count as used, and a device reclaims them for a new one; what the
        // visible files take it does not. Not fitting beside them is certain.
        if let Ok(files) = c.list() {
            let visible: u64 = files.iter().map(|f| f.size).sum();
            if len > i.storage_capacity.saturating_sub(visible) {
                let refused = Failure::new(FailKind::Device, "no space").with_code(ErrorCode::NoSpace);
                return Err(put_refused(t, refused, name, len, overwrite, resume_cmd));
            }
        }
    }
    Ok(())
}

/// A refused upload in words: what the device said, why, and what to do.
fn put_refused(t: &Target, f: Failure, name: &str, size: u64, overwrite: bool, again: &str) -> Failure {
    match f.code() {
        Some(ErrorCode::AlreadyExists) => Failure {
            message: format!("the device {} already has a file `{name}`", t.addr),
            ..f
        }
        .hint(format!("add --overwrite to replace it: {again} --overwrite")),
        Some(ErrorCode::NoSpace) => {
            // Ask how things stand, to explain; the refusal stands whatever this finds.
            let out = Reporter::new(false, true, false);
            let (info, files, old) = match open(t, &out) {
                Ok(mut c) => {
                    let info = c.hello("host-cli").ok();
                    // What the visible files take; the rest of what is used is unfinished uploads.
                    let files = c.list().ok().map(|l| l.iter().map(|f| f.size).sum::<u64>());
                    let old = if overwrite {
                        c.stat(name).ok().map(|(s, _)| s)
                    } else {
                        None
                    };
                    (info, files, old)
                }
                Err(_) => (None, None, None),
            };
            let free = info.as_ref().map(|i| i.storage_capacity.saturating_sub(i.storage_used));
            let held = match (&info, files) {
                (Some(i), Some(files)) => i.storage_used.saturating_sub(files),
                _ => 0,
            };
            let free_text = free
                .map(|b| format!(": it has {} of space free", bytes(b)))
                .unwrap_or_default();
            let mut msg = format!("`{name}` ({}) does not fit on the device{free_text}", bytes(size));
            let mut hint = match old {
                Some(old_size) => {
                    msg.push_str(&format!(
                        "; the old copy ({}) stays until the new one is verified, so a replace needs room for both",
                        bytes(old_size)
                    ));
                    format!(
                        "remove the old copy first (`{}`), then upload again ({again}), or free other space",
                        t.command(&format!("rm {}", shell_quote(name)))
                    )
                }
                None => format!(
                    "free space with `{}` (`{}` lists the files)",
                    t.command("rm NAME"),
                    t.command("ls")
                ),
            };
            if held > 0 {
                // Invisible to `ls` and `rm`: say where it is, and when it comes back.
                msg.push_str(&format!(
                    "; another {} is held by an unfinished upload (one that was interrupted), which `ls` does not show",
                    bytes(held)
                ));
                hint = format!(
                    "the device frees an interrupted upload's space once its session has ended (a device drops a silent session after its idle time, 2 minutes on the simulator) and another upload needs the room; the same `put` resumes it instead. Or: {hint}"
                );
            }
            Failure { message: msg, ..f }.hint(hint)
        }
        // Not the refusal of the whole connection (every session in use, PROTOCOL.md §13), which
        // says so itself.
        Some(ErrorCode::Busy) if !matches!(f.source, Some(tether_host::ClientError::Full(_))) => Failure {
            message: format!("the device is busy with another upload of `{name}`"),
            ..f
        }
        .hint("wait for it, or add --retries N to retry with pauses"),
        _ => f,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Where a download goes: `local` itself, or `local/NAME` when it is (or ends like) a directory.
fn destination(remote: &str, local: Option<&Path>) -> Result<PathBuf> {
    let Some(local) = local else {
        return Ok(PathBuf::from(remote));
    };
    let text = local.as_os_str().to_string_lossy();
    let dirish = text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR);
    if local.is_dir() {
        return Ok(local.join(remote));
    }
    if dirish {
        return Err(
            Failure::local(format!("the directory {} does not exist", local.display()))
                .hint(format!("create it first (mkdir -p {})", shell_quote(&text))),
        );
    }
    if let Some(parent) = local.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(
                Failure::local(format!("the directory {} does not exist", parent.display()))
                    .hint("create it first, or name a file in an existing directory"),
            );
        }
    }
    Ok(local.to_path_buf())
}

/// The device file a `.part` is a prefix of: `SIZE SHA256HEX`.
fn part_label(size: u64, sha: &Digest) -> String {
    format!("{size} {}\n", hex(sha))
}

/// `get NAME [LOCAL]`: prepares the download (where it goes, whether a `.part` of this very file
/// can be resumed), receives it with retries and resumption, and reports it (or what it kept).
pub fn get(
    t: &Target,
    out: &Reporter,
    remote: &str,
    local: Option<&Path>,
    overwrite: bool,
    retries: u32,
) -> Result<()> {
    check_name(remote)?;
    if local.is_some_and(|l| l.as_os_str() == "-") {
        return get_to_stdout(t, out, remote);
    }
    let mut download = Download::prepare(t, out, remote, local, overwrite, retries)?;
    let start = Instant::now();
    let started_at = download.held();
    let (result, recovered) = download.receive(t, out, retries);
    let recovered = recovered + download.recovered;
    let mut tr = result.map_err(|f| download.kept_or_removed(f))?;
    tr.resumed_from = started_at;
    download.finish()?;
    report(
        out,
        "get",
        remote,
        &download.dest.display().to_string(),
        &tr,
        start.elapsed(),
        recovered,
        false,
    );
    Ok(())
}

/// A download ready to receive: the device file's size and SHA-256, the destination, the
/// `.part` (with its label) the bytes go to until they verify, and the session that asked for the
/// size (the first attempt's: one handshake, not two, on a sealed or slow link).
struct Download<'a> {
    remote: &'a str,
    dest: PathBuf,
    part: PathBuf,
    label_path: PathBuf,
    size: u64,
    sha: Digest,
    resume_cmd: String,
    first_session: Option<AnyClient>,
    /// Attempts at the first session that were repeated (link damage).
    recovered: u32,
}

impl<'a> Download<'a> {
    /// Everything decided before a byte comes: the destination (not clobbered without
    /// `--overwrite`), the device file's size and SHA-256, and a `.part` of this very file to
    /// resume from, or a fresh one.
    fn prepare(
        t: &Target,
        out: &Reporter,
        remote: &'a str,
        local: Option<&Path>,
        overwrite: bool,
        retries: u32,
    ) -> Result<Download<'a>> {
        let dest = destination(remote, local)?;
        if dest.is_dir() {
            return Err(Failure::local(format!("{} is a directory", dest.display()))
                .hint("name a file, or remove the directory"));
        }
        let again = |extra: &str| {
            t.command(&format!(
                "get {} {}{extra}",
                shell_quote(remote),
                shell_quote(&dest.display().to_string())
            ))
        };
        if dest.exists() && !overwrite {
            return Err(Failure::local(format!("{} already exists", dest.display()))
                .hint(format!("add --overwrite to replace it: {}", again(" --overwrite"))));
        }
        let part = with_suffix(&dest, ".part");
        let label_path = with_suffix(&dest, ".part.tether");
        // The first session, repeated when the link damages its answers.
        let mut recovered = 0;
        let (c, size, sha) = with_retries(
            out,
            retries,
            || 0,
            &mut recovered,
            || {
                let mut c = open(t, out)?;
                let (size, sha) = c.stat(remote).map_err(|e| file_refused(t, e.into(), remote))?;
                Ok((c, size, sha))
            },
        )?;
        let label = part_label(size, &sha);
        let ours = fs::read_to_string(&label_path).ok();
        if part.exists() && ours.is_none() && !overwrite {
            // Not left by host-cli: someone's own file, which a download must not overwrite.
            return Err(Failure::local(format!(
                "{} exists and is not a download host-cli left ({} is missing)",
                part.display(),
                label_path.display()
            ))
            .hint(format!(
                "move it away, or add --overwrite to replace it: {}",
                again(" --overwrite")
            )));
        }
        // Resume only from a .part of this very file (same size and SHA-256 on the device).
        let resumable =
            ours.is_some_and(|l| l == label) && fs::metadata(&part).is_ok_and(|m| m.is_file() && m.len() <= size);
        if !resumable {
            if part.exists() {
                out.note(format_args!(
                    "{} is not from this version of `{remote}`; starting over",
                    part.display()
                ));
            }
            File::create(&part).map_err(|e| local_err("create", &part, e))?;
            fs::write(&label_path, &label).map_err(|e| local_err("write", &label_path, e))?;
        }
        let resume_cmd = again(if overwrite { " --overwrite" } else { "" });
        Ok(Download {
            remote,
            dest,
            part,
            label_path,
            size,
            sha,
            resume_cmd,
            first_session: Some(c),
            recovered,
        })
    }

    /// What the `.part` holds.
    fn held(&self) -> u64 {
        len_of(&self.part)
    }

    /// Receives the file into the `.part`, every attempt continuing from what it holds; returns
    /// the verified transfer (or why not) and how many attempts were repeated.
    fn receive(&mut self, t: &Target, out: &Reporter, retries: u32) -> (Result<Transfer>, u32) {
        let (remote, size, sha) = (self.remote, self.size, self.sha);
        {
            let (part, cmd) = (self.part.clone(), self.resume_cmd.clone());
            interrupt::on_interrupt(move || {
                let kept = len_of(&part);
                let mut f = Failure::new(
                    FailKind::Interrupted,
                    format!(
                        "interrupted: kept {} of {} in {}",
                        bytes(kept),
                        bytes(size),
                        part.display()
                    ),
                )
                .hint(format!("resume with: {cmd}"));
                f.extra.insert("kept".into(), json!(kept));
                f
            });
        }
        let bar = out.progress(size, &format!("get {remote}"));
        let mut recovered = 0;
        let part = &self.part;
        let first_session = &mut self.first_session;
        let result = with_retries(
            out,
            retries,
            || len_of(part),
            &mut recovered,
            || {
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(part)
                    .map_err(|e| local_err("open", part, e))?;
                let (state, held) = sha256_state_of(BufReader::new(&file)).map_err(|e| local_err("read", part, e))?;
                if held > 0 {
                    out.detail(format_args!("resuming at {}", bytes(held)));
                }
                start_bar(&bar, held);
                let mut c = match first_session.take() {
                    Some(c) => c,
                    None => open(t, out)?,
                };
                let mut w = PartWriter::new(file);
                let r = c.get(remote, held, &mut w, state, |n| {
                    if let Some(b) = &bar {
                        b.set_position(n)
                    }
                });
                // What arrived is kept for the next attempt, whatever happened.
                let flushed = w.flush();
                let r = r.map_err(|e| file_refused(t, e.into(), remote))?;
                if r.sha256 != sha {
                    return Err(Failure::new(
                        FailKind::Protocol,
                        format!("`{remote}` changed on the device during the download"),
                    )
                    .with_code(ErrorCode::Changed)
                    .hint("download it again"));
                }
                flushed.map_err(|e| local_err("write", part, e))?;
                Ok(r)
            },
        );
        interrupt::clear();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        (result, recovered)
    }

    /// The verified file takes its place.
    fn finish(&self) -> Result<()> {
        fs::rename(&self.part, &self.dest).map_err(|e| local_err("rename the download into", &self.dest, e))?;
        let _ = fs::remove_file(&self.label_path);
        Ok(())
    }

    /// A failed download: the `.part` is kept (and the failure says how to resume) when it is a
    /// prefix of the device's file, else removed.
    fn kept_or_removed(&self, f: Failure) -> Failure {
        let kept = self.held();
        if !keeps_part(&f, kept, self.size) {
            let _ = fs::remove_file(&self.part);
            let _ = fs::remove_file(&self.label_path);
            return f;
        }
        let msg = format!(
            "{}; kept {} of {} in {}",
            f.message,
            bytes(kept),
            bytes(self.size),
            self.part.display()
        );
        let resume = format!("resume with: {}", self.resume_cmd);
        let hint = match &f.hint {
            Some(h) if f.kind != FailKind::Connection => format!("{h}; {resume}"),
            _ => resume,
        };
        let mut f = Failure { message: msg, ..f }.hint(hint);
        f.extra.insert("kept".into(), json!(kept));
        f
    }
}

/// How many bytes the file at `path` holds (0 when there is none): what a `.part` keeps.
fn len_of(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Whether a failed download keeps its `.part` (`kept` of `size` bytes) to resume from: a prefix
/// of the device's file does, whatever stopped it (docs/CLI.md promises it); the whole file that
/// did not verify, or a prefix of a version that is gone, does not.
fn keeps_part(f: &Failure, kept: u64, size: u64) -> bool {
    kept > 0 && kept < size && !matches!(f.code(), Some(ErrorCode::Changed | ErrorCode::NotFound))
}

/// `get NAME -`: the file to stdout, verified at the end (a mismatch is an error after the
/// fact: the bytes are already out). The result line goes to stderr.
///
/// A reader that stops reading (`get NAME - | head`) ends the download quietly, with success: it
/// has what it wanted, as with any Unix filter.
fn get_to_stdout(t: &Target, out: &Reporter, remote: &str) -> Result<()> {
    let mut c = open(t, out)?;
    let start = Instant::now();
    let closed = Cell::new(false);
    // Not a locked stdout: a Ctrl-C report may need it while the download runs.
    let mut w = BufWriter::new(Pipe {
        out: std::io::stdout(),
        closed: &closed,
    });
    let got = c.get(remote, 0, &mut w, Sha256::new(), |_| {});
    let flushed = w.flush();
    drop(w);
    if closed.get() {
        // On a serial line the device would go on streaming the rest: tell it to stop.
        drop(c);
        tether_host::serial::abandon();
        return Ok(());
    }
    let tr = got.map_err(|e| file_refused(t, e.into(), remote))?;
    flushed.map_err(|e| local_err("write", Path::new("stdout"), e))?;
    report(out, "get", remote, "-", &tr, start.elapsed(), 0, true);
    Ok(())
}

/// Stdout that notes when its reader has gone (a broken pipe).
struct Pipe<'a> {
    out: std::io::Stdout,
    closed: &'a Cell<bool>,
}

impl std::io::Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf).inspect_err(|e| self.note(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().inspect_err(|e| self.note(e))
    }
}

impl Pipe<'_> {
    fn note(&self, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            self.closed.set(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_host::{Cause, ClientError, Over};

    fn refused(code: ErrorCode) -> Failure {
        Failure::from(ClientError::Device {
            code: code as u16,
            message: String::new(),
        })
    }

    /// The device's refusal of the whole connection (every session in use, PROTOCOL.md §7, §13)
    /// is not told as another upload of the name, which is the other `Busy` a put can meet.
    #[test]
    fn a_device_with_every_session_in_use_is_not_busy_with_another_upload() {
        let t = Target {
            addr: tether_host::net::Endpoint::parse("127.0.0.1:7070").unwrap(),
            udp_port: None,
            timeout: Duration::from_secs(1),
            select: "--to 127.0.0.1:7070".into(),
            key_file: None,
            learned: Default::default(),
        };
        let sessions = Failure::from(ClientError::Full("every session is in use; try again".into()));
        let told = put_refused(&t, sessions, "f.bin", 1, false, "again");
        assert!(told.message.contains("every session is in use"), "{}", told.message);
        // Told by the variant, whatever the device's words (another language, a later wording).
        let sessions = Failure::from(ClientError::Full("toutes les sessions sont prises".into()));
        let told = put_refused(&t, sessions, "f.bin", 1, false, "again");
        assert!(!told.message.contains("another upload"), "{}", told.message);
        assert_eq!(told.code(), Some(ErrorCode::Busy));
        let told = put_refused(&t, refused(ErrorCode::Busy), "f.bin", 1, false, "again");
        assert!(told.message.contains("another upload of `f.bin`"), "{}", told.message);
    }

    #[test]
    fn link_damage_busy_and_dropped_connections_are_retried_refusals_are_not() {
        assert!(retryable(&broke()));
        assert!(retryable(&Failure::from(ClientError::timeout(Over::Stream, "slow"))));
        // What a serial line does to a frame: cut short (Malformed) or damaged (BadCrc).
        assert!(retryable(&refused(ErrorCode::Malformed)));
        assert!(retryable(&refused(ErrorCode::BadCrc)));
        assert!(retryable(&refused(ErrorCode::Busy)));
        assert!(!retryable(&refused(ErrorCode::NotFound)));
        assert!(!retryable(&refused(ErrorCode::NoSpace)));
        assert!(!retryable(&Failure::usage("bad flag")));
        // The same classification as the library's.
        for code in [ErrorCode::Malformed, ErrorCode::BadCrc, ErrorCode::NotFound] {
            let e = ClientError::Device {
                code: code as u16,
                message: String::new(),
            };
            assert_eq!(e.is_link_damage(), retryable(&refused(code)), "{code:?}");
        }
    }

    fn link(m: &str) -> Failure {
        Failure::from(ClientError::Link(m.into()))
    }

    fn broke() -> Failure {
        Failure::from(ClientError::connection(Over::Stream, Cause::Broke, "broke"))
    }

    /// Runs attempts that fail as `fails` says, each moving the transfer by `moves` bytes, then
    /// succeed; returns the result, the attempts made and the pauses taken.
    fn attempts(
        retries: u32,
        fails: Vec<Failure>,
        moves: Vec<u64>,
    ) -> (std::result::Result<u32, FailKind>, usize, Vec<Duration>) {
        let out = Reporter::new(true, true, false);
        let done = std::cell::Cell::new(0u64);
        let n = std::cell::Cell::new(0usize);
        let mut pauses = Vec::new();
        let mut recovered = 0;
        let r = retry_loop(
            &out,
            retries,
            || done.get(),
            &mut recovered,
            || {
                let i = n.get();
                n.set(i + 1);
                done.set(done.get() + moves.get(i).copied().unwrap_or(0));
                match fails.get(i) {
                    Some(f) => Err(f.clone()),
                    None => Ok(i as u32),
                }
            },
            |d| pauses.push(d),
        );
        (r.map_err(|f| f.kind), n.get(), pauses)
    }

    #[test]
    fn a_session_broken_after_the_device_took_the_upload_is_resumed_like_damage() {
        // Reset by the device before its first acknowledgement (a damaged chunk header): no
        // --retries needed, even nine times in a row would be given up only as damage is.
        let mid = || broke_mid_upload(ClientError::connection(Over::Stream, Cause::Broke, "reset"), true);
        assert_eq!(mid().kind, FailKind::Link);
        let (r, n, pauses) = attempts(0, vec![mid(); 3], vec![0; 3]);
        assert_eq!((r, n), (Ok(3), 4));
        assert!(pauses.is_empty());
        let (r, n, _) = attempts(0, vec![mid(); 20], vec![0; 20]);
        assert_eq!((r, n), (Err(FailKind::Link), DAMAGE_TRIES as usize + 1));
        // Before the device answered, or refused outright: the device is away, --retries decides.
        for (e, answered) in [
            (ClientError::connection(Over::Stream, Cause::Broke, "reset"), false),
            (ClientError::connection(Over::Stream, Cause::Refused, "refused"), true),
            (ClientError::timeout(Over::Stream, "no answer"), true),
        ] {
            assert_eq!(broke_mid_upload(e, answered).kind, FailKind::Connection);
        }
    }

    #[test]
    fn damage_is_recovered_without_retries_while_the_transfer_moves() {
        // 50 damaged attempts, each moving the transfer: no flag needed, no pause taken.
        let (r, n, pauses) = attempts(0, vec![link("damaged"); 50], vec![1000; 50]);
        assert_eq!((r, n), (Ok(50), 51));
        assert!(pauses.is_empty());
        // Nine in a row that move nothing: the link is not going to carry the file.
        let (r, n, _) = attempts(0, vec![link("damaged"); 20], vec![0; 20]);
        assert_eq!((r, n), (Err(FailKind::Link), DAMAGE_TRIES as usize + 1));
    }

    #[test]
    fn retries_count_failures_in_a_row_and_their_pause_starts_again_after_progress() {
        // A dropped connection after progress reconnects at once, whatever --retries says.
        let (r, n, pauses) = attempts(0, vec![broke(); 30], vec![10; 30]);
        assert_eq!((r, n), (Ok(30), 31));
        assert!(pauses.is_empty());
        // Without progress: --retries of them in a row, with growing pauses.
        let (r, n, pauses) = attempts(3, vec![broke(); 10], vec![0; 10]);
        assert_eq!((r, n), (Err(FailKind::Connection), 4));
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [200, 400, 800]);
        // Progress in between: the count and the pause start again (a lossy line with
        // --retries 200 waited 5 s after every loss past the sixth).
        let moves = vec![0, 0, 5, 0, 0, 5, 0, 0];
        let (r, n, pauses) = attempts(2, vec![broke(); 8], moves.clone());
        assert_eq!((r, n), (Ok(8), 9));
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [200, 400, 200, 400, 200, 400], "{ms:?}");
        // And a third in a row after the last progress is one too many for --retries 2.
        let (r, n, _) = attempts(2, vec![broke(); 9], [moves, vec![0]].concat());
        assert_eq!((r, n), (Err(FailKind::Connection), 9));
    }

    #[test]
    fn a_failed_download_keeps_a_prefix_of_the_file() {
        let size = 1000;
        // Whatever stopped it: the line, the connection, a protocol hiccup, a busy device.
        for f in [
            link("lost"),
            broke(),
            Failure::new(FailKind::Protocol, "odd"),
            refused(ErrorCode::Busy),
        ] {
            assert!(keeps_part(&f, 400, size), "{f:?}");
            assert!(!keeps_part(&f, 0, size), "nothing to keep: {f:?}");
        }
        // The whole file that did not verify, or a version that is gone, is not a prefix.
        assert!(!keeps_part(&Failure::new(FailKind::Protocol, "digest"), size, size));
        assert!(!keeps_part(&refused(ErrorCode::Changed), 400, size));
        assert!(!keeps_part(&refused(ErrorCode::NotFound), 400, size));
    }
}
