//! Tether over a serial line, end to end: `sim --serial` on a pseudo-terminal and `host-cli
//! --to serial:PTY`, clean and with byte faults on the line; the network served at the same time
//! by the same device.

use std::path::Path;
use std::time::Duration;

use tether_tests::*;

fn serial_cli(sim: &Sim, timeout: &str, args: &[&str]) -> std::process::Output {
    let to = format!("serial:{}", sim.pty());
    let mut full = vec!["--timeout", timeout];
    full.extend_from_slice(args);
    run_bounded(host_cli_cmd(&to, sim.udp_port, &full), HOST_CLI_LIMIT)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Puts and gets `size` random bytes over the serial line; returns the SHA-256 both reported.
fn round_trip(sim: &Sim, dir: &TempDir, size: usize, timeout: &str) -> (String, String) {
    let src = dir.join("up.bin");
    write_random(&src, size, 11);
    let put = serial_cli(sim, timeout, &["put", p(&src), "s.bin", "--retries", "50"]);
    assert!(put.status.success(), "put: {}\nsim log:\n{}", describe(&put), sim.log());
    let dst = dir.join("down.bin");
    let get = serial_cli(sim, timeout, &["get", "s.bin", p(&dst), "--retries", "50"]);
    assert!(get.status.success(), "get: {}\nsim log:\n{}", describe(&get), sim.log());
    let sha = sha256_file(&src);
    assert_eq!(sha256_file(&dst), sha, "the copy that came back over the line differs");
    assert!(stdout(&put).contains(&sha) && stdout(&get).contains(&sha));
    (text(&put.stderr), text(&get.stderr))
}

#[test]
fn serial_commands_and_a_256_kib_round_trip_bit_exact_beside_the_network() {
    // No real-time clock: `info` then tells how to set it, naming the device as --to gave it.
    let sim = Sim::start(&["--serial", "--no-rtc"]);
    let info = ok(&serial_cli(&sim, "10s", &["info"]));
    assert!(info.contains("tether-sim"), "{info}");
    let port = sim.pty();
    assert!(info.contains(&format!("serial:{port}@115200 (serial line)")), "{info}");
    // The command `info` suggests, run as printed: `time set` goes over the serial session.
    let suggested = format!("host-cli --to serial:{port}@115200 time set");
    assert!(info.contains(&format!("never set (run `{suggested}`)")), "{info}");
    let mut cmd = std::process::Command::new(host_cli_bin());
    cmd.args(suggested.split_whitespace().skip(1));
    cmd.env_remove("TETHER_TO").env_remove("TETHER_DEVICE");
    let set = run_bounded(cmd, HOST_CLI_LIMIT);
    assert!(ok(&set).contains("device clock set"), "{}", describe(&set));
    assert!(ok(&serial_cli(&sim, "10s", &["info"])).contains("clock      set"));
    assert_eq!(
        ok(&serial_cli(&sim, "10s", &["send", "over the wire"])).trim_end(),
        "over the wire"
    );
    assert!(ok(&serial_cli(&sim, "10s", &["ping", "-c", "3"])).contains("reply 3"));
    assert!(ok(&serial_cli(&sim, "10s", &["exec", "uptime"])).contains("up"));
    assert!(!ok(&serial_cli(&sim, "10s", &["time"])).trim().is_empty());
    assert!(ok(&serial_cli(&sim, "10s", &["time", "set"])).contains("clock set"));
    let dir = TempDir::new("serial");
    round_trip(&sim, &dir, 256 * 1024, "10s");
    // One device behind both transports: the file put over the line is seen over TCP.
    let stat: serde_json::Value = serde_json::from_str(&ok(&host_cli(&sim, &["--json", "stat", "s.bin"]))).unwrap();
    assert_eq!(stat["size"], 262144, "{stat}");
    assert!(ok(&serial_cli(&sim, "10s", &["ls"])).contains("s.bin"));
    assert!(ok(&serial_cli(&sim, "10s", &["rm", "s.bin"])).contains("removed"));
    let gone = host_cli(&sim, &["stat", "s.bin"]);
    assert!(!gone.status.success(), "removed over the line, gone over TCP too");
}

/// host-cli with nothing but `--to serial:PTY` and `args`: the defaults, as a user meets them.
fn plain_serial_cli(sim: &Sim, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(host_cli_bin());
    clean_cli_env(&mut cmd);
    cmd.arg("--to").arg(format!("serial:{}", sim.pty())).args(args);
    run_bounded(cmd, HOST_CLI_LIMIT)
}

/// A line that loses one byte in 10 000 and flips a bit in another one in 10 000, each way:
/// transfers recover every damaged or lost frame inside the transfer, with no flag.
#[test]
fn a_256_kib_round_trip_survives_1e4_byte_loss_and_corruption_each_way_with_default_flags() {
    let mut sim = Sim::start(&[
        "--serial",
        "--serial-loss",
        "1e-4",
        "--serial-corrupt",
        "1e-4",
        "--seed",
        "5",
    ]);
    let dir = TempDir::new("serial-faults");
    let src = dir.join("up.bin");
    write_random(&src, 256 * 1024, 11);
    let started = std::time::Instant::now();
    let must = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}\nsim log:\n{}",
            describe(&out),
            sim.log()
        );
        out
    };
    let put = must(plain_serial_cli(&sim, &["--json", "put", p(&src), "s.bin"]), "put");
    let dst = dir.join("down.bin");
    let get = must(plain_serial_cli(&sim, &["--json", "get", "s.bin", p(&dst)]), "get");
    timing("256 KiB put and get over a line with 1e-4 faults", started.elapsed());
    assert_eq!(sha256_file(&dst), sha256_file(&src), "the copy that came back differs");
    let recoveries = |out: &std::process::Output| -> u64 {
        let v: serde_json::Value = serde_json::from_str(stdout(out).trim()).expect("one JSON object");
        v["recoveries"].as_u64().expect("recoveries")
    };
    let (up, down) = (recoveries(&put), recoveries(&get));
    let (lost, corrupted) = line_faults(&mut sim);
    // The faults really happened, and the transfers really recovered from them.
    assert!(lost > 10 && corrupted > 10, "lost {lost}, corrupted {corrupted}");
    assert!(up > 0 && down > 0, "recoveries: put {up}, get {down}");
    eprintln!("serial line: lost {lost}, corrupted {corrupted}; recoveries: put {up}, get {down}");
}

/// A line that damages nearly every frame: the transfer gives up, saying it was the line (not
/// the device, not the protocol), with exit code 3.
#[test]
fn a_line_that_damages_every_frame_is_blamed_for_it() {
    let sim = Sim::start(&["--serial", "--serial-corrupt", "0.02", "--seed", "2"]);
    let dir = TempDir::new("serial-hopeless");
    let src = dir.join("up.bin");
    write_random(&src, 64 * 1024, 3);
    let put = plain_serial_cli(&sim, &["--json", "put", p(&src), "x.bin"]);
    assert_code(&put, 3);
    let v: serde_json::Value = serde_json::from_str(stdout(&put).trim()).expect("one JSON object");
    assert_eq!(v["error"]["kind"], "link", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the line serial:") && message.contains("damaged"),
        "{message}"
    );
    assert!(!message.contains("refused"), "not the device's doing: {message}");
    let hint = v["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("baud"), "{hint}");
}

#[test]
fn chat_over_a_serial_line_is_a_usage_error_that_says_why() {
    // Refused before the port is opened: the path need not exist.
    let args = &["chat", "--message", "hi"][..];
    let out = run_bounded(host_cli_cmd("serial:/nonexistent/tty@9600", 7071, args), HOST_CLI_LIMIT);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("serial line") && err.contains("one session"),
        "{args:?}: {err}"
    );
    let mut json = vec!["--json"];
    json.extend_from_slice(args);
    let out = run_bounded(
        host_cli_cmd("serial:/nonexistent/tty@9600", 7071, &json),
        HOST_CLI_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{json:?}: {}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    // A bad serial address is a usage error from the parser itself.
    let out = run_bounded(
        host_cli_cmd("serial:/dev/ttyUSB0@fast", 7071, &["info"]),
        HOST_CLI_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("not a baud rate"), "{}", describe(&out));
}

#[test]
fn listen_over_a_serial_line_receives_the_events_of_the_device() {
    let sim = Sim::start(&["--serial"]);
    let to = format!("serial:{}", sim.pty());
    let listener = Proc::spawn(host_cli_cmd(
        &to,
        sim.udp_port,
        &[
            "--json",
            "--timeout",
            "10s",
            "listen",
            "--count",
            "2",
            "--duration",
            "20s",
        ],
    ));
    // The subscription is in place once the listener's Subscribe was answered; events before
    // that are not promised, so a toggler keeps making events until the listener has two.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toggler = {
        let (stop, to, port) = (stop.clone(), format!("127.0.0.1:{}", sim.tcp_port), sim.udp_port);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && started.elapsed() < Duration::from_secs(20) {
                run_bounded(host_cli_cmd(&to, port, &["exec", "led", "toggle"]), HOST_CLI_LIMIT);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let out = listener.output(Duration::from_secs(25));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    toggler.join().unwrap();
    assert!(out.status.success(), "listen: {}", describe(&out));
    let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("seq").is_some()).collect();
    assert_eq!(events.len(), 2, "{lines:?}");
    assert_eq!(events[0]["topic"], "led");
    assert!(events[1]["seq"].as_u64() > events[0]["seq"].as_u64(), "{lines:?}");
    assert_eq!(lines.last().unwrap()["events"], 2);
}

/// The `lost N, corrupted M` counts of sim's serial report (printed when it stops).
fn line_faults(sim: &mut Sim) -> (u64, u64) {
    sim.interrupt(Duration::from_secs(10));
    let log = sim.log();
    let line = log
        .lines()
        .find(|l| l.contains("serial line carried"))
        .unwrap_or_else(|| panic!("no serial report:\n{log}"));
    let count = |what: &str| -> u64 {
        let at = line.find(what).unwrap_or_else(|| panic!("no `{what}` in {line}")) + what.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (count("lost "), count("corrupted "))
}

#[test]
fn ls_over_a_lossy_serial_line_lists_every_file_or_fails_never_short() {
    // 40 files with long names: five pages of about 400 bytes, so that line faults hit pages.
    let dir = TempDir::new("serial-ls");
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let mut want: Vec<String> = (0..40)
        .map(|i| format!("file-{i:02}-with-a-rather-long-name-to-fill-pages.bin"))
        .collect();
    for (i, name) in want.iter().enumerate() {
        std::fs::write(root.join(name), vec![b'x'; i]).unwrap();
    }
    want.sort();
    let mut sim = Sim::start(&[
        "--root",
        p(&root),
        "--serial",
        "--serial-loss",
        "0.0002",
        "--serial-corrupt",
        "0.0002",
        "--seed",
        "3",
    ]);
    for round in 0..8 {
        let out = serial_cli(&sim, "1s", &["--json", "ls", "--retries", "10"]);
        assert!(
            out.status.success(),
            "round {round}: {}\nsim log:\n{}",
            describe(&out),
            sim.log()
        );
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
        let mut got: Vec<String> = v["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        let missing: Vec<&String> = want.iter().filter(|n| !got.contains(n)).collect();
        assert!(
            missing.is_empty() && got.len() == want.len(),
            "round {round}: {} files listed, {} left out: {missing:?}",
            got.len(),
            missing.len()
        );
    }
    let (lost, corrupted) = line_faults(&mut sim);
    // The faults really happened on the line, so the listings above survived them.
    assert!(lost + corrupted > 0, "no faults on the line");
    eprintln!("serial line: lost {lost}, corrupted {corrupted}");
}

/// Ctrl-C on a serial download at 115 200 baud: host-cli exits 130 saying how many bytes the
/// `.part` keeps (exactly what it holds), the device stops streaming the rest of the file, and
/// the next command over the same line answers within a second. (It said "Interrupted system
/// call", exit 3, or "kept 0 bytes" of a file holding 192 KiB; and the next command waited for
/// the rest of the abandoned file: minutes at this rate.)
#[test]
fn ctrl_c_on_a_serial_download_keeps_what_it_says_and_frees_the_line_at_once() {
    let sim = Sim::start(&["--serial", "--baud", "115200"]);
    let dir = TempDir::new("serial-ctrl-c");
    let src = dir.join("big.bin");
    // 64 KiB: 5.7 s on this line, so that Ctrl-C comes in the middle and the rest is short.
    write_random(&src, 64 * 1024, 5);
    ok(&host_cli(&sim, &["put", p(&src), "big.bin"]));
    let to = format!("serial:{}@115200", sim.pty());
    let dst = dir.join("copy.bin");
    let part = dir.join("copy.bin.part");
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(host_cli_bin());
        clean_cli_env(&mut cmd);
        cmd.args(["--to", &to]).args(args);
        cmd
    };
    let mut get = Proc::spawn(cli(&["--json", "get", "big.bin", p(&dst)]));
    let size = || std::fs::metadata(&part).map_or(0, |m| m.len());
    assert!(
        poll_until(Duration::from_secs(20), Duration::from_millis(20), || (size()
            >= 16 * 1024)
            .then_some(()))
        .is_some(),
        "the download did not get going"
    );
    let pressed = std::time::Instant::now();
    assert!(interrupt(get.id()));
    let out = get.wait_for(Duration::from_secs(5)).expect("host-cli exits on Ctrl-C");
    assert_code(&out, 130);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    let kept = v["kept"].as_u64().expect("kept");
    assert_eq!(kept, size(), "the report says what the .part holds: {v}");
    assert!((16 * 1024..64 * 1024).contains(&kept), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("kept"), "{v}");
    let next = run_bounded(cli(&["exec", "uptime"]), HOST_CLI_LIMIT);
    let took = pressed.elapsed();
    assert!(ok(&next).contains("up"), "{}", describe(&next));
    timing(
        "from Ctrl-C on a 115200-baud download to the next command's answer",
        took,
    );
    assert!(
        took < Duration::from_secs(1),
        "the next command answered {took:?} after Ctrl-C"
    );
    // And the download resumes from what was kept.
    let again = run_bounded(cli(&["--json", "get", "big.bin", p(&dst)]), HOST_CLI_LIMIT);
    let v: serde_json::Value = serde_json::from_str(ok(&again).trim()).unwrap();
    assert_eq!(v["resumed_from"].as_u64(), Some(kept), "{v}");
    assert_eq!(sha256_file(&dst), sha256_file(&src));
}

/// Ctrl-C on a serial command that streams (or waits): the device stops it, and the line is
/// free for the next command at once.
#[test]
fn ctrl_c_on_a_serial_command_stops_it_on_the_device() {
    let sim = Sim::start(&["--serial", "--baud", "115200"]);
    let to = format!("serial:{}@115200", sim.pty());
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(host_cli_bin());
        clean_cli_env(&mut cmd);
        cmd.args(["--to", &to]).args(args);
        cmd
    };
    for command in [&["exec", "count", "1000000"][..], &["exec", "sleep", "60000"][..]] {
        let mut run = Proc::spawn(cli(command));
        std::thread::sleep(Duration::from_millis(700));
        assert!(!run.finished(), "{command:?} still runs");
        let pressed = std::time::Instant::now();
        assert!(interrupt(run.id()));
        let out = run.wait_for(Duration::from_secs(5)).expect("host-cli exits on Ctrl-C");
        assert_code(&out, 130);
        let next = run_bounded(cli(&["send", "next"]), HOST_CLI_LIMIT);
        let took = pressed.elapsed();
        assert_eq!(ok(&next).trim(), "next");
        assert!(
            took < Duration::from_secs(1),
            "{command:?}: the next command answered {took:?} after Ctrl-C"
        );
    }
}

/// `discover serial:PTY` asks the port `Hello` and `Discover`: the device found on the line has
/// the id and ports its network probe reports, and both ways merge into one device. A port that
/// cannot be opened is left out, not an error.
#[test]
fn discover_finds_the_device_on_a_serial_port_and_merges_it_with_the_probe() {
    let sim = Sim::start(&["--serial"]);
    let pty = format!("serial:{}", sim.pty());
    let cli = |args: &[&str]| {
        let mut full = vec!["--json", "--timeout", "3s", "discover", "--no-mdns"];
        full.extend_from_slice(args);
        let out = run_bounded(host_cli_cmd(&sim.to(), sim.udp_port, &full), HOST_CLI_LIMIT);
        let lines: Vec<serde_json::Value> = ok(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        lines
    };
    let found = cli(&[&pty, "serial:/dev/tether-no-such-tty"]);
    assert_eq!(found.len(), 2, "one device, then the result: {found:?}");
    let d = &found[0];
    assert_eq!(d["found_by"], serde_json::json!(["serial"]), "{d}");
    assert_eq!(d["address"], serde_json::json!(format!("{pty}@115200")), "{d}");
    assert_eq!(d["serial"], d["address"]);
    assert_eq!(d["usb"], serde_json::Value::Null, "a pty is not on USB");
    assert_eq!(d["name"], "tether-sim");
    assert_ne!(d["id"], "000000000000", "Discover answered over the line: {d}");
    // The same device by its UDP probe too: one entry, found both ways, the network's address.
    let probe = format!("127.0.0.1:{}", sim.udp_port);
    let both = cli(&[&pty, &probe]);
    assert_eq!(both.len(), 2, "merged by id: {both:?}");
    let by = both[0]["found_by"].as_array().expect("found_by");
    assert!(
        by.contains(&"serial".into()) && by.contains(&"probe".into()),
        "{}",
        both[0]
    );
    assert_eq!(both[0]["address"], "127.0.0.1");
    assert_eq!(both[0]["id"], d["id"]);
    assert_eq!(both[0]["serial"], d["serial"]);
    // `--to @discover:serial:PTY` reaches the device found there over that line (not at the
    // unspecified address 0.0.0.0, which this machine would take for itself).
    let to = format!("@discover:{pty}");
    let out = run_bounded(
        host_cli_cmd(&to, sim.udp_port, &["--json", "--timeout", "5s", "exec", "uptime"]),
        HOST_CLI_LIMIT,
    );
    let first: serde_json::Value = serde_json::from_str(ok(&out).lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["to"], d["serial"], "{first}");
}
