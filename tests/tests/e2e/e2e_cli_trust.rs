//! Issue 10, "a host-cli that a person and a script can trust", end to end: the real `host-cli`
//! against real `sim` processes on 127.0.0.1. One test per numbered point of the issue; every
//! misbehaviour the issue quotes is checked to be gone.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::*;

const MIB: usize = 1 << 20;

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// `host-cli --to TO ARGS` with nothing else set: no --udp-port, no environment, no config.
fn cli_cmd(to: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(host_cli_bin());
    cmd.args(["--to", to]).args(args);
    clean_cli_env(&mut cmd);
    cmd
}

fn cli(to: &str, args: &[&str]) -> Output {
    run_bounded(cli_cmd(to, args), HOST_CLI_LIMIT)
}

/// No line of a failure's output shows Rust's Debug formatting.
#[track_caller]
fn assert_no_debug_text(out: &Output) {
    for line in stdout(out).lines().chain(stderr(out).lines()) {
        assert!(
            !line.contains("Os {") && !line.contains("kind:") && !line.contains("Custom {"),
            "Debug text reached the user: {line:?}\n{}",
            describe(out)
        );
    }
}

/// The human failure shape: `error: …` then `hint: …` on stderr, nothing on stdout.
#[track_caller]
fn assert_explained(out: &Output) {
    assert_no_debug_text(out);
    let err = stderr(out);
    assert!(
        err.lines().any(|l| l.starts_with("error: ")),
        "no error line: {}",
        describe(out)
    );
    assert!(
        err.lines().any(|l| l.starts_with("hint: ")),
        "no hint: {}",
        describe(out)
    );
}

/// The lines of stdout parsed as JSON objects.
#[track_caller]
fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", describe(out)))
        })
        .inspect(|v| assert!(v.is_object(), "not an object: {v}"))
        .collect()
}

/// `--json` failure shape: one object on stdout, nothing on stderr, and its exit code inside.
#[track_caller]
fn assert_json_failure(out: &Output, kind: &str) -> Value {
    assert_eq!(stderr(out), "", "--json wrote to stderr: {}", describe(out));
    let v = json_lines(out);
    assert_eq!(v.len(), 1, "{}", describe(out));
    let v = v.into_iter().next().unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], kind, "{v}");
    assert_eq!(
        v["error"]["exit_code"].as_i64(),
        out.status.code().map(i64::from),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

// ---- 1. One device, one address -------------------------------------------------------------

#[test]
fn udp_commands_talk_to_the_device_named_by_to() {
    // Boards without a real-time clock, so a `time set` that reaches the wrong one shows.
    let a = Sim::start(&["--no-rtc"]);
    let b = Sim::start(&["--no-rtc"]);
    // The banner's commands are complete: run them as printed.
    let log = a.log();
    let try_lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("try:").or(Some(l.trim_start())))
        .filter(|l| l.trim_start().starts_with("host-cli "))
        .collect();
    assert!(try_lines.len() >= 2, "no commands in the banner:\n{log}");
    let mut ran_time_set = false;
    for line in &try_lines {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let mut cmd = Command::new(host_cli_bin());
        cmd.args(&words);
        clean_cli_env(&mut cmd);
        let out = run_bounded(cmd, HOST_CLI_LIMIT);
        assert!(out.status.success(), "banner command `{line}`: {}", describe(&out));
        ran_time_set |= line.contains("time set");
    }
    assert!(ran_time_set, "the banner shows no UDP command: {try_lines:?}");

    // `info` reports the UDP port the device advertises: the one sim forwards.
    let j = json_lines(&cli(&a.to(), &["--json", "info"]));
    assert_eq!(j[0]["udp_port"], a.udp_port, "{}", j[0]);
    assert_eq!(
        j[0]["clock_synced"], true,
        "the banner's `time set` did not reach A: {}",
        j[0]
    );
    // B's clock was never set: the UDP command to A went to A only.
    let j = json_lines(&cli(&b.to(), &["--json", "info"]));
    assert_eq!(j[0]["clock_synced"], false, "{}", j[0]);
    ok(&cli(&b.to(), &["time", "set"]));
    let t = json_lines(&cli(&b.to(), &["--json", "time"]));
    assert_eq!(t[0]["clock_synced"], true, "{}", t[0]);

    // chat and listen follow --to too.
    let chat = ok(&cli(&b.to(), &["chat", "-m", "to b"]));
    assert!(chat.contains("tether-sim> "), "{chat}");
    let listen = cli(&a.to(), &["listen", "--duration", "300ms"]);
    assert!(listen.status.success(), "{}", describe(&listen));

    // --udp-port still overrides what the device advertises (a port forward): a closed port
    // fails, and the message names that port.
    let closed = free_port();
    let out = cli(&a.to(), &["--udp-port", &closed.to_string(), "--timeout", "1s", "time"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains(&closed.to_string()), "{}", describe(&out));
    assert_explained(&out);
}

// ---- 2. Errors a person understands ---------------------------------------------------------

#[test]
fn every_failure_is_explained_classified_and_free_of_debug_text() {
    let sim = Sim::start(&[]);
    let to = sim.to();
    let plain = format!("127.0.0.1:{}", sim.plain_tcp_port);
    let dead = format!("127.0.0.1:{}", free_port());
    // (arguments, exit code, a phrase the message must contain)
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // A reply timeout: was `connection failed: Os { code: 11, kind: WouldBlock, … }`.
        (
            vec!["--to", &to, "--timeout", "300ms", "exec", "sleep", "3000"],
            3,
            "did not answer in time",
        ),
        // Was `device error 13 (unknown command): unknown command; try `help``.
        (vec!["--to", &to, "exec", "nosuch"], 1, "has no command `nosuch`"),
        // A non-Tether peer: was `bad frame from the device: header CRC mismatch`, exit 1.
        (vec!["--to", &plain, "info"], 3, "is not a Tether device"),
        // Bad flag values: were exit 3.
        (vec!["--to", "127.0.0.1:notaport", "info"], 2, "not a port number"),
        (vec!["--to", &to, "--timeout", "0s", "info"], 2, "out of range"),
        (vec!["--to", &to, "ping", "-c", "0"], 2, "0 is not in 1"),
        // Was `invalid name: no such file`.
        (
            vec!["--to", &to, "get", "my file.txt"],
            2,
            "not a valid device file name",
        ),
        (vec!["--to", &to, "stat", "nosuch.bin"], 1, "has no file `nosuch.bin`"),
        (vec!["--to", &dead, "info"], 3, "refused the connection"),
        (vec!["-d", "nobody", "info"], 2, "no device named `nobody`"),
    ];
    for (args, code, phrase) in &cases {
        let mut cmd = Command::new(host_cli_bin());
        cmd.args(args);
        clean_cli_env(&mut cmd);
        let out = run_bounded(cmd, HOST_CLI_LIMIT);
        assert_code(&out, *code);
        assert!(
            stderr(&out).contains(phrase),
            "{args:?}: wanted {phrase:?}: {}",
            describe(&out)
        );
        assert_eq!(stdout(&out), "", "{args:?}: a failure printed results");
        // clap's usage errors have their own shape; all others say what to try.
        if !stderr(&out).contains("For more information, try '--help'") {
            assert_explained(&out);
        }
        assert_no_debug_text(&out);

        // The same failure for scripts: one JSON object on stdout, nothing on stderr.
        let mut cmd = Command::new(host_cli_bin());
        cmd.arg("--json").args(args);
        clean_cli_env(&mut cmd);
        let out = run_bounded(cmd, HOST_CLI_LIMIT);
        assert_code(&out, *code);
        let kind = match code {
            1 => "device",
            2 => "usage",
            _ if phrase.contains("Tether") => "not_tether",
            _ => "connection",
        };
        let v = assert_json_failure(&out, kind);
        assert!(v["error"]["message"].as_str().unwrap().contains(phrase), "{v}");
    }
    // A refused local port points at the simulator, with the port to start it on.
    let out = cli(&dead, &["info"]);
    let port = dead.rsplit(':').next().unwrap();
    assert!(
        stderr(&out).contains("sim") && stderr(&out).contains(port),
        "{}",
        describe(&out)
    );
    // Device errors carry the protocol code for scripts.
    let v = assert_json_failure(&cli(&to, &["--json", "stat", "nosuch.bin"]), "device");
    assert_eq!(v["error"]["device_code"], 6, "{v}");
    assert_eq!(v["error"]["device_error"], "not found", "{v}");
    let mut sim = sim;
    assert!(sim.running(), "the device died:\n{}", sim.log());
}

// ---- 3. Exit codes that never collide -------------------------------------------------------

#[test]
fn exec_statuses_never_look_like_host_cli_failures() {
    let sim = Sim::start(&[]);
    let to = sim.to();
    // (command, its status, host-cli's exit code)
    for (args, status, code) in [
        (vec!["fail", "3"], 3, 13),    // was exit 3, "connection failure"
        (vec!["led", "blink"], 2, 12), // was exit 2, "usage"
        (vec!["fail", "1"], 1, 11),
        (vec!["fail", "115"], 115, 125),
        (vec!["fail", "116"], 116, 126),
        (vec!["fail", "256"], 256, 126), // was exit 0: 256 wrapped
        (vec!["fail", "300"], 300, 126),
        (vec!["fail", "-1"], -1, 126),
    ] {
        let mut a = vec!["exec"];
        a.extend(&args);
        let out = cli(&to, &a);
        assert_code(&out, code);
        assert!(
            stderr(&out).contains(&format!("exited with status {status}")),
            "{args:?}: {}",
            describe(&out)
        );
        assert_explained(&out);
        let mut a = vec!["--json", "exec"];
        a.extend(&args);
        let out = cli(&to, &a);
        assert_code(&out, code);
        let v = assert_json_failure(&out, "command");
        assert_eq!(v["status"], status, "{v}");
    }
    ok(&cli(&to, &["exec", "fail", "0"]));
    // The codes are documented where people look.
    let help = ok(&run_bounded(cli_cmd(&to, &["--help"]), HOST_CLI_LIMIT));
    for needle in ["Exit codes:", "10 + status", "126", "130"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CLI.md")).expect("docs/CLI.md");
    for needle in ["## Exit codes", "10 + status", "126", "130"] {
        assert!(doc.contains(needle), "docs/CLI.md lacks {needle:?}");
    }
}

// ---- 4. Transfers like rsync and curl -------------------------------------------------------

/// A process with a piped stdin whose stdout and stderr go to files (readable while it runs).
struct Interactive {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Interactive {
    fn spawn(mut cmd: Command, dir: &TempDir, label: &str) -> Interactive {
        let (out, err) = (dir.join(&format!("{label}.out")), dir.join(&format!("{label}.err")));
        cmd.stdin(Stdio::piped())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        let child = cmd.spawn().expect("spawn");
        Interactive {
            child: Some(child),
            out,
            err,
        }
    }

    fn write(&mut self, text: &str) {
        let stdin = self.child.as_mut().unwrap().stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Closes stdin and waits (bounded) for the exit status.
    fn finish(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        drop(child.stdin.take());
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return s.code(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    #[track_caller]
    fn wait_for(&self, limit: Duration, what: &str, check: impl Fn(&Interactive) -> bool) {
        let seen = poll_until(limit, Duration::from_millis(20), || check(self).then_some(()));
        assert!(
            seen.is_some(),
            "{what} did not happen within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A transfer big enough to interrupt mid-way in debug and in optimised builds.
fn interruptible_size() -> usize {
    if profile_dir().ends_with("debug") {
        24 * MIB
    } else {
        160 * MIB
    }
}

/// The device's `bytes in` counter (`exec stats`): how much it has received, all sessions.
fn bytes_in(to: &str) -> u64 {
    let out = cli(to, &["exec", "stats"]);
    let s = stdout(&out);
    let line = s
        .lines()
        .find(|l| l.starts_with("bytes"))
        .unwrap_or_default()
        .to_string();
    let mut w = line.split_whitespace();
    let _ = w.find(|x| *x == "in");
    w.next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Runs the command a hint prints after `resume with: `.
#[track_caller]
fn run_resume_hint(stderr_text: &str) -> Output {
    let line = stderr_text
        .lines()
        .find_map(|l| l.split("resume with: ").nth(1))
        .unwrap_or_else(|| panic!("no `resume with:` hint:\n{stderr_text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "host-cli", "{line}");
    let mut cmd = Command::new(host_cli_bin());
    cmd.args(&words[1..]);
    clean_cli_env(&mut cmd);
    run_bounded(cmd, HOST_CLI_LIMIT)
}

#[test]
fn get_and_put_resume_refuse_to_clobber_and_take_dirs_and_dashes() {
    let sim = Sim::start(&["--capacity", "400M"]);
    let to = sim.to();
    let dir = TempDir::new("rsync");
    let small = dir.join("small.txt");
    fs::write(&small, "twelve bytes").unwrap();
    ok(&cli(&to, &["put", p(&small)]));

    // get refuses to clobber (it used to overwrite silently); --overwrite replaces.
    let local = dir.join("here.txt");
    fs::write(&local, "mine").unwrap();
    let out = cli(&to, &["get", "small.txt", p(&local)]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("already exists") && stderr(&out).contains("--overwrite"),
        "{}",
        describe(&out)
    );
    assert_eq!(fs::read_to_string(&local).unwrap(), "mine");
    ok(&cli(&to, &["get", "small.txt", p(&local), "--overwrite"]));
    assert_eq!(fs::read_to_string(&local).unwrap(), "twelve bytes");
    // put refuses too, and says how to replace.
    let out = cli(&to, &["put", p(&small)]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("already has a file `small.txt`") && stderr(&out).contains("--overwrite"));

    // Into a directory: the remote name is kept (was "Not a directory" and a hidden .part).
    let sub = dir.join("sub");
    fs::create_dir(&sub).unwrap();
    ok(&cli(&to, &["get", "small.txt", &format!("{}/", p(&sub))]));
    assert_eq!(fs::read_to_string(sub.join("small.txt")).unwrap(), "twelve bytes");
    ok(&cli(&to, &["get", "small.txt", p(&sub), "--overwrite"]));
    let missing = dir.join("nodir");
    let out = cli(&to, &["get", "small.txt", &format!("{}/", p(&missing))]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("does not exist"), "{}", describe(&out));
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !leftovers.iter().any(|n| n.to_string_lossy().contains(".part")),
        "a .part was left: {leftovers:?}"
    );

    // `-` is stdout (it used to write a file named `-`) and stdin.
    let out = cli(&to, &["get", "small.txt", "-"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(out.stdout, b"twelve bytes");
    assert!(!Path::new("-").exists());
    let mut put = Interactive::spawn(cli_cmd(&to, &["put", "-", "piped.txt"]), &dir, "put-stdin");
    put.write("from stdin\n");
    assert_eq!(put.finish(HOST_CLI_LIMIT), Some(0), "{}", put.stderr());
    let out = cli(&to, &["get", "piped.txt", "-"]);
    assert_eq!(out.stdout, b"from stdin\n");
    let out = cli(&to, &["put", "-"]);
    assert_code(&out, 2);

    // A download interrupted with Ctrl-C says what it kept and how to resume; the printed
    // command resumes it, and the rate counts only what moved.
    let size = interruptible_size();
    let big = dir.join("big.bin");
    write_random(&big, size, 5);
    ok(&cli(&to, &["--timeout", "30s", "put", p(&big)]));
    let copy = dir.join("copy.bin");
    let part = dir.join("copy.bin.part");
    let get = Proc::spawn(cli_cmd(&to, &["get", "big.bin", p(&copy)]));
    let started = poll_until(Duration::from_secs(60), Duration::from_millis(5), || {
        fs::metadata(&part).ok().filter(|m| m.len() > MIB as u64).map(|_| ())
    });
    assert!(started.is_some(), "the download did not get under way");
    assert!(interrupt(get.id()));
    let out = get.output(HOST_CLI_LIMIT);
    assert_code(&out, 130);
    let err = stderr(&out);
    assert!(
        err.contains("interrupted: kept ") && err.contains("copy.bin.part"),
        "{}",
        describe(&out)
    );
    assert!(part.exists() && !copy.exists(), "{}", describe(&out));
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept < size as u64, "the download finished before the interrupt");
    let resumed = run_resume_hint(&err);
    let s = ok(&resumed);
    assert!(s.contains(", resumed at "), "{s}");
    assert_eq!(sha256_file(&copy), sha256_file(&big));
    assert!(!part.exists() && !dir.join("copy.bin.part.tether").exists());

    // A .part from another version of the file is not resumed: the result is the new file.
    fs::write(&part, vec![0u8; 4096]).unwrap();
    fs::write(dir.join("copy2.bin.part.tether"), "4096 00\n").unwrap();
    let copy2 = dir.join("copy2.bin");
    fs::write(dir.join("copy2.bin.part"), vec![0u8; 4096]).unwrap();
    let out = cli(&to, &["get", "small.txt", p(&copy2)]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fs::read_to_string(&copy2).unwrap(), "twelve bytes");
    assert!(stderr(&out).contains("starting over"), "{}", describe(&out));

    // An upload interrupted with Ctrl-C: the device keeps what it got; the hint resumes it.
    let up = dir.join("up.bin");
    write_random(&up, size, 6);
    let base = bytes_in(&to);
    let mut put = Proc::spawn(cli_cmd(&to, &["put", p(&up)]));
    let started = poll_until(Duration::from_secs(60), Duration::from_millis(10), || {
        (bytes_in(&to) > base + (size as u64) / 4).then_some(())
    });
    if put.finished() {
        panic!("the upload finished before the interrupt");
    }
    assert!(started.is_some(), "the upload did not get under way");
    assert!(interrupt(put.id()));
    let out = put.output(HOST_CLI_LIMIT);
    assert_code(&out, 130);
    let resumed = run_resume_hint(&stderr(&out));
    let s = ok(&resumed);
    assert!(s.contains(", resumed at "), "the upload started over: {s}");
    let j = json_lines(&cli(&to, &["--json", "stat", "up.bin"]));
    assert_eq!(j[0]["sha256"], sha256_file(&up));
}

#[test]
fn a_replace_that_does_not_fit_says_why_and_what_to_do() {
    let sim = Sim::start(&["--capacity", "3M"]);
    let to = sim.to();
    let dir = TempDir::new("nofit");
    let a = dir.join("a.bin");
    write_random(&a, 2 * MIB, 1);
    ok(&cli(&to, &["put", p(&a)]));
    write_random(&a, 2 * MIB, 2);
    // Was a bare "2097152 bytes do not fit (1048576 bytes free)".
    let out = cli(&to, &["put", p(&a), "--overwrite"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("`a.bin` (2.00 MiB) does not fit"), "{err}");
    assert!(err.contains("old copy") && err.contains("room for both"), "{err}");
    assert!(err.contains("rm a.bin"), "{err}");
    assert_explained(&out);
    // The old copy is intact, and the hint's way out works.
    let j = json_lines(&cli(&to, &["--json", "ls"]));
    assert_eq!(j[0]["count"], 1, "{}", j[0]);
    ok(&cli(&to, &["rm", "a.bin"]));
    ok(&cli(&to, &["put", p(&a)]));
}

#[test]
fn retries_wait_out_a_busy_upload() {
    let sim = Sim::start(&["--capacity", "400M"]);
    let to = sim.to();
    let dir = TempDir::new("busy");
    let size = interruptible_size();
    let first = dir.join("first.bin");
    write_random(&first, size, 7);
    let second = dir.join("second.bin");
    write_random(&second, 100_000, 8);
    let base = bytes_in(&to);
    let mut up = Proc::spawn(cli_cmd(&to, &["put", p(&first), "same.bin"]));
    let started = poll_until(Duration::from_secs(60), Duration::from_millis(10), || {
        (bytes_in(&to) > base + MIB as u64).then_some(())
    });
    assert!(
        started.is_some() && !up.finished(),
        "the first upload was not under way"
    );
    // Without retries the busy answer is final...
    let out = cli(&to, &["put", p(&second), "same.bin", "--overwrite"]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("busy"), "{}", describe(&out));
    // ...with them, the second upload waits for the first and then replaces it.
    let out = cli(&to, &["--retries", "30", "put", p(&second), "same.bin", "--overwrite"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("(retry 1 of 30)"), "{}", describe(&out));
    assert!(up.output(HOST_CLI_LIMIT).status.success());
    let j = json_lines(&cli(&to, &["--json", "stat", "same.bin"]));
    assert_eq!(j[0]["sha256"], sha256_file(&second));
}

// ---- 5. Output for people and scripts -------------------------------------------------------

/// The keys each command's final `--json` object has (besides `ok`); docs/CLI.md lists the same.
const SCHEMA: &[(&str, &[&str])] = &[
    ("send", &["reply"]),
    ("ping", &["count", "min_us", "avg_us", "max_us"]),
    (
        "info",
        &[
            "device",
            "address",
            "udp_port",
            "version",
            "max_frame",
            "max_chunk",
            "sessions",
            "storage_capacity",
            "storage_used",
            "storage_free",
            "uptime_ms",
            "clock_synced",
            "commands",
            "key_required",
            "sealed",
            "firmware",
        ],
    ),
    ("exec", &["command", "status", "output"]),
    (
        "put",
        &[
            "name",
            "local",
            "size",
            "sha256",
            "resumed_from",
            "transferred",
            "seconds",
            "bytes_per_s",
            "recoveries",
        ],
    ),
    (
        "get",
        &[
            "name",
            "local",
            "size",
            "sha256",
            "resumed_from",
            "transferred",
            "seconds",
            "bytes_per_s",
            "recoveries",
        ],
    ),
    ("ls", &["files", "count", "size"]),
    ("stat", &["name", "size", "sha256"]),
    ("rm", &["name", "removed"]),
    ("time", &["time", "unix_ms", "clock_synced"]),
    ("time set", &["time", "unix_ms", "clock_synced"]),
    ("chat", &["from", "reply"]),
    ("listen", &["events"]),
    (
        "bench",
        &[
            "device",
            "rounds",
            "echo_p50_us",
            "echo_p99_us",
            "size",
            "upload_bytes_per_s",
            "download_bytes_per_s",
        ],
    ),
    ("devices", &["config", "devices"]),
    ("keygen", &["key_file"]),
    ("discover", &["count", "seconds"]),
];

/// Commands that talk to no device, whose results say nothing of one.
const NO_DEVICE: &[&str] = &["devices", "keygen", "discover"];

fn keys_of(command: &str) -> &'static [&'static str] {
    SCHEMA
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("{command} is not in SCHEMA"))
}

#[test]
fn json_is_one_object_per_result_with_documented_keys() {
    let sim = Sim::start(&[]);
    let to = sim.to();
    let dir = TempDir::new("json");
    let f = dir.join("j.bin");
    write_random(&f, 100_000, 7);
    let back = dir.join("j.back");
    let key = dir.join("j.key");
    let scope = format!("127.0.0.1:{}", sim.udp_port);
    // (schema name, arguments, stream items before the result)
    let runs: Vec<(&str, Vec<&str>, usize)> = vec![
        ("send", vec!["send", "hi"], 0),
        ("ping", vec!["ping", "-c", "2"], 2),
        ("info", vec!["info"], 0),
        ("exec", vec!["exec", "count", "2000"], 0), // was two objects and more
        ("put", vec!["put", p(&f)], 0),
        ("ls", vec!["ls"], 0),
        ("stat", vec!["stat", "j.bin"], 0),
        ("get", vec!["get", "j.bin", p(&back)], 0),
        ("rm", vec!["rm", "j.bin"], 0),
        ("time", vec!["time"], 0),
        ("time set", vec!["time", "set"], 0),
        ("chat", vec!["chat", "-m", "hi"], 0),
        ("listen", vec!["listen", "--duration", "200ms"], 0),
        ("bench", vec!["bench", "--rounds", "5", "--size", "64K"], 0),
        ("devices", vec!["devices"], 0),
        ("keygen", vec!["keygen", p(&key)], 0),
        ("discover", vec!["discover", &scope], 1),
    ];
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CLI.md")).expect("docs/CLI.md");
    for (name, args, items) in runs {
        let mut a = vec!["--json"];
        a.extend(&args);
        let out = cli(&to, &a);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        assert_eq!(stderr(&out), "", "{args:?}: --json wrote to stderr");
        let v = json_lines(&out);
        assert_eq!(v.len(), items + 1, "{args:?}: {}", stdout(&out));
        for item in &v[..items] {
            assert!(item.get("ok").is_none(), "{args:?}: a stream item with ok: {item}");
        }
        let last = v.last().unwrap();
        assert_eq!(last["ok"], true, "{args:?}: {last}");
        let mut want: Vec<&str> = keys_of(name).to_vec();
        want.push("ok");
        // Every result from a device says whether it is open (this sim has no key).
        if !NO_DEVICE.contains(&name) {
            want.push("open_device");
            assert_eq!(last["open_device"], true, "{args:?}: {last}");
        }
        want.sort();
        let mut got: Vec<&str> = last.as_object().unwrap().keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(got, want, "{args:?}: keys differ from the schema");
        for k in keys_of(name).iter().chain(["open_device"].iter()) {
            assert!(
                doc.contains(&format!("`{k}`")),
                "docs/CLI.md does not document `{k}` of {name}"
            );
        }
    }
    let v = json_lines(&cli(&to, &["--json", "exec", "count", "2000"]));
    assert_eq!(v[0]["output"].as_str().unwrap().lines().count(), 2000);
    // Ping's stream items.
    let v = json_lines(&cli(&to, &["--json", "ping", "-c", "2"]));
    assert_eq!(v[0]["seq"], 1);
    assert!(v[0]["rtt_us"].as_f64().is_some());
}

#[test]
fn human_output_uses_units_plurals_and_dates() {
    // A board without a real-time clock, to see what an unset clock looks like.
    let sim = Sim::start(&["--no-rtc"]);
    let to = sim.to();
    let dir = TempDir::new("human");
    let one = dir.join("one.txt");
    fs::write(&one, "1").unwrap();

    // Ping's summary goes to stdout (it was stderr only).
    let ping = ok(&cli(&to, &["ping", "-c", "1"]));
    assert!(ping.contains("1 round trip: min "), "{ping}");

    // info before the clock is set: human sizes, and it says the clock was never set.
    let info = ok(&cli(&to, &["info"]));
    assert!(info.contains("0 bytes used of 256.0 MiB"), "{info}"); // was "0 of 268435456 bytes used"
    assert!(info.contains("never set") && info.contains("time set"), "{info}");
    let time = cli(&to, &["time"]);
    assert!(time.status.success());
    assert!(
        stderr(&time).contains("never set") && stderr(&time).contains("time set"),
        "{}",
        describe(&time)
    );

    // time set prints a date (was "1796121193006 ms since the epoch").
    let set = ok(&cli(&to, &["time", "set"]));
    let date = set.trim_end().strip_prefix("device clock set to ").expect(&set);
    let shape: String = date.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    assert_eq!(shape, "9999-99-99 99:99:99 UTC", "{set}");
    let info = ok(&cli(&to, &["info"]));
    assert!(!info.contains("never set"), "{info}");
    assert!(!stderr(&cli(&to, &["time"])).contains("never set"));

    // One file, one byte: singulars (was "1 files", "got 1 bytes").
    let put = ok(&cli(&to, &["put", p(&one)]));
    assert!(put.contains(": 1 byte in ") && !put.contains("MB/s"), "{put}");
    let ls = ok(&cli(&to, &["ls"]));
    assert!(ls.contains("1 file, 1 byte"), "{ls}");
    let chat = ok(&cli(&to, &["chat", "-m", "x"]));
    assert!(chat.contains("got 1 byte from host"), "{chat}");
    let stat = cli(&to, &["stat", "nope.txt"]);
    assert!(!stderr(&stat).contains("stat failed"), "{}", describe(&stat));
    let again = cli(&to, &["put", p(&one)]);
    assert!(stderr(&again).contains("add --overwrite"), "{}", describe(&again));
    // was "use overwrite"
}

// ---- 6. sim --chat, and who said what -------------------------------------------------------

/// `sim --chat` on free ports with a piped stdin.
fn chat_sim(dir: &TempDir) -> (Interactive, String) {
    let (tcp, udp) = (free_port(), free_port());
    let mut cmd = Command::new(sim_bin());
    cmd.args([
        "--chat",
        "--no-plain",
        "--tcp-port",
        &tcp.to_string(),
        "--udp-port",
        &udp.to_string(),
    ])
    .env_remove("TETHER_LOG");
    let sim = Interactive::spawn(cmd, dir, "sim");
    sim.wait_for(SIM_START, "sim listening", |s| s.stdout().contains("try: host-cli"));
    (sim, format!("127.0.0.1:{tcp}"))
}

#[test]
fn sim_chat_answers_the_message_it_was_typed_for() {
    let dir = TempDir::new("chat");
    let (mut sim, to) = chat_sim(&dir);
    let mut chat = Interactive::spawn(cli_cmd(&to, &["chat", "--from", "alice"]), &dir, "chat");
    chat.wait_for(Duration::from_secs(20), "chat ready", |c| {
        c.stderr().contains("type a message")
    });

    for (question, answer) in [("first question", "first answer"), ("second question", "second answer")] {
        chat.write(&format!("{question}\n"));
        // The operator sees who sent it...
        sim.wait_for(Duration::from_secs(20), "the message at the sim", |s| {
            s.stdout().contains(&format!("[alice] {question}"))
        });
        // ...and answers it; the answer reaches the chat right away (it used to wait for, and
        // answer, the next message).
        sim.write(&format!("{answer}\n"));
        chat.wait_for(Duration::from_secs(20), "the answer in the chat", |c| {
            c.stdout().contains(&format!("operator: {answer}"))
        });
    }
    assert_eq!(chat.finish(HOST_CLI_LIMIT), Some(0), "{}", chat.stderr());
    let out = chat.stdout();
    // The device's immediate reply to the second question is not the first answer.
    assert!(
        !out.contains("> first answer"),
        "an answer went to the wrong message:\n{out}"
    );
    let first = out.find("first answer").unwrap();
    let second = out.find("second answer").unwrap();
    assert!(first < second, "{out}");
    assert!(
        out.contains("chat  operator: first answer"),
        "who said it is not shown:\n{out}"
    );

    // listen shows who said what, too.
    let mut listen = Proc::spawn(cli_cmd(&to, &["listen", "-n", "1", "--duration", "30s"]));
    let seen = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        ok(&cli(&to, &["chat", "--from", "bob", "-m", "hello all"]));
        listen.finished().then_some(())
    });
    assert!(seen.is_some());
    let l = ok(&listen.output(HOST_CLI_LIMIT));
    assert!(l.contains("message  bob: hello all"), "{l}");
    let _ = sim.finish(Duration::from_secs(1));
}

// ---- 7. Named devices -----------------------------------------------------------------------

#[test]
fn named_devices_from_the_config_file_with_flags_and_environment_overriding() {
    let sim = Sim::start(&[]);
    let dir = TempDir::new("config");
    let config = dir.join("config.toml");
    let dead = free_port();
    fs::write(
        &config,
        format!(
            "default = \"bench-board\"\n\n[devices.bench-board]\nto = \"{0}\"\n\n[devices.gone]\nto = \"127.0.0.1:{dead}\"\ntimeout = \"2s\"\n\n\
             [devices.locked]\nto = \"{0}\"\nkey_file = \"/nonexistent/tether/bench.key\"\n\n\
             [devices.keyed]\nto = \"{0}\"\nkey_file = \"keyed.key\"\n",
            sim.to()
        ),
    )
    .unwrap();
    let mut keygen = Command::new(host_cli_bin());
    keygen.args(["keygen", p(&dir.join("keyed.key"))]);
    ok(&run_bounded(keygen, HOST_CLI_LIMIT));
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(host_cli_bin());
        cmd.args(args);
        clean_cli_env(&mut cmd);
        cmd.env("TETHER_CONFIG", &config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_bounded(cmd, HOST_CLI_LIMIT)
    };
    let info = ok(&run(&["-d", "bench-board", "info"], &[]));
    assert!(info.contains("tether-sim"), "{info}");
    // UDP follows the named device as well.
    ok(&run(&["-d", "bench-board", "time", "set"], &[]));
    // The default device, with no flag at all.
    assert!(ok(&run(&["send", "hi"], &[])).contains("hi"));
    // A flag overrides the config; so does the environment.
    let out = run(&["-d", "gone", "send", "hi"], &[]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains(&dead.to_string()), "{}", describe(&out));
    ok(&run(&["-d", "gone", "--to", &sim.to(), "send", "hi"], &[]));
    ok(&run(&["send", "hi"], &[("TETHER_TO", &sim.to())]));
    assert_code(&run(&["send", "hi"], &[("TETHER_DEVICE", "gone")]), 3);
    // Unknown names and broken files are usage errors naming the file.
    let out = run(&["-d", "nobody", "info"], &[]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("bench-board, gone") && stderr(&out).contains(p(&config)),
        "{}",
        describe(&out)
    );
    // A named device's key file is used: one that cannot be read is a local problem naming it;
    // a relative one is found beside the config file (here: a key for a device that has none,
    // which is refused rather than talked to in the clear).
    let out = run(&["-d", "locked", "info"], &[]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("/nonexistent/tether/bench.key"),
        "{}",
        describe(&out)
    );
    let out = run(&["-d", "keyed", "exec", "uptime"], &[]);
    assert_code(&out, 6);
    assert!(stderr(&out).contains("has no key"), "{}", describe(&out));
    // --key-file overrides it.
    let out = run(&["-d", "locked", "--key-file", p(&dir.join("keyed.key")), "info"], &[]);
    assert_code(&out, 6);
    // `devices` lists them, with their key files.
    let list = ok(&run(&["devices"], &[]));
    assert!(
        list.contains("bench-board") && list.contains("(default)") && list.contains("gone"),
        "{list}"
    );
    assert!(
        list.contains("key /nonexistent/tether/bench.key") && !list.contains("not used"),
        "{list}"
    );
    let j = json_lines(&run(&["--json", "devices"], &[]));
    assert_eq!(j[0]["devices"].as_array().unwrap().len(), 4);
    assert_eq!(j[0]["devices"][3]["name"], "locked");
    assert_eq!(j[0]["devices"][3]["key_file"], "/nonexistent/tether/bench.key");
    fs::write(&config, "[devices.x]\nto = \"h\"\nport = 1\n").unwrap();
    let out = run(&["devices"], &[]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains(p(&config)), "{}", describe(&out));
}

// ---- 8. Install and discover ----------------------------------------------------------------

#[test]
fn version_names_the_protocol_and_completions_install() {
    let v = ok(&cli("127.0.0.1:1", &["--version"]));
    assert!(v.starts_with("host-cli ") && v.contains("protocol v1"), "{v}");
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef host-cli"),
        ("fish", "complete -c host-cli"),
    ] {
        let s = ok(&cli("127.0.0.1:1", &["completions", shell]));
        assert!(s.contains(marker), "{shell}: no {marker:?}");
        assert!(s.contains("devices"), "{shell}: the devices command is missing");
    }
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    for needle in [
        "cargo install --locked --path host-cli",
        "cargo install --locked --path sim",
        "host-cli completions bash",
    ] {
        assert!(readme.contains(needle), "README lacks {needle:?}");
    }
}

/// The progress bar of a resumed download, on a terminal (`script` gives it a pty): it starts at
/// the resumed position of the full size (it started at 0 of 0 and showed `1.16 GiB/s ETA 0s`).
#[test]
fn a_resumed_download_shows_its_progress_from_where_it_resumed() {
    if !have("script") {
        eprintln!("e2e: NOTICE: `script` (util-linux) is not installed; the progress-bar test is skipped");
        return;
    }
    let sim = Sim::start(&[]);
    let to = sim.to();
    let dir = TempDir::new("bar");
    let size = interruptible_size();
    let big = dir.join("big.bin");
    write_random(&big, size, 9);
    ok(&cli(&to, &["--timeout", "30s", "put", p(&big)]));
    let copy = dir.join("copy.bin");
    let part = dir.join("copy.bin.part");
    let get = Proc::spawn(cli_cmd(&to, &["get", "big.bin", p(&copy)]));
    let started = poll_until(Duration::from_secs(60), Duration::from_millis(5), || {
        fs::metadata(&part)
            .ok()
            .filter(|m| m.len() > 2 * MIB as u64)
            .map(|_| ())
    });
    assert!(started.is_some(), "the download did not get under way");
    assert!(interrupt(get.id()));
    assert_code(&get.output(HOST_CLI_LIMIT), 130);
    let kept = fs::metadata(&part).unwrap().len();
    let line = cli_cmd(&to, &["get", "big.bin", p(&copy)]);
    let argv: Vec<String> = std::iter::once(line.get_program().to_string_lossy().into_owned())
        .chain(line.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &argv.join(" "), "/dev/null"]);
    clean_cli_env(&mut cmd);
    let out = run_bounded(cmd, HOST_CLI_LIMIT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(sha256_file(&copy), sha256_file(&big));
    // The bar's lines, without terminal control sequences.
    let raw = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let mut clean = String::new();
    let mut esc = false;
    for c in raw.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, c) if c.is_ascii_alphabetic() => esc = false,
            (true, _) => {}
            (false, c) => clean.push(c),
        }
    }
    let bars: Vec<&str> = clean.lines().filter(|l| l.starts_with("get big.bin [")).collect();
    assert!(!bars.is_empty(), "no progress bar on the terminal:\n{clean}");
    let total = format!("/{:.2} MiB", size as f64 / MIB as f64);
    let kept_mib = kept as f64 / MIB as f64;
    let first = bars[0];
    assert!(first.contains(&total), "the bar does not show the full size: {first}");
    let at: f64 = first
        .split("] ")
        .nth(1)
        .and_then(|r| r.split(" MiB/").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no position in {first:?}"));
    assert!(
        at >= kept_mib - 0.01,
        "the bar starts at {at} MiB, not at the {kept_mib:.2} MiB kept: {first}"
    );
    assert!(clean.contains(", resumed at "), "{clean}");
}
