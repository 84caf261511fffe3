//! One command on many devices: `--to A,B,C`, `--to @GROUP` (a group of the config file), `--to
//! @discover[:WHERE]`.
//!
//! Each device gets the command as a run of its own (its own target, sessions, key and
//! hints), on a pool of `--jobs` threads; its result is captured instead of printed. At the end
//! every device has a line (ok or the error, and its time), in the order of the list, and the
//! totals follow; with `--json`, one object per device and then the summary. The exit code is 0
//! when every device succeeded, else that of the first device of the list that failed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tether_host::net::Endpoint;
use tether_host::targets::{self, ExpandError};
use tether_host::units::plural;

use crate::cli::{Args, Command, TimeAction};
use crate::cmd::firmware::FwAction;
use crate::cmd::{self, Result, Target};
use crate::config;
use crate::report::{Failure, Reporter};

pub use tether_host::targets::{Item, To};

/// One device of a fan-out: how the output names it, and the run's arguments for it alone.
struct Member {
    label: String,
    args: Args,
}

/// `args` aimed at one device: `to`, or the config file's device `name`.
fn aimed(args: &Args, to: Option<Endpoint>, name: Option<&str>) -> Args {
    let mut a = args.clone();
    a.to = to.map(To::One);
    a.device = name.map(str::to_string);
    a
}

/// The devices `items` name, each once, in order.
fn members(args: &Args, out: &Reporter, items: &[Item]) -> Result<Vec<Member>> {
    let list = targets::expand(
        items,
        || config::load(config::path().as_deref()),
        |scope| {
            let texts: Vec<String> = scope.iter().map(|s| s.to_string()).collect();
            let scope = cmd::discover::scope(args, &texts)?;
            // The probe only: a device found by mDNS alone may lack its TCP port.
            let how = cmd::discover::How {
                mdns: cmd::discover::Mdns::Off,
                usb_serial: false,
            };
            cmd::discover::find(args, out, &scope, how)
        },
    )
    .map_err(|e| match e {
        ExpandError::Config(m) => Failure::usage(m),
        ExpandError::NoGroup { name, known } => {
            Failure::usage(format!("no group `{name}` in the config file")).hint(if known.is_empty() {
                "add one: [groups] NAME = [\"DEVICE\", \"HOST:PORT\", …] (docs/CLI.md, \"Many devices\")".to_string()
            } else {
                format!("its groups: {}", known.join(", "))
            })
        }
        ExpandError::BadEntry { group, entry, why } => Failure::usage(format!(
            "group `{group}` in the config file: `{entry}` is neither a named device nor an address ({why})"
        )),
        ExpandError::NoneDiscovered => Failure::new(
            crate::report::FailKind::Connection,
            "@discover: no device answered the discovery probe",
        )
        .hint("`host-cli discover WHERE` shows what answers; give WHERE as @discover:WHERE"),
        ExpandError::Discover(f) => f,
    })?;
    Ok(list
        .into_iter()
        .map(|m| Member {
            args: aimed(args, m.to, m.name.as_deref()),
            label: m.label,
        })
        .collect())
}

/// The label as a file name: `sim-007`, `127.0.1.7_7070`.
fn file_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The command for one device: a `get` writes into a directory of its own under LOCAL.
fn command_for(args: &Args, label: &str, base: Option<&Path>) -> Command {
    match (&args.command, base) {
        (
            Command::Get {
                remote,
                overwrite,
                resume,
                ..
            },
            Some(base),
        ) => Command::Get {
            remote: remote.clone(),
            local: Some(base.join(file_label(label))),
            overwrite: *overwrite,
            resume: *resume,
        },
        (c, _) => c.clone(),
    }
}

/// Checks that the command runs on many devices; for `get`, makes the directories the files go
/// to and returns where.
fn prepare(args: &Args, members: &[Member]) -> Result<Option<PathBuf>> {
    let runs = matches!(
        args.command,
        Command::Info
            | Command::Exec { .. }
            | Command::Put { .. }
            | Command::Get { .. }
            | Command::Rm { .. }
            | Command::Time {
                action: Some(TimeAction::Set),
                ..
            }
            | Command::Reset
            | Command::Fw {
                action: FwAction::Status
                    | FwAction::Upload { .. }
                    | FwAction::Test { .. }
                    | FwAction::Confirm
                    | FwAction::Update { .. }
            }
    );
    if !runs {
        return Err(Failure::usage("this command talks to one device").hint(
            "a list, @GROUP or @discover in --to works with info, exec, put, get, time set, rm, reset and fw status/upload/test/confirm/update",
        ));
    }
    match &args.command {
        Command::Put { local, .. } if local.as_os_str() == "-" => Err(Failure::usage(
            "`put -` reads stdin once: with several devices, put a file",
        )),
        Command::Get { local, .. } => {
            let base = local.clone().unwrap_or_else(|| PathBuf::from("."));
            if base.as_os_str() == "-" {
                return Err(Failure::usage(
                    "`get NAME -` writes one file to stdout: with several devices, give a directory",
                ));
            }
            if !base.is_dir() {
                return Err(Failure::local(format!("{} is not a directory", base.display())).hint(
                    "with several devices, `get NAME DIR` writes DIR/DEVICE/NAME for each: give an existing directory",
                ));
            }
            for m in members {
                let dir = base.join(file_label(&m.label));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Failure::local(format!("cannot create {} ({e})", dir.display())))?;
            }
            Ok(Some(base))
        }
        _ => Ok(None),
    }
}

/// How one device's run ended.
struct Outcome {
    /// Where it went (`ADDRESS:PORT`).
    to: String,
    /// Its result, or its failure (with the exit code it would have had alone).
    result: std::result::Result<Value, (Failure, Value)>,
    /// Its human result text, for the one-line summary.
    human: String,
    took: Duration,
}

/// Runs the command for `m` alone, its output captured.
fn one(m: &Member) -> Outcome {
    let start = Instant::now();
    let rep = Reporter::capturing();
    let (to, ran) = match Target::resolve(&m.args) {
        Ok(t) => (
            t.addr.to_string(),
            cmd::run_on(&m.args, &t, &rep).map_err(|f| cmd::finish(&t, f)),
        ),
        Err(f) => (m.label.clone(), Err(f)),
    };
    let captured = rep.take_captured();
    let (human, value) = captured.last().cloned().unwrap_or_else(|| (String::new(), json!({})));
    Outcome {
        to,
        result: match ran {
            Ok(()) => Ok(value),
            Err(f) => {
                let v = rep.failure_value(&f);
                Err((f, v))
            }
        },
        human,
        took: start.elapsed(),
    }
}

/// One line about a device's result, from its JSON (the human text of some commands is long).
fn summary(command: &Command, human: &str, v: &Value) -> String {
    let first = |s: &str| s.lines().next().unwrap_or("").trim().to_string();
    match command {
        Command::Info => format!(
            "{}, protocol v{}, up {} s, {} commands",
            v["device"].as_str().unwrap_or("?"),
            v["version"],
            v["uptime_ms"].as_u64().unwrap_or(0) / 1000,
            v["commands"].as_array().map_or(0, Vec::len)
        ),
        Command::Exec { .. } => first(v["output"].as_str().unwrap_or("")),
        _ => first(human),
    }
}

/// Runs `args.command` on every device `items` name.
pub fn run(args: &Args, out: &Reporter, items: &[Item]) -> Result<()> {
    let start = Instant::now();
    let mut members = members(args, out, items)?;
    let base = prepare(args, &members)?;
    for m in members.iter_mut() {
        m.args.command = command_for(&m.args, &m.label, base.as_deref());
    }
    let n = members.len();
    let bar = progress(out, n);
    let next = AtomicUsize::new(0);
    let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    let (mut ok, mut failed) = (0usize, 0usize);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        for _ in 0..usize::from(args.jobs).min(n) {
            let (tx, next, members) = (tx.clone(), &next, &members);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(m) = members.get(i) else { break };
                if tx.send((i, one(m))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, o) in rx {
            match &o.result {
                Ok(_) => ok += 1,
                Err((f, _)) => {
                    failed += 1;
                    if let Some(bar) = &bar {
                        bar.println(format!("FAIL {}: {}", members[i].label, f.message));
                    }
                }
            }
            if let Some(bar) = &bar {
                bar.set_message(format!("ok {ok}, failed {failed}"));
                bar.inc(1);
            }
            outcomes[i] = Some(o);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    report(
        args,
        out,
        &members,
        outcomes.into_iter().flatten().collect(),
        start.elapsed(),
    )
}

/// A progress bar on a terminal (not with `--json` or `--quiet`).
fn progress(out: &Reporter, n: usize) -> Option<ProgressBar> {
    let bar = out.progress(n as u64, "devices")?;
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} devices, {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix("fan-out");
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    Some(bar)
}

/// Prints a line (or a JSON object) per device in the list's order, then the totals.
fn report(args: &Args, out: &Reporter, members: &[Member], outcomes: Vec<Outcome>, took: Duration) -> Result<()> {
    let n = outcomes.len();
    let label_w = members.iter().map(|m| m.label.len()).max().unwrap_or(0);
    let mut first_failure: Option<Failure> = None;
    let mut slowest: Option<(&str, Duration)> = None;
    for (m, o) in members.iter().zip(&outcomes) {
        let ms = o.took.as_secs_f64() * 1e3;
        if slowest.is_none_or(|(_, t)| o.took > t) {
            slowest = Some((&m.label, o.took));
        }
        let (line, mut value) = match &o.result {
            Ok(v) => (
                format!(
                    "ok    {:<label_w$}  {ms:>7.0} ms  {}",
                    m.label,
                    summary(&args.command, &o.human, v)
                ),
                v.clone(),
            ),
            Err((f, v)) => {
                first_failure.get_or_insert_with(|| f.clone());
                (
                    format!(
                        "FAIL  {:<label_w$}  {ms:>7.0} ms  {} (exit {})",
                        m.label,
                        f.message,
                        f.exit_code()
                    ),
                    v.clone(),
                )
            }
        };
        if let Value::Object(map) = &mut value {
            map.insert("target".into(), json!(m.label));
            map.insert("to".into(), json!(o.to));
            map.insert("ms".into(), json!(ms.round()));
        }
        out.item(line, value);
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let open = outcomes
        .iter()
        .filter(|o| match &o.result {
            Ok(v) | Err((_, v)) => v["open_device"] == true,
        })
        .count();
    if open > 0 {
        out.device_open(
            true,
            format_args!(
                "{open} of these devices have no key: anyone who can reach them can change them (files, commands, clock); see `host-cli keygen`"
            ),
        );
    }
    let slow = slowest.map_or(String::new(), |(l, t)| {
        format!("; slowest {l} {:.0} ms", t.as_secs_f64() * 1e3)
    });
    let totals = json!({"devices": n, "succeeded": n - failed, "failed": failed, "seconds": took.as_secs_f64()});
    match first_failure {
        None => {
            out.result(
                format!(
                    "{}: all ok in {:.2} s{slow}",
                    plural(n as u64, "device"),
                    took.as_secs_f64()
                ),
                totals,
            );
            Ok(())
        }
        Some(first) => {
            let mut f = Failure {
                message: format!("{failed} of {} failed", plural(n as u64, "device")),
                hint: Some(format!(
                    "the lines above say which and why; the exit code is that of the first that failed ({})",
                    first.message
                )),
                extra: serde_json::Map::new(),
                ..first
            };
            if let Value::Object(t) = totals {
                f.extra.extend(t);
            }
            Err(f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_file_names() {
        assert_eq!(file_label("127.0.1.7:7070"), "127.0.1.7_7070");
        assert_eq!(file_label("sim-007"), "sim-007");
        assert_eq!(file_label("serial:/dev/tty@9600"), "serial__dev_tty_9600");
    }
}
