//! A new user's first hour with `host-cli` and `sim`: what they run, what they mistype, and what
//! the tools say back (issue 23). Each test pins one stumble that was found, through the real
//! binaries.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_tests::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// host-cli with a clean environment and `args` (no `--to` added).
fn cli(args: &[&str]) -> Command {
    let mut cmd = Command::new(host_cli_bin());
    clean_cli_env(&mut cmd);
    cmd.args(args);
    cmd
}

fn run(cmd: Command) -> std::process::Output {
    run_bounded(cmd, HOST_CLI_LIMIT)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", describe(out)))
}

/// An interrupted upload whose session is still open holds its room, and `ls` and `rm` cannot
/// see it: the refusal of the next upload says so, and when the room comes back (it said
/// "free space with rm NAME" while `ls` showed no file).
#[test]
fn room_held_by_an_interrupted_upload_is_explained() {
    use tether_core::msg;
    use tether_core::wire::Kind;
    let sim = Sim::start(&["--capacity", "4M"]);
    // A client that began a 3 MiB upload and went quiet, its connection still open.
    let mut held = tether_host::net::connect(&sim.to(), Duration::from_secs(10)).unwrap();
    held.hello("e2e").unwrap();
    let begin = msg::PutBegin {
        name: "held.bin",
        size: 3 << 20,
        sha256: [7; 32],
        overwrite: false,
    };
    held.call(Kind::PutBegin, &begin, &[]).unwrap();
    let dir = TempDir::new("held");
    let src = dir.join("two.bin");
    write_random(&src, 2 << 20, 1);
    let out = run(cli(&["--to", &sim.to(), "--json", "put", p(&src)]));
    assert_code(&out, 1);
    let v = json(&out);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("3.00 MiB is held by an unfinished upload") && message.contains("`ls` does not show"),
        "{message}"
    );
    let hint = v["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("session has ended") && hint.contains("resumes"), "{hint}");
    // Indeed invisible.
    assert!(ok(&run(cli(&["--to", &sim.to(), "ls"]))).contains("0 files"));
    drop(held);
}

/// A file larger than the whole store is refused before it is hashed (a 5 TiB sparse file ran
/// for 9 minutes), and without suggesting that removing files would help.
#[test]
fn a_file_larger_than_the_store_is_refused_at_once_without_an_rm_hint() {
    let sim = Sim::start(&["--capacity", "1M"]);
    let dir = TempDir::new("huge");
    let huge = dir.join("huge.bin");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(1 << 40).unwrap(); // 1 TiB, sparse: hashing it would take minutes
    let started = Instant::now();
    let out = run(cli(&["--to", &sim.to(), "--json", "put", p(&huge)]));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_code(&out, 1);
    let v = json(&out);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("larger than all the storage space"), "{message}");
    assert_eq!(v["error"]["device_code"], 8, "{v}");
    let hint = v["error"]["hint"].as_str().unwrap();
    assert!(!hint.contains(" rm "), "{hint}");
}

/// `listen --duration 1s` on a session (a serial line; TCP with a key) lasts about a second (it
/// took 5 s: the duration was rounded up to a multiple of --timeout).
#[test]
fn listen_for_a_second_on_a_session_takes_a_second() {
    let dir = TempDir::new("listen");
    let key = dir.join("k.key");
    ok(&run(cli(&["keygen", p(&key)])));
    let keyed = Sim::start(&["--key-file", p(&key)]);
    let serial = Sim::start(&["--serial"]);
    let line = format!("serial:{}", serial.pty());
    for args in [vec!["--to", &keyed.to(), "--key-file", p(&key)], vec!["--to", &line]] {
        let mut full = args.clone();
        full.extend(["--json", "listen", "--duration", "1s"]);
        let started = Instant::now();
        let out = run(cli(&full));
        let took = started.elapsed();
        assert_eq!(json(&out)["events"], 0, "{}", describe(&out));
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
            "{args:?}: listen --duration 1s took {took:?}"
        );
    }
}

/// Runs `args` under `script`, whose pseudo-terminal makes host-cli draw its progress; returns
/// everything it wrote, or `None` where `script` (util-linux) is missing.
fn on_a_terminal(args: &[&str]) -> Option<String> {
    if !have("script") {
        eprintln!("e2e: SKIPPED: `script` (util-linux) is not installed");
        return None;
    }
    let line = std::iter::once(host_cli_bin().display().to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    clean_cli_env(&mut cmd);
    cmd.args(["-qec", &line, "/dev/null"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    Some(stdout(&out))
}

/// `bench` shows where it is on a terminal (it printed nothing for 46 s over a serial line).
#[test]
fn bench_shows_its_progress_on_a_terminal() {
    let sim = Sim::start(&[]);
    let Some(seen) = on_a_terminal(&["--to", &sim.to(), "bench", "--rounds", "200", "--size", "1M"]) else {
        return;
    };
    for phase in ["bench echo", "bench upload", "bench download"] {
        assert!(seen.contains(phase), "no `{phase}` progress in:\n{seen}");
    }
    assert!(seen.contains("download "), "{seen}");
}

/// The default `bench` on a device with little storage says which `--size` fits, before its
/// echo rounds (it failed without a word about --size).
#[test]
fn bench_on_a_small_device_suggests_a_size_that_fits() {
    let sim = Sim::start(&["--capacity", "2M"]);
    let started = Instant::now();
    let out = run(cli(&["--to", &sim.to(), "--json", "bench"]));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_code(&out, 1);
    let v = json(&out);
    let hint = v["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("bench --size 1M"), "{hint}");
    let suggested: Vec<&str> = hint.split("host-cli ").nth(1).unwrap().split_whitespace().collect();
    let again = run(cli(&[&suggested[..], &["--json", "--rounds", "10"]].concat()));
    assert!(
        json(&again)["upload_bytes_per_s"].as_f64().unwrap() > 0.0,
        "{}",
        describe(&again)
    );
}

/// put's rate over a slow line is right from the start (it showed 6 KiB/s for 90 KiB/s: the
/// first acknowledgement came only after a whole window of 16 KiB chunks had crossed the line).
#[test]
fn put_shows_the_rate_of_a_serial_line_from_the_start() {
    let dir = TempDir::new("rate");
    let src = dir.join("r.bin");
    write_random(&src, 256 * 1024, 4);
    let sim = Sim::start(&["--serial", "--baud", "921600"]);
    let Some(seen) = on_a_terminal(&["--to", &format!("serial:{}@921600", sim.pty()), "put", p(&src)]) else {
        return;
    };
    // The rates the bar showed, in KiB/s, first to last.
    let rates: Vec<f64> = seen
        .split("KiB/s ETA")
        .filter_map(|before| before.trim_end().rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(rates.len() > 5, "no rates shown: {}", &seen[..seen.len().min(2000)]);
    let last = *rates.last().unwrap();
    assert!(last > 50.0, "the line moves about 88 KiB/s: {rates:?}");
    // Never far too low: not even the first rate shown is under half the real one.
    let low = rates.iter().position(|&r| r < last / 2.0);
    assert_eq!(low, None, "the rate starts too low: {rates:?}");
}

/// Where the settings come from: `-d NAME` on the command line beats `TETHER_TO` (flags beat the
/// environment, as docs/CLI.md says; `TETHER_TO` silently won), and `--timeout` takes hours up
/// to the 24h its error names ("unknown unit `h`").
#[test]
fn a_device_flag_beats_the_environment_and_timeouts_take_hours() {
    let sim = Sim::start(&[]);
    let dir = TempDir::new("config");
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[devices.bench]\nto = \"{}\"\n", sim.to())).unwrap();
    let with_env = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = cli(args);
        cmd.env("TETHER_CONFIG", &config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd)
    };
    // Nothing listens on port 1: had TETHER_TO won, this would fail.
    let dead = ("TETHER_TO", "127.0.0.1:1");
    assert_eq!(ok(&with_env(&["-d", "bench", "send", "hi"], &[dead])).trim(), "hi");
    // Both from the environment: TETHER_TO overrides the address of TETHER_DEVICE, as --to does -d.
    let out = with_env(&["send", "hi"], &[dead, ("TETHER_DEVICE", "bench")]);
    assert_code(&out, 3);
    // And --to beats -d.
    let out = with_env(&["-d", "bench", "--to", "127.0.0.1:1", "send", "hi"], &[]);
    assert_code(&out, 3);
    assert_eq!(
        ok(&with_env(&["-d", "bench", "--timeout", "2h", "send", "hi"], &[])).trim(),
        "hi"
    );
    let out = with_env(&["-d", "bench", "--timeout", "25h", "send", "hi"], &[]);
    assert_code(&out, 2);
}

/// `sim` answers what it was given with care: a `--root` that does not exist is refused (a typo
/// made a new empty store), so is `--capacity 0`; and `sim selftest` ends its table with a
/// newline and reports rates in the binary units host-cli uses.
#[test]
fn sim_refuses_a_missing_root_and_no_capacity_and_selftest_speaks_like_host_cli() {
    let dir = TempDir::new("sim-args");
    let missing = dir.join("no-such-dir");
    for (args, says) in [
        (vec!["--root", p(&missing)], "does not exist"),
        (vec!["--capacity", "0"], "more than 0"),
    ] {
        let mut cmd = Command::new(sim_bin());
        cmd.args(["--tcp-port", "0", "--udp-port", "0", "--no-plain"])
            .args(&args);
        let out = run_bounded(cmd, Duration::from_secs(30));
        assert_code(&out, 1);
        assert!(stderr(&out).contains(says), "{args:?}: {}", describe(&out));
    }
    assert!(!missing.exists(), "--root made the directory");
    let mut cmd = Command::new(sim_bin());
    cmd.args(["selftest", "--size", "1M"]);
    let table = ok(&run_bounded(cmd, Duration::from_secs(120)));
    assert!(table.ends_with('\n'), "no final newline: {table:?}");
    assert!(table.contains("MiB/s") && !table.contains("MB/s"), "{table}");
}

/// Stopped by SIGTERM, as the README's `kill %1` does, `sim` flushes its `--pcap` capture (the
/// file could hold only its header).
#[test]
fn sim_stopped_by_sigterm_keeps_its_capture() {
    let dir = TempDir::new("pcap");
    let pcap = dir.join("cap.pcap");
    let mut sim = Sim::start(&["--pcap", p(&pcap)]);
    for _ in 0..3 {
        ok(&run(cli(&["--to", &sim.to(), "send", "hello"])));
    }
    let mut kill = Command::new("kill");
    kill.args(["-TERM", &sim.pid().to_string()]);
    assert!(run_bounded(kill, Duration::from_secs(10)).status.success());
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(20), || (!sim.running())
            .then_some(()))
        .is_some(),
        "sim did not stop on SIGTERM"
    );
    let len = std::fs::metadata(&pcap).unwrap().len();
    // A pcap header is 24 bytes; three echoes over TCP are many packets more.
    assert!(len > 24 + 10 * 54, "the capture holds {len} bytes");
}

/// `info` over a serial line counts the line as the session it is (it said "sessions 4": the
/// device's TCP sessions).
#[test]
fn info_over_a_serial_line_counts_its_session() {
    let sim = Sim::start(&["--serial"]);
    let line = format!("serial:{}", sim.pty());
    let info = ok(&run(cli(&["--to", &line, "info"])));
    let sessions = info.lines().find(|l| l.starts_with("sessions")).unwrap();
    assert!(
        sessions.contains("1 on this serial line (4 more over TCP)"),
        "{sessions}"
    );
}

/// Downloads and a user's own files: a `X.part` that host-cli did not leave (no `X.part.tether`
/// beside it) is not overwritten without --overwrite; `get X - | head` ends quietly with
/// success (it said "Broken pipe", exit 4).
#[test]
fn get_spares_a_users_part_file_and_stops_quietly_for_head() {
    let sim = Sim::start(&[]);
    let dir = TempDir::new("part");
    let src = dir.join("f.bin");
    write_random(&src, 4 << 20, 9);
    ok(&run(cli(&["--to", &sim.to(), "put", p(&src)])));
    let dst = dir.join("copy.bin");
    let part = dir.join("copy.bin.part");
    std::fs::write(&part, "my own notes").unwrap();
    let out = run(cli(&["--to", &sim.to(), "get", "f.bin", p(&dst)]));
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("not a download host-cli left"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_to_string(&part).unwrap(), "my own notes");
    ok(&run(cli(&["--to", &sim.to(), "get", "f.bin", p(&dst), "--overwrite"])));
    assert_eq!(sha256_file(&dst), sha256_file(&src));
    // A reader that stops early.
    let mut sh = Command::new("bash");
    clean_cli_env(&mut sh);
    sh.args([
        "-c",
        &format!(
            "set -o pipefail; '{}' --to {} get f.bin - | head -c 10 >/dev/null",
            host_cli_bin().display(),
            sim.to()
        ),
    ]);
    let out = run(sh);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!stderr(&out).contains("error"), "{}", describe(&out));
}

/// The benchmark scripts run on a machine where the fixed plain ports are taken
/// (bench-transfers.sh gave sim 8081 and failed), and bench-serial.sh measures every baud rate
/// it is given (its get refused to overwrite its own back.bin at the second one).
#[test]
fn the_bench_scripts_run_beside_busy_ports_and_through_every_baud_rate() {
    if !have("python3") {
        eprintln!("e2e: SKIPPED: python3 is not installed");
        return;
    }
    // Hold the plain ports the scripts used to leave at their defaults (if free).
    let _held: Vec<std::net::TcpListener> = [8080, 8081, 8082]
        .iter()
        .filter_map(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
        .collect();
    let _held_udp: Vec<std::net::UdpSocket> = [9000, 9001]
        .iter()
        .filter_map(|&port| std::net::UdpSocket::bind(("127.0.0.1", port)).ok())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = |args: &[&str]| {
        let mut cmd = Command::new("bash");
        cmd.current_dir(root)
            .args(args)
            .env("NO_BUILD", "1")
            .env("BIN_DIR", bin_dir());
        run_bounded(cmd, Duration::from_secs(300))
    };
    let out = script(&["scripts/bench-serial.sh", "16", "921600", "230400"]);
    let table = ok(&out);
    for baud in ["921600", "230400"] {
        for op in ["put", "get"] {
            assert!(
                table.lines().any(|l| l.starts_with(&format!("| {op} | {baud} |"))),
                "no {op} at {baud}: {}",
                describe(&out)
            );
        }
    }
    assert!(!root.join("back.bin").exists() || git_tracked(root, "back.bin"));
    let out = script(&["scripts/bench-transfers.sh", "1", "64K"]);
    assert!(ok(&out).contains("sim selftest in-process"), "{}", describe(&out));
}

/// Whether `git` tracks `path` in the repository at `root` (a file the lead removes, not one a
/// script left).
fn git_tracked(root: &Path, path: &str) -> bool {
    let mut cmd = Command::new("git");
    cmd.current_dir(root).args(["ls-files", "--error-unmatch", path]);
    run_bounded(cmd, Duration::from_secs(30)).status.success()
}

/// Hints that point the right way, and a hint on every failure (docs/CLI.md promises one): a
/// wrong --udp-port was blamed on the TCP port; `--to /dev/pts/4` did not suggest `serial:`;
/// `--to http://…` was exit 3, not 2; `--to HOST:UDPPORT` suggested `sim --tcp-port UDPPORT`;
/// `put` of a missing file and a bad timeout in the config had no hint at all.
#[test]
fn mistakes_get_hints_that_point_the_right_way() {
    let sim = Sim::start(&[]);
    let dir = TempDir::new("hints");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[devices.b]\nto = \"{}\"\ntimeout = \"soon\"\n", sim.to()),
    )
    .unwrap();
    let udp_to = format!("127.0.0.1:{}", sim.udp_port);
    let to = sim.to();
    let missing = dir.join("missing.bin");
    // The TCP port the device advertises, not the usual 7070 (the sim's ports are its own here).
    let tcp_hint = format!("which it says is {}: --to 127.0.0.1:{}", sim.tcp_port, sim.tcp_port);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["--to", &to, "--udp-port", "1", "--timeout", "1s", "time"],
            3,
            "--udp-port 1",
        ),
        (vec!["--to", "/dev/pts/4", "info"], 2, "serial:/dev/pts/4"),
        (vec!["--to", "http://127.0.0.1:7070", "info"], 2, "URL"),
        (
            vec!["--to", &udp_to, "info"],
            3,
            "UDP port: --to takes its framed TCP port",
        ),
        (vec!["--to", &udp_to, "info"], 3, &tcp_hint),
        // A port alone is not a host (a resolver took 7070 for 0.0.27.158).
        (vec!["--to", "7070", "info"], 2, "127.0.0.1:7070"),
        (
            vec!["--to", "serial:/dev/ttyTETHERNONE0", "info"],
            3,
            "ls /dev/ttyUSB* /dev/ttyACM*",
        ),
        // What clap names on the next line (the missing argument) stays in the message.
        (vec!["--to", &to, "exec"], 2, "<COMMAND>"),
        (vec!["--to", &to, "put", p(&missing)], 4, "check the path"),
        (vec!["-d", "b", "info"], 2, "timeout = \\\"10s\\\""),
    ];
    for (args, code, hint) in cases {
        let mut cmd = cli(&[&["--json"], &args[..]].concat());
        cmd.env("TETHER_CONFIG", &config);
        let out = run(cmd);
        assert_code(&out, code);
        let text = stdout(&out);
        assert!(text.contains(hint), "{args:?}: no `{hint}` in {}", describe(&out));
        if code != 2 || !text.contains("invalid value") {
            let v = json(&out);
            assert!(v["error"]["hint"].is_string(), "{args:?}: no hint: {v}");
        }
        // And people see it too.
        let mut cmd = cli(&args);
        cmd.env("TETHER_CONFIG", &config);
        let out = run(cmd);
        let err = stderr(&out);
        assert!(
            err.contains("hint:") || err.contains("For more information"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("sim --tcp-port"), "{args:?}: {err}");
    }
}
