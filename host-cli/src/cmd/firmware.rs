//! `fw …` and `reset`: firmware update (docs/CLI.md "Firmware update", PROTOCOL.md §11.12).
//!
//! `fw keygen` and `fw sign` work on local files only; the others talk to the device's update
//! service. `fw update` is the whole flow: upload (resuming, with `--retries`), test, reset,
//! reconnect, check which image runs, confirm — or report that the device went back to the
//! previous image (exit code 7).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{json, Value};
use tether_core::msg::Digest;
use tether_core::update::{BoardId, Header, Semver};
use tether_core::wire::ErrorCode;
use tether_host::firmware::{self, FirmwareStatus};
use tether_host::units::bytes;

use super::transfer::{hex, with_retries};
use super::{open, shell_quote, Result, Target};
use crate::report::{FailKind, Failure, Reporter};

/// How long `fw update` waits for the device to come back after its reset.
const REBOOT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Subcommand)]
pub enum FwAction {
    /// Write a new signing key to KEY (mode 600; keep it off the devices) and its public key to
    /// KEY.pub (give that to the device: `sim --fw-key KEY.pub`).
    Keygen {
        /// The signing key file to create.
        key: PathBuf,
        /// Replace KEY and KEY.pub if they exist (devices then refuse images signed with the new
        /// key until they are given the new KEY.pub).
        #[arg(long)]
        force: bool,
    },
    /// Make a signed image of a firmware binary (PROTOCOL.md §18.1).
    #[command(disable_version_flag = true)]
    Sign {
        /// The signing key (from `fw keygen`).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The image's version, X.Y.Z.
        #[arg(long, value_name = "X.Y.Z", value_parser = parse_version)]
        version: Semver,
        /// The board it is for (default: any board).
        #[arg(long, value_name = "ID", value_parser = parse_board)]
        board: Option<BoardId>,
        /// The security counter: raise it when the image fixes a vulnerability, so that devices
        /// refuse the older images from then on.
        #[arg(long, value_name = "N", default_value_t = 0)]
        security_counter: u32,
        /// Where the body must lie to run, for a board that runs images in place (e.g.
        /// 0x21001100).
        #[arg(long, value_name = "ADDR", default_value = "0", value_parser = parse_address)]
        load_address: u32,
        /// The firmware binary.
        input: PathBuf,
        /// The signed image to write.
        output: PathBuf,
    },
    /// Show the device's two slots and which one runs.
    Status,
    /// Upload a signed image into the slot that is not running; the device checks it (hash,
    /// signature, board, security counter). An interrupted upload of the same image resumes.
    Upload {
        /// The signed image.
        image: PathBuf,
    },
    /// Mark the image in the other slot to run once, on trial, at the next reset.
    Test {
        /// Its image hash (64 hex digits, from `fw status`); default: whatever image is there.
        #[arg(value_parser = parse_hash)]
        hash: Option<Digest>,
    },
    /// Keep the image on trial: it becomes the one the device boots.
    Confirm,
    /// The whole update: upload, test, reset, reconnect, check that the new image runs, confirm.
    /// Exit code 7 when the device went back to the previous image.
    Update {
        /// The signed image.
        image: PathBuf,
        /// Leave the new image on trial: the application confirms it after its own self-test,
        /// or the next reset goes back to the previous image.
        #[arg(long)]
        no_confirm: bool,
    },
}

fn parse_version(s: &str) -> std::result::Result<Semver, String> {
    Semver::parse(s).ok_or_else(|| format!("`{s}` is not a version X.Y.Z (three numbers up to 65535)"))
}

fn parse_board(s: &str) -> std::result::Result<BoardId, String> {
    BoardId::new(s).ok_or_else(|| format!("`{s}` is not a board id: 1 to 16 of A-Z a-z 0-9 . _ -"))
}

fn parse_address(s: &str) -> std::result::Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not an address (decimal, or hex with 0x)"))
}

fn parse_hash(s: &str) -> std::result::Result<Digest, String> {
    let bad = || format!("`{s}` is not an image hash: 64 hex digits (see `host-cli fw status`)");
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut d = [0u8; 32];
    for (byte, pair) in d.iter_mut().zip(s.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
    }
    Ok(d)
}

/// `fw keygen` and `fw sign`, which need no device; `None` for the others.
pub fn run_local(out: &Reporter, action: &FwAction) -> Option<Result<()>> {
    Some(match action {
        FwAction::Keygen { key, force } => keygen(out, key, *force),
        FwAction::Sign {
            key,
            version,
            board,
            security_counter,
            load_address,
            input,
            output,
        } => sign(
            out,
            key,
            *version,
            board.unwrap_or(BoardId::ANY),
            *security_counter,
            *load_address,
            input,
            output,
        ),
        _ => return None,
    })
}

/// The commands that talk to the device.
pub fn run(t: &Target, out: &Reporter, action: &FwAction, retries: u32) -> Result<()> {
    run_on(t, out, action, retries).map_err(|f| refused(t, f))
}

fn run_on(t: &Target, out: &Reporter, action: &FwAction, retries: u32) -> Result<()> {
    match action {
        FwAction::Status => {
            let s = open(t, out)?.fw_status()?;
            report_status(out, &s);
            Ok(())
        }
        FwAction::Upload { image } => {
            let (bytes, header) = read_image(image)?;
            upload(t, out, &bytes, header, retries)?;
            let s = open(t, out)?.fw_status()?;
            out.result(
                format_args!(
                    "uploaded {} ({}) into slot {}: pending; `{}` marks it to run",
                    image.display(),
                    header.version,
                    1 - s.running,
                    t.command("fw test")
                ),
                s.to_json(),
            );
            Ok(())
        }
        FwAction::Test { hash } => {
            let s = open(t, out)?.fw_test(*hash).map_err(|e| refused(t, e.into()))?;
            let slot = s.other_slot();
            out.result(
                format_args!(
                    "slot {} ({}) runs on trial at the next reset: `{}`; unless it is confirmed, the reset after goes back",
                    1 - s.running,
                    slot.version,
                    t.command("reset")
                ),
                s.to_json(),
            );
            Ok(())
        }
        FwAction::Confirm => {
            let s = open(t, out)?.fw_confirm().map_err(|e| refused(t, e.into()))?;
            let r = s.running_slot();
            out.result(
                format_args!(
                    "slot {} ({}) is confirmed: the device boots it from now on",
                    s.running, r.version
                ),
                s.to_json(),
            );
            Ok(())
        }
        FwAction::Update { image, no_confirm } => update(t, out, image, *no_confirm, retries),
        FwAction::Keygen { .. } | FwAction::Sign { .. } => unreachable!("handled before resolving the device"),
    }
}

/// For `info`: the `firmware` line and JSON of the image running, when the session may ask
/// (`allowed`) and the device has the update service; an empty line and `null` otherwise.
pub fn running(c: &mut tether_host::net::AnyClient, allowed: bool) -> (String, Value) {
    if !allowed {
        return (String::new(), Value::Null);
    }
    match c.fw_status().ok() {
        Some(s) => {
            let r = s.running_slot();
            (
                format!("firmware   slot {} runs {} ({})\n", s.running, r.version, r.state),
                json!({"slot": s.running, "version": r.version.to_string(), "state": r.state, "hash": hex(&r.hash)}),
            )
        }
        None => (String::new(), Value::Null),
    }
}

/// `reset`.
pub fn reset(t: &Target, out: &Reporter) -> Result<()> {
    open(t, out)?.reset().map_err(|e| refused(t, e.into()))?;
    out.result("the device is resetting", json!({"reset": true}));
    Ok(())
}

/// Writes `text` to a new file `path` (mode `mode`), or over it with `force` (by a rename, so
/// the old file is whole until the new one is).
fn write_key_file(path: &Path, text: &[u8], mode: u32, force: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let target = if force {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".new-{}", std::process::id()));
        PathBuf::from(tmp)
    } else {
        path.to_path_buf()
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let written = opts
        .open(&target)
        .and_then(|mut f| f.write_all(text).and_then(|()| f.sync_all()));
    let placed = written.and_then(|()| if force { std::fs::rename(&target, path) } else { Ok(()) });
    if placed.is_err() && (force || !path.exists()) {
        let _ = std::fs::remove_file(&target);
    }
    placed
}

fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn keygen(out: &Reporter, key: &Path, force: bool) -> Result<()> {
    let public = pub_path(key);
    if !force {
        for p in [key, &public] {
            if p.exists() {
                return Err(Failure::local(format!(
                    "{} exists: fw keygen never replaces a key unless told to",
                    p.display()
                ))
                .hint("add --force to replace the pair (devices then need the new KEY.pub), or pick another KEY"));
            }
        }
    }
    let signing = firmware::generate_signing_key();
    let mut secret = firmware::key_file_text(signing.to_bytes());
    let written = write_key_file(key, &secret, 0o600, force);
    zeroize::Zeroize::zeroize(&mut secret);
    written.map_err(|e| Failure::local(format!("cannot write the signing key {} ({e})", key.display())))?;
    let text = firmware::key_file_text(signing.verifying_key().to_bytes());
    write_key_file(&public, &text, 0o644, force)
        .map_err(|e| Failure::local(format!("cannot write the public key {} ({e})", public.display())))?;
    let q = |p: &Path| shell_quote(&p.display().to_string());
    out.result(
        format_args!(
            "wrote a signing key to {} (keep it secret, off the devices) and its public key to {}\n\
             sign:   host-cli fw sign --key {} --version 1.0.0 firmware.bin firmware.img\n\
             device: sim --fw-key {}",
            key.display(),
            public.display(),
            q(key),
            q(&public)
        ),
        json!({"key": key.display().to_string(), "public_key": public.display().to_string()}),
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn sign(
    out: &Reporter,
    key: &Path,
    version: Semver,
    board: BoardId,
    counter: u32,
    load_address: u32,
    input: &Path,
    output: &Path,
) -> Result<()> {
    let signing = firmware::read_signing_key(key).map_err(Failure::from)?;
    let body = std::fs::read(input).map_err(|e| Failure::local(format!("cannot read {} ({e})", input.display())))?;
    let header_room = tether_core::update::image::HEADER_LEN;
    if body.len() > u32::MAX as usize - header_room {
        return Err(Failure::usage(format!("{} is too large for an image", input.display())));
    }
    let image = firmware::sign(&signing, &body, version, counter, board, load_address);
    std::fs::write(output, &image).map_err(|e| Failure::local(format!("cannot write {} ({e})", output.display())))?;
    let hash = hex(&Header::parse(&image)
        .map_err(|e| Failure::new(FailKind::Protocol, e.to_string()))?
        .hash);
    let board_text = if board.is_any() { "any board" } else { board.as_str() };
    out.result(
        format_args!(
            "wrote {} ({}): version {version}, security counter {counter}, for {board_text}\nimage hash {hash}",
            output.display(),
            bytes(image.len() as u64)
        ),
        json!({"output": output.display().to_string(), "size": image.len(), "version": version.to_string(),
               "security_counter": counter, "board": board.as_str(), "load_address": load_address, "hash": hash}),
    );
    Ok(())
}

/// Reads a signed image and its header (a file that is not one is a usage error).
fn read_image(path: &Path) -> Result<(Vec<u8>, Header)> {
    let bytes = std::fs::read(path).map_err(|e| Failure::local(format!("cannot read {} ({e})", path.display())))?;
    let header = Header::parse(&bytes).map_err(|e| {
        Failure::usage(format!("{} is not a signed firmware image: {e}", path.display()))
            .hint("make one with `host-cli fw sign --key KEY --version X.Y.Z IN OUT`")
    })?;
    if header.image_len() != bytes.len() as u64 {
        return Err(Failure::usage(format!(
            "{} is not a whole image: its header says {} bytes, the file has {}",
            path.display(),
            header.image_len(),
            bytes.len()
        )));
    }
    Ok((bytes, header))
}

/// Uploads the image (resuming; retried as `put` is), with a progress bar.
fn upload(t: &Target, out: &Reporter, image: &[u8], header: Header, retries: u32) -> Result<()> {
    let bar = out.progress(image.len() as u64, &format!("fw upload {}", header.version));
    // What the device has acknowledged: a retry after progress starts its count again.
    let acknowledged = std::cell::Cell::new(0u64);
    let mut recovered = 0;
    let result = with_retries(
        out,
        retries,
        || acknowledged.get(),
        &mut recovered,
        || {
            let mut c = open(t, out)?;
            c.fw_upload(image, |n| {
                acknowledged.set(n);
                if let Some(b) = &bar {
                    b.set_position(n);
                }
            })
            .map_err(|e| refused(t, e.into()))
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let up = result?;
    if up.resumed_from > 0 {
        out.note(format_args!("resumed the upload at byte {}", up.resumed_from));
    }
    Ok(())
}

/// A device's refusal of an image or an update step, in words, with what to do.
fn refused(t: &Target, f: Failure) -> Failure {
    let hint = match f.code() {
        Some(ErrorCode::BadSignature) => {
            "sign the image with the key whose KEY.pub the device holds (`host-cli fw sign --key KEY`)".to_string()
        }
        Some(ErrorCode::WrongBoard) => format!(
            "sign it for this board (`fw sign --board ID`; `{}` shows the board id) or for any board",
            t.command("fw status")
        ),
        Some(ErrorCode::Downgrade) => format!(
            "sign it with a security counter at least the device's floor (`{}` shows it)",
            t.command("fw status")
        ),
        Some(ErrorCode::Busy) => format!(
            "an image on trial runs: `{}` keeps it, `{}` goes back",
            t.command("fw confirm"),
            t.command("reset")
        ),
        Some(ErrorCode::NotFound) => format!(
            "upload it first: `{}`; `{}` shows what the slots hold",
            t.command("fw upload IMAGE"),
            t.command("fw status")
        ),
        Some(ErrorCode::UnknownKind) => {
            "this device takes no firmware updates (sim: start it with --fw-key KEY.pub)".into()
        }
        _ => return f,
    };
    f.or_hint(hint)
}

fn report_status(out: &Reporter, s: &FirmwareStatus) {
    let mut human = String::from("slot  state      version        counter  size        hash\n");
    for (i, slot) in s.slots.iter().enumerate() {
        let empty = slot.state == "empty";
        human.push_str(&format!(
            "{i}     {:<10} {:<14} {:<8} {:<11} {}{}\n",
            slot.state,
            if empty {
                "-".to_string()
            } else {
                slot.version.to_string()
            },
            if empty {
                "-".to_string()
            } else {
                slot.security_counter.to_string()
            },
            if empty {
                "-".to_string()
            } else {
                bytes(u64::from(slot.size))
            },
            if empty { "-".to_string() } else { hex(&slot.hash) },
            if i == s.running { "  (running)" } else { "" }
        ));
    }
    human.push_str(&format!("board {}, security floor {}", s.board, s.floor));
    out.result(human, s.to_json());
}

/// `fw update`: upload, test, reset, reconnect, check, confirm.
fn update(t: &Target, out: &Reporter, path: &Path, no_confirm: bool, retries: u32) -> Result<()> {
    let (image, header) = read_image(path)?;
    let before = open(t, out)?.fw_status()?;
    if before.runs_confirmed(&header.hash) {
        out.result(
            format_args!(
                "the device already runs {} (slot {}); nothing to do",
                header.version, before.running
            ),
            before.to_json(),
        );
        return Ok(());
    }
    out.note(format_args!(
        "updating from {} (slot {}) to {}",
        before.running_slot().version,
        before.running,
        header.version
    ));
    upload(t, out, &image, header, retries)?;
    open(t, out)?
        .fw_test(Some(header.hash))
        .map_err(|e| refused(t, e.into()))?;
    out.note("the new image is marked for a trial boot; resetting the device");
    open(t, out)?.reset()?;
    let after = reconnect(t, out)?;
    went_back(t, &after, &header)?;
    if no_confirm {
        out.result(
            format_args!(
                "{} runs on trial (slot {}); it must confirm itself (or `{}`), or the next reset goes back",
                header.version,
                after.running,
                t.command("fw confirm")
            ),
            after.to_json(),
        );
        return Ok(());
    }
    let done = open(t, out)?.fw_confirm().map_err(|e| refused(t, e.into()))?;
    out.result(
        format_args!(
            "updated: {} runs in slot {} and is confirmed (the previous image, {}, stays in slot {})",
            header.version,
            done.running,
            before.running_slot().version,
            before.running
        ),
        done.to_json(),
    );
    Ok(())
}

/// After the reset of `fw update`: the new image must be the one running, else the device went
/// back to the previous one (exit code 7).
fn went_back(t: &Target, after: &FirmwareStatus, new: &Header) -> Result<()> {
    let Some(why) = after.went_back(&new.hash, &new.version) else {
        return Ok(());
    };
    let mut f = Failure::new(FailKind::Reverted, why).hint(format!(
        "`{}` shows the slots; the new image is `{}` there",
        t.command("fw status"),
        after.other_slot().state
    ));
    f.extra.insert("status".into(), after.to_json());
    Err(f)
}

/// Waits for the device to come back after its reset and asks which image runs.
fn reconnect(t: &Target, out: &Reporter) -> Result<FirmwareStatus> {
    let deadline = Instant::now() + REBOOT_WAIT.max(t.timeout);
    // Give the device a moment to go down, so that the old session is not the one found.
    std::thread::sleep(Duration::from_millis(300));
    loop {
        let quiet = Reporter::new(false, true, false);
        match open(t, &quiet).and_then(|mut c| Ok(c.fw_status()?)) {
            Ok(s) => return Ok(s),
            Err(f) if f.kind == FailKind::Connection && Instant::now() < deadline => {
                out.detail(format_args!("waiting for the device to come back ({})", f.message));
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(f) => return Err(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_host::firmware::SlotStatus;

    fn slot(state: &'static str, minor: u16, hash: u8) -> SlotStatus {
        SlotStatus {
            state,
            version: Semver::new(1, minor, 0),
            security_counter: 0,
            size: 300,
            hash: [hash; 32],
        }
    }

    #[test]
    fn a_device_running_the_previous_image_after_the_reset_is_exit_code_7() {
        use clap::Parser as _;
        let args = crate::cli::Args::try_parse_from(["host-cli", "--to", "127.0.0.1:7070", "fw", "status"]).unwrap();
        let t = Target::resolve(&args).unwrap();
        let new = Header::for_body(Semver::new(1, 1, 0), 0, BoardId::ANY, 0, b"new");
        let status = |running: usize, slots: [SlotStatus; 2]| FirmwareStatus {
            running,
            board: "tether-sim".into(),
            floor: 0,
            slots,
        };
        let stayed = status(1, [slot("active", 0, 1), slot("trial", 1, new.hash[0])]);
        let mut stayed = stayed;
        stayed.slots[1].hash = new.hash;
        assert!(went_back(&t, &stayed, &new).is_ok());
        let back = status(0, [slot("active", 0, 1), slot("reverted", 1, 9)]);
        let f = went_back(&t, &back, &new).unwrap_err();
        assert_eq!((f.kind, f.exit_code()), (FailKind::Reverted, 7));
        assert!(f.message.contains("went back to 1.0.0 (slot 0)"), "{}", f.message);
        assert!(f.hint.unwrap().contains("`reverted`"));
    }

    #[test]
    fn arguments_parse_strictly() {
        assert_eq!(parse_address("0x21001100"), Ok(0x2100_1100));
        assert_eq!(parse_address("4096"), Ok(4096));
        assert!(parse_address("0xzz").is_err());
        let h = "ab".repeat(32);
        assert_eq!(parse_hash(&h), Ok([0xab; 32]));
        assert!(parse_hash(&h[..62]).is_err());
        assert!(parse_hash(&"g".repeat(64)).is_err());
        assert!(parse_hash(&"é".repeat(32)).is_err());
        assert!(parse_version("1.2").is_err());
        assert!(parse_board("way-too-long-board-id").is_err());
    }
}
