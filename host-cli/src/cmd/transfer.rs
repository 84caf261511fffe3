//! `put` and `get`: verified transfers with progress, resume and retries.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use tether_core::service::files::check_name;
use tether_host::client::{sha256_of, sha256_state_of, Transfer};
use tether_host::ClientError;

use super::{open, Result};
use crate::cli::Args;
use crate::report::Reporter;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn local_err(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Local(format!("cannot {what} {}: {e}", path.display()))
}

/// Runs `attempt` once, then again after each dropped connection or frame damaged on the link,
/// up to `retries` times.
fn with_retries<T>(out: &Reporter, retries: u32, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match attempt() {
            Err(e) if e.is_link_damage() && tries < retries => {
                tries += 1;
                out.note(format_args!("{e}; reconnecting to resume (retry {tries} of {retries})"));
                std::thread::sleep(Duration::from_millis(200 * u64::from(tries)));
            }
            other => return other,
        }
    }
}

fn report(out: &Reporter, verb: &str, name: &str, t: &Transfer, took: Duration) {
    let secs = took.as_secs_f64().max(1e-9);
    let moved = t.size - t.resumed_from;
    let rate = moved as f64 / secs / 1e6;
    let resumed = if t.resumed_from > 0 {
        format!(" (resumed at {})", t.resumed_from)
    } else {
        String::new()
    };
    out.result(
        format_args!(
            "{verb} {name}: {} bytes in {secs:.2} s, {rate:.1} MB/s, sha256 {}{resumed}",
            t.size,
            hex(&t.sha256)
        ),
        json!({"ok": true, verb: name, "size": t.size, "sha256": hex(&t.sha256), "resumed_from": t.resumed_from,
               "seconds": secs, "mb_per_s": rate}),
    );
}

pub fn put(
    args: &Args,
    out: &Reporter,
    local: &Path,
    remote: Option<&str>,
    overwrite: bool,
    retries: u32,
) -> Result<()> {
    let name = match remote {
        Some(r) => r.to_string(),
        None => local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if check_name(&name).is_err() {
        return Err(ClientError::Local(format!(
            "invalid remote name `{name}`: names are 1 to 64 of A-Z a-z 0-9 . _ - and do not start with `.`"
        )));
    }
    let file = File::open(local).map_err(|e| local_err("open", local, e))?;
    let (sha, size) = sha256_of(BufReader::new(&file)).map_err(|e| local_err("read", local, e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let bar = out.progress(size, &format!("put {name}"));
    let start = Instant::now();
    let t = with_retries(out, retries, || {
        let mut c = open(args, out)?;
        c.put(&name, &mut reader, size, sha, overwrite, |n| {
            if let Some(b) = &bar {
                b.set_position(n)
            }
        })
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report(out, "put", &name, &t, start.elapsed());
    Ok(())
}

fn part_path(local: &Path) -> PathBuf {
    let mut s = local.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

pub fn get(args: &Args, out: &Reporter, remote: &str, local: Option<&Path>, resume: bool, retries: u32) -> Result<()> {
    let local = local.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(remote));
    let part = part_path(&local);
    if !resume {
        // A fresh download starts from nothing, whatever an earlier one left.
        File::create(&part).map_err(|e| local_err("create", &part, e))?;
    }
    let bar = out.progress(0, &format!("get {remote}"));
    let start = Instant::now();
    let result = with_retries(out, retries, || {
        // Every attempt continues from what the .part file holds.
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&part)
            .map_err(|e| local_err("open", &part, e))?;
        let (digest_state, held) = sha256_state_of(BufReader::new(&file)).map_err(|e| local_err("read", &part, e))?;
        let mut c = open(args, out)?;
        if let Some(b) = &bar {
            if let Ok((size, _)) = c.stat(remote) {
                b.set_length(size);
            }
        }
        let mut file = file;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| local_err("seek", &part, e))?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        c.get(remote, held, &mut w, digest_state, |n| {
            if let Some(b) = &bar {
                b.set_position(n)
            }
        })
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(t) => {
            fs::rename(&part, &local).map_err(|e| local_err("rename into", &local, e))?;
            report(out, "get", remote, &t, start.elapsed());
            Ok(())
        }
        Err(e) => {
            // Keep a partial download only where it can be resumed from.
            let keep = e.is_connection() && fs::metadata(&part).map(|m| m.len() > 0).unwrap_or(false);
            if keep {
                out.note(format_args!(
                    "partial download kept in {}; continue with --resume",
                    part.display()
                ));
            } else {
                let _ = fs::remove_file(&part);
            }
            Err(e)
        }
    }
}
