//! `sim --devices N` end to end: several devices in one process, each on its own loopback address
//! (127.A.B.1, 127.A.B.2, … from `fleet_listen`), reached by the real `host-cli`.

use std::process::Output;

use serde_json::Value;
use tether_tests::{
    assert_code, clean_cli_env, fleet_listen, host_cli_bin, ok, run_bounded, Sim, TempDir, HOST_CLI_LIMIT,
    HOST_CLI_TIMEOUT,
};

/// A fleet of `n` devices with `extra` arguments (plain services off: one pair of ports is all
/// the tests need).
fn fleet(n: u32, extra: &[&str]) -> Sim {
    let listen = fleet_listen();
    let devices = n.to_string();
    let mut args = vec!["--devices", &devices, "--listen", &listen, "--no-plain"];
    args.extend_from_slice(extra);
    Sim::start(&args)
}

/// `host-cli ARGS` with a clean environment and the test timeout (unless ARGS has one).
fn cli(args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(host_cli_bin());
    clean_cli_env(&mut cmd);
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", HOST_CLI_TIMEOUT]);
    }
    cmd.args(args);
    run_bounded(cmd, HOST_CLI_LIMIT)
}

/// `host-cli --to DEVICE i --json ARGS`, its one JSON result.
fn json_on(sim: &Sim, i: u32, args: &[&str]) -> Value {
    let to = sim.device_to(i);
    let mut all = vec!["--to", &to, "--json"];
    all.extend_from_slice(args);
    let out = ok(&cli(&all));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn each_device_has_its_own_address_name_store_and_port() {
    let sim = fleet(3, &[]);
    let dir = TempDir::new("fleet-files");
    for i in 1..=3 {
        let info = json_on(&sim, i, &["info"]);
        assert_eq!(info["device"], format!("sim-00{i}"), "{info}");
        // Each advertises the UDP port it is reached on, on its own address.
        assert_eq!(info["udp_port"], sim.udp_port, "{info}");
        let time = json_on(&sim, i, &["time"]);
        assert!(time["time"].is_string(), "{time}");
    }
    // A file put on device 2 is on device 2 only.
    let local = dir.join("a.txt");
    std::fs::write(&local, b"only on two").expect("write a local file");
    json_on(&sim, 2, &["put", local.to_str().expect("UTF-8 path"), "a.txt"]);
    let ls = |i| json_on(&sim, i, &["ls"])["count"].as_u64();
    assert_eq!((ls(1), ls(2), ls(3)), (Some(0), Some(1), Some(0)));
    // There is no fourth device.
    let to = sim.device_to(4);
    assert_code(&cli(&["--to", &to, "info"]), 3);
}

#[test]
fn key_dir_gives_each_device_its_own_key() {
    let keys = TempDir::new("fleet-keys");
    for name in ["sim-001", "sim-002"] {
        let file = keys.join(&format!("{name}.key"));
        ok(&cli(&["keygen", file.to_str().expect("UTF-8 path")]));
    }
    let dir = keys.path().to_str().expect("UTF-8 path");
    let sim = fleet(2, &["--key-dir", dir]);
    let one = keys.join("sim-001.key");
    let one = one.to_str().expect("UTF-8 path");
    let (first, second) = (sim.device_to(1), sim.device_to(2));
    // Device 1 takes its key and is sealed; device 2 refuses it (exit 6), and requires one.
    let info = ok(&cli(&["--to", &first, "--key-file", one, "--json", "exec", "uptime"]));
    assert!(info.contains("\"status\":0"), "{info}");
    assert_code(&cli(&["--to", &second, "--key-file", one, "exec", "uptime"]), 6);
    let open = ok(&cli(&["--to", &second, "--json", "info"]));
    assert!(open.contains("\"key_required\":true"), "{open}");
}

#[test]
fn a_missing_key_in_key_dir_stops_the_start() {
    let keys = TempDir::new("fleet-nokeys");
    let dir = keys.path().to_str().expect("UTF-8 path");
    let listen = fleet_listen();
    let err = Sim::try_start(&["--devices", "2", "--listen", &listen, "--key-dir", dir])
        .err()
        .expect("sim refuses to start without the keys");
    assert!(err.contains("sim-001.key"), "{err}");
}

/// `host-cli --json discover ARGS`: the devices it found (its items; the result says how many).
fn discovered(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["discover"];
    all.extend_from_slice(args);
    let mut lines = json_lines(&all);
    let result = lines.pop().expect("a result");
    assert_eq!(result["count"].as_u64(), Some(lines.len() as u64), "{result}");
    lines
}

/// `host-cli --json ARGS`: its JSON lines.
fn json_lines(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    ok(&cli(&all))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn discover_finds_every_device_of_the_range_and_only_those() {
    let sim = fleet(4, &[]);
    // Two addresses past the last device: nobody answers there.
    let range = format!("{}-{}:{}", sim.device_ip(1), sim.device_ip(6), sim.udp_port);
    let t = std::time::Instant::now();
    let found = discovered(&["--timeout", "1s", &range]);
    let names: Vec<&str> = found.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["sim-001", "sim-002", "sim-003", "sim-004"]);
    for (i, d) in (1..).zip(&found) {
        assert_eq!(d["address"], sim.device_ip(i).to_string(), "{d}");
        assert_eq!(
            (d["tcp_port"].as_u64(), d["udp_port"].as_u64()),
            (Some(u64::from(sim.tcp_port)), Some(u64::from(sim.udp_port)))
        );
        assert_eq!(
            (d["protocol"].as_u64(), d["key_required"].as_bool()),
            (Some(1), Some(false)),
            "{d}"
        );
        assert!(
            d["firmware"].as_str().is_some_and(|f| f.starts_with("tether-sim ")),
            "{d}"
        );
        assert_eq!(d["found_by"], serde_json::json!(["probe"]), "{d}");
        assert_eq!(d["id"].as_str().map(str::len), Some(12), "{d}");
    }
    // Ids differ; the wait ended at the timeout (for the two silent addresses).
    let mut ids: Vec<&str> = found.iter().filter_map(|d| d["id"].as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    assert!(t.elapsed() >= std::time::Duration::from_secs(1), "{:?}", t.elapsed());
    // Only the devices: every address answered, so no waiting for the timeout.
    let exact = format!("{}-{}:{}", sim.device_ip(1), sim.device_ip(4), sim.udp_port);
    let t = std::time::Instant::now();
    assert_eq!(discovered(&["--timeout", "30s", &exact]).len(), 4);
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
    // Nothing there at all: exit 3.
    let nobody = format!("{}:{}", sim.device_ip(9), sim.udp_port);
    assert_code(&cli(&["--timeout", "300ms", "discover", &nobody]), 3);
}

/// `host-cli --json ARGS` on a fan-out: the per-device objects and the summary (its last line).
fn fan_out(args: &[&str], env: &[(&str, &str)]) -> (Output, Vec<Value>, Value) {
    let mut cmd = std::process::Command::new(host_cli_bin());
    clean_cli_env(&mut cmd);
    cmd.args(["--timeout", HOST_CLI_TIMEOUT, "--json"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_bounded(cmd, HOST_CLI_LIMIT);
    let mut lines: Vec<Value> = tether_tests::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines
        .pop()
        .unwrap_or_else(|| panic!("no output: {}", tether_tests::describe(&out)));
    (out, lines, summary)
}

#[test]
fn fan_out_runs_on_every_device_and_reports_the_one_that_failed() {
    let sim = fleet(3, &[]);
    // Three devices and an address where nothing listens, in that order.
    let list = [1, 2, 9, 3].map(|i| sim.device_to(i)).join(",");
    let (out, devices, summary) = fan_out(&["--to", &list, "exec", "uptime"], &[]);
    assert_code(&out, 3);
    let oks: Vec<bool> = devices.iter().map(|d| d["ok"] == true).collect();
    assert_eq!(oks, [true, true, false, true], "in the list's order: {devices:?}");
    for (d, i) in devices.iter().zip([1, 2, 9, 3]) {
        assert_eq!(d["to"], sim.device_to(i), "{d}");
        assert!(d["ms"].as_f64().is_some(), "{d}");
    }
    assert!(
        devices[0]["output"].as_str().is_some_and(|o| o.starts_with("up ")),
        "{}",
        devices[0]
    );
    assert_eq!(devices[2]["error"]["kind"], "connection", "{}", devices[2]);
    assert_eq!(
        (summary["ok"].as_bool(), summary["failed"].as_u64()),
        (Some(false), Some(1)),
        "{summary}"
    );
    assert_eq!(
        (summary["devices"].as_u64(), summary["succeeded"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(summary["error"]["exit_code"], 3, "{summary}");
    // For people: a line per device, the failure named, the totals.
    let to = [1, 9].map(|i| sim.device_to(i)).join(",");
    let human = cli(&["--to", &to, "rm", "nothing.txt"]);
    assert_code(&human, 1);
    let text = tether_tests::stdout(&human);
    assert_eq!(text.lines().filter(|l| l.starts_with("FAIL")).count(), 2, "{text}");
    assert!(
        tether_tests::stderr(&human).contains("2 of 2 devices failed"),
        "{}",
        tether_tests::describe(&human)
    );
    // Commands that talk to one device refuse a list.
    assert_code(&cli(&["--to", &list, "ls"]), 2);
}

#[test]
fn fan_out_to_a_group_and_to_discovered_devices() {
    let sim = fleet(4, &[]);
    let dir = TempDir::new("fleet-group");
    let config = dir.join("config.toml");
    let (one, two) = (sim.device_to(1), sim.device_to(2));
    let text = format!(
        "discover = [\"{}-{}:{}\"]\n[devices.first]\nto = \"{one}\"\n[groups]\npair = [\"first\", \"{two}\"]\n",
        sim.device_ip(1),
        sim.device_ip(4),
        sim.udp_port
    );
    std::fs::write(&config, text).expect("write the config");
    let env = [("TETHER_CONFIG", config.to_str().expect("UTF-8 path"))];
    let (out, devices, summary) = fan_out(&["--to", "@pair", "info"], &env);
    ok(&out);
    let names: Vec<&str> = devices.iter().filter_map(|d| d["device"].as_str()).collect();
    assert_eq!(names, ["sim-001", "sim-002"]);
    assert_eq!(devices[0]["target"], "first");
    assert_eq!(summary["succeeded"], 2, "{summary}");
    // @discover looks where the config says; a file to every device, then one back from each.
    let local = dir.join("f.txt");
    std::fs::write(&local, b"to all").expect("write");
    let (out, devices, _) = fan_out(&["--to", "@discover", "put", local.to_str().expect("UTF-8")], &env);
    ok(&out);
    assert_eq!(devices.len(), 4);
    let back = dir.join("back");
    std::fs::create_dir(&back).expect("mkdir");
    let (out, _, _) = fan_out(
        &["--to", "@discover", "get", "f.txt", back.to_str().expect("UTF-8")],
        &env,
    );
    ok(&out);
    for name in ["sim-001", "sim-002", "sim-003", "sim-004"] {
        assert_eq!(
            std::fs::read(back.join(name).join("f.txt")).expect("one file per device"),
            b"to all"
        );
    }
    // An unknown group is a usage error that names the known ones.
    let mut cmd = std::process::Command::new(host_cli_bin());
    clean_cli_env(&mut cmd);
    cmd.env("TETHER_CONFIG", &config).args(["--to", "@nope", "info"]);
    let out = run_bounded(cmd, HOST_CLI_LIMIT);
    assert_code(&out, 2);
    assert!(
        tether_tests::stderr(&out).contains("pair"),
        "{}",
        tether_tests::describe(&out)
    );
}

#[test]
fn fan_out_serves_at_most_jobs_devices_at_once() {
    let sim = fleet(4, &[]);
    let list = (1..=4).map(|i| sim.device_to(i)).collect::<Vec<_>>().join(",");
    // Four 300 ms commands two at a time take two rounds; all at once, one.
    let t = std::time::Instant::now();
    let (out, devices, _) = fan_out(&["--jobs", "2", "--to", &list, "exec", "sleep", "300"], &[]);
    ok(&out);
    assert_eq!(devices.len(), 4);
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    ok(&fan_out(&["--jobs", "4", "--to", &list, "exec", "sleep", "300"], &[]).0);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(600 + 2000),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn twenty_devices_answer_a_fan_out_at_once() {
    // More devices than a gateway could reach by its own ARP requests (one a second) in time.
    let sim = fleet(20, &[]);
    let scope = format!("@discover:{}-{}:{}", sim.device_ip(1), sim.device_ip(20), sim.udp_port);
    let t = std::time::Instant::now();
    let (out, devices, summary) = fan_out(&["--to", &scope, "exec", "uptime"], &[]);
    ok(&out);
    assert_eq!(devices.len(), 20);
    assert_eq!(summary["succeeded"], 20, "{summary}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn fw_update_fans_out_and_each_device_keeps_its_own_slots() {
    use crate::e2e_firmware::{image, image_hash, keys};
    let dir = TempDir::new("fleet-fw");
    let key = keys(&dir, "fw.key");
    let public = format!("{}.pub", key.to_str().expect("UTF-8 path"));
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("mkdir");
    let sim = fleet(3, &["--fw-key", &public, "--root", root.to_str().expect("UTF-8 path")]);
    let v1 = image(&dir, &key, "1.0.0", &[], 20_000);
    // Devices 1 and 3, and an address where nothing listens between them.
    let list = [1, 9, 3].map(|i| sim.device_to(i)).join(",");
    let (out, devices, summary) = fan_out(&["--to", &list, "fw", "update", v1.to_str().expect("UTF-8")], &[]);
    assert_code(&out, 3);
    let oks: Vec<bool> = devices.iter().map(|d| d["ok"] == true).collect();
    assert_eq!(oks, [true, false, true], "{devices:?}");
    assert_eq!(summary["succeeded"], 2, "{summary}");
    // Each updated device runs v1, confirmed; device 2 was not in the list and runs 0.0.0.
    let hash = image_hash(&v1);
    for i in [1, 3] {
        let s = json_on(&sim, i, &["fw", "status"]);
        assert_eq!(s["running"]["version"], "1.0.0", "device {i}: {s}");
        assert_eq!(s["running"]["hash"], hash.as_str(), "device {i}: {s}");
    }
    let s = json_on(&sim, 2, &["fw", "status"]);
    assert_eq!(s["running"]["version"], "0.0.0", "{s}");
    // The slots are each device's own, under its store directory.
    for name in ["sim-001", "sim-002", "sim-003"] {
        assert!(root.join(name).join(".tether-fw").is_dir(), "{name}");
    }
    // `fw status` on all three at once.
    let all = (1..=3).map(|i| sim.device_to(i)).collect::<Vec<_>>().join(",");
    let (out, devices, _) = fan_out(&["--to", &all, "fw", "status"], &[]);
    ok(&out);
    let versions: Vec<&str> = devices
        .iter()
        .filter_map(|d| d["running"]["version"].as_str())
        .collect();
    assert_eq!(versions, ["1.0.0", "0.0.0", "1.0.0"], "{devices:?}");
}
