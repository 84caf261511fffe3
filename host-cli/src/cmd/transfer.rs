//! `put` and `get`: verified transfers that resume, refuse to clobber, and say what they kept.
//!
//! Both directions resume on their own when the partial state verifies: the device keeps a
//! suspended upload keyed by the file's size and SHA-256; a download keeps `LOCAL.part` next to
//! `LOCAL.part.tether`, which records the size and SHA-256 of the device file it is a prefix
//! of. Neither overwrites an existing file without `--overwrite`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Seek, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tether_core::msg::Digest;
use tether_core::wire::ErrorCode;
use tether_host::client::{sha256_of, sha256_state_of, Transfer};
use tether_host::units::{bytes, rate};

use super::{check_name, file_refused, open, shell_quote, Result, Target};
use crate::report::{failure_json, FailKind, Failure, Reporter};

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

/// What a Ctrl-C during a transfer reports: set while the transfer runs.
type OnInterrupt = Box<dyn Fn() -> Failure + Send>;
static ON_INTERRUPT: Mutex<Option<(bool, OnInterrupt)>> = Mutex::new(None);

/// Installs the Ctrl-C handler once; `report` says what was kept and how to resume.
fn on_interrupt(json: bool, report: impl Fn() -> Failure + Send + 'static) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    if let Ok(mut slot) = ON_INTERRUPT.lock() {
        *slot = Some((json, Box::new(report)));
    }
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let (json, f) = match ON_INTERRUPT.lock().ok().as_ref().and_then(|s| s.as_ref()) {
                Some((json, report)) => (*json, report()),
                None => (false, Failure::new(FailKind::Interrupted, "interrupted")),
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
        });
    });
}

fn clear_interrupt() {
    if let Ok(mut slot) = ON_INTERRUPT.lock() {
        *slot = None;
    }
}

/// Runs `attempt` once, then again after each [`retryable`] failure, up to
/// `retries` times, with growing pauses (0.2 s, 0.4 s, … up to 5 s).
pub(super) fn with_retries<T>(out: &Reporter, retries: u32, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match attempt() {
            Err(f) if tries < retries && retryable(&f) => {
                tries += 1;
                let pause = Duration::from_millis(200u64 << (tries - 1).min(5)).min(Duration::from_secs(5));
                out.note(format_args!(
                    "{}; retrying in {:.1} s (retry {tries} of {retries})",
                    f.message,
                    pause.as_secs_f64()
                ));
                std::thread::sleep(pause);
            }
            other => return other,
        }
    }
}

/// Dropped connections and timeouts, frames damaged on the link (the device answers `Malformed`
/// to a frame a serial line cut short, `BadCrc` to a damaged one: the same as
/// `ClientError::is_link_damage`), and a busy device are worth another try.
fn retryable(f: &Failure) -> bool {
    f.kind == FailKind::Connection
        || matches!(
            f.code(),
            Some(ErrorCode::Busy | ErrorCode::Malformed | ErrorCode::BadCrc)
        )
}

/// Moves the bar to where a (resumed) transfer starts, so that rate and ETA count only what
/// moves from there.
fn start_bar(bar: &Option<ProgressBar>, at: u64) {
    if let Some(b) = bar {
        b.set_position(at);
        // Let the rate estimator record the jump, then forget it: the rate counts from here.
        b.tick();
        b.reset_eta();
        b.reset_elapsed();
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
}

fn report(out: &Reporter, verb: &str, name: &str, local: &str, t: &Transfer, took: Duration, aside: bool) {
    let secs = took.as_secs_f64().max(1e-9);
    let moved = t.size - t.resumed_from;
    let bps = moved as f64 / secs;
    let resumed = if t.resumed_from > 0 {
        format!(", resumed at {} ({} moved)", bytes(t.resumed_from), bytes(moved))
    } else {
        String::new()
    };
    let human = format!(
        "{verb} {name}: {} in {secs:.2} s, {}{resumed}, sha256 {}",
        bytes(t.size),
        rate(bps),
        hex(&t.sha256)
    );
    let value = json!({"name": name, "local": local, "size": t.size, "sha256": hex(&t.sha256),
                       "resumed_from": t.resumed_from, "transferred": moved, "seconds": secs, "bytes_per_s": bps});
    if aside {
        out.result_aside(human, value);
    } else {
        out.result(human, value);
    }
}

pub fn put(
    t: &Target,
    out: &Reporter,
    local: &Path,
    remote: Option<&str>,
    overwrite: bool,
    retries: u32,
) -> Result<()> {
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
    on_interrupt(out.json(), || {
        Failure::new(
            FailKind::Interrupted,
            "interrupted before the upload started: nothing was sent",
        )
    });
    // Stdin is spooled to a temporary file: the upload announces size and SHA-256 first.
    let (file, _spool, shown) = if stdin {
        let mut spool =
            tempfile::tempfile().map_err(|e| local_err("create a temporary file for", Path::new("stdin"), e))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool)
            .map_err(|e| local_err("read", Path::new("stdin"), e))?;
        spool.rewind().map_err(|e| local_err("rewind", Path::new("stdin"), e))?;
        (spool, true, "-".to_string())
    } else {
        if local.is_dir() {
            return Err(Failure::local(format!("{} is a directory", local.display()))
                .hint("put uploads one file; give its path"));
        }
        let f = File::open(local).map_err(|e| local_err("open", local, e))?;
        (f, false, local.display().to_string())
    };
    let (sha, size) = sha256_of(BufReader::new(&file)).map_err(|e| local_err("read", local, e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let bar = out.progress(size, &format!("put {name}"));
    let resume_cmd = t.command(&format!(
        "put {} {}{}",
        shell_quote(&shown),
        shell_quote(&name),
        if overwrite { " --overwrite" } else { "" }
    ));
    {
        let (n, cmd) = (name.clone(), resume_cmd.clone());
        on_interrupt(out.json(), move || {
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
    let start = Instant::now();
    // Where the first attempt started, and whether an attempt got every byte acknowledged (so
    // that it may have sent its commit, and the device may have carried it out although the
    // answer never came back).
    let mut started_at = None;
    let mut all_acked = false;
    let result = with_retries(out, retries, || {
        let mut c = open(t, out)?;
        let mut first = true;
        let r = c.put(&name, &mut reader, size, sha, overwrite, |n| {
            started_at.get_or_insert(n);
            all_acked |= n == size;
            if first {
                first = false;
                start_bar(&bar, n);
            } else if let Some(b) = &bar {
                b.set_position(n);
            }
        });
        match r {
            // A retry after an attempt that may have committed: the file is there, and counts
            // as this upload only if the device shows exactly its size and SHA-256.
            Err(e) if all_acked && !overwrite && e.code() == Some(ErrorCode::AlreadyExists) => {
                if c.holds(&name, size, sha)? {
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
            r => r.map_err(Failure::from),
        }
    });
    clear_interrupt();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let tr = result.map_err(|f| put_refused(t, f, &name, size, overwrite, &resume_cmd))?;
    report(out, "put", &name, &shown, &tr, start.elapsed(), false);
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
            let (free, old) = match open(t, &out) {
                Ok(mut c) => {
                    let free = c
                        .hello("host-cli")
                        .ok()
                        .map(|i| i.storage_capacity.saturating_sub(i.storage_used));
                    let old = if overwrite {
                        c.stat(name).ok().map(|(s, _)| s)
                    } else {
                        None
                    };
                    (free, old)
                }
                Err(_) => (None, None),
            };
            let free_text = free
                .map(|b| format!(": it has {} of space free", bytes(b)))
                .unwrap_or_default();
            let mut msg = format!("`{name}` ({}) does not fit on the device{free_text}", bytes(size));
            let hint = match old {
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
            Failure { message: msg, ..f }.hint(hint)
        }
        // Not the refusal of the whole connection (every session in use, PROTOCOL.md §13), which
        // says so itself.
        Some(ErrorCode::Busy) if !f.message.contains("every session") => Failure {
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
    let dest = destination(remote, local)?;
    if dest.is_dir() {
        return Err(
            Failure::local(format!("{} is a directory", dest.display())).hint("name a file, or remove the directory")
        );
    }
    if dest.exists() && !overwrite {
        return Err(
            Failure::local(format!("{} already exists", dest.display())).hint(format!(
                "add --overwrite to replace it: {}",
                t.command(&format!(
                    "get {} {} --overwrite",
                    shell_quote(remote),
                    shell_quote(&dest.display().to_string())
                ))
            )),
        );
    }
    let part = with_suffix(&dest, ".part");
    let label_path = with_suffix(&dest, ".part.tether");
    let mut c = open(t, out)?;
    let (size, sha) = c.stat(remote).map_err(|e| file_refused(t, e.into(), remote))?;
    drop(c);
    let label = part_label(size, &sha);
    // Resume only from a .part of this very file (same size and SHA-256 on the device).
    let resumable = fs::read_to_string(&label_path).is_ok_and(|l| l == label)
        && fs::metadata(&part).is_ok_and(|m| m.is_file() && m.len() <= size);
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
    let resume_cmd = t.command(&format!(
        "get {} {}{}",
        shell_quote(remote),
        shell_quote(&dest.display().to_string()),
        if overwrite { " --overwrite" } else { "" }
    ));
    {
        let (part, cmd) = (part.clone(), resume_cmd.clone());
        on_interrupt(out.json(), move || {
            let kept = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            Failure::new(
                FailKind::Interrupted,
                format!(
                    "interrupted: kept {} of {} in {}",
                    bytes(kept),
                    bytes(size),
                    part.display()
                ),
            )
            .hint(format!("resume with: {cmd}"))
        });
    }
    let bar = out.progress(size, &format!("get {remote}"));
    let start = Instant::now();
    let result = with_retries(out, retries, || {
        // Every attempt continues from what the .part file holds.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&part)
            .map_err(|e| local_err("open", &part, e))?;
        let (state, held) = sha256_state_of(BufReader::new(&file)).map_err(|e| local_err("read", &part, e))?;
        if held > 0 {
            out.detail(format_args!("resuming at {}", bytes(held)));
        }
        start_bar(&bar, held);
        let mut c = open(t, out)?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        let r = c.get(remote, held, &mut w, state, |n| {
            if let Some(b) = &bar {
                b.set_position(n)
            }
        });
        let r = r.map_err(|e| file_refused(t, e.into(), remote))?;
        if r.sha256 != sha {
            return Err(Failure::new(
                FailKind::Protocol,
                format!("`{remote}` changed on the device during the download"),
            )
            .hint("download it again"));
        }
        w.flush().map_err(|e| local_err("write", &part, e))?;
        Ok(r)
    });
    clear_interrupt();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(tr) => {
            fs::rename(&part, &dest).map_err(|e| local_err("rename the download into", &dest, e))?;
            let _ = fs::remove_file(&label_path);
            report(
                out,
                "get",
                remote,
                &dest.display().to_string(),
                &tr,
                start.elapsed(),
                false,
            );
            Ok(())
        }
        Err(f) => {
            let kept = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            if f.kind == FailKind::Connection && kept > 0 {
                // Resumable: keep it and say how.
                let msg = format!(
                    "{}; kept {} of {} in {}",
                    f.message,
                    bytes(kept),
                    bytes(size),
                    part.display()
                );
                Err(Failure { message: msg, ..f }.hint(format!("resume with: {resume_cmd}")))
            } else {
                let _ = fs::remove_file(&part);
                let _ = fs::remove_file(&label_path);
                Err(f)
            }
        }
    }
}

/// `get NAME -`: the file to stdout, verified at the end (a mismatch is an error after the
/// fact: the bytes are already out). The result line goes to stderr.
fn get_to_stdout(t: &Target, out: &Reporter, remote: &str) -> Result<()> {
    let mut c = open(t, out)?;
    let start = Instant::now();
    let stdout = std::io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    let tr = c
        .get(remote, 0, &mut w, Sha256::new(), |_| {})
        .map_err(|e| file_refused(t, e.into(), remote))?;
    w.flush().map_err(|e| local_err("write", Path::new("stdout"), e))?;
    drop(w);
    report(out, "get", remote, "-", &tr, start.elapsed(), true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_host::ClientError;

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
        let sessions = Failure::from(ClientError::Device {
            code: ErrorCode::Busy as u16,
            message: "every session is in use; try again".into(),
        });
        let told = put_refused(&t, sessions, "f.bin", 1, false, "again");
        assert!(told.message.contains("every session is in use"), "{}", told.message);
        let told = put_refused(&t, refused(ErrorCode::Busy), "f.bin", 1, false, "again");
        assert!(told.message.contains("another upload of `f.bin`"), "{}", told.message);
    }

    #[test]
    fn link_damage_busy_and_dropped_connections_are_retried_refusals_are_not() {
        assert!(retryable(&Failure::from(ClientError::Connection("broke".into()))));
        assert!(retryable(&Failure::from(ClientError::Timeout("slow".into()))));
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
}
