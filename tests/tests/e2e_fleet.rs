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

/// `host-cli ARGS` with a clean environment and the test timeout, nothing else.
fn cli(args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(host_cli_bin());
    clean_cli_env(&mut cmd);
    cmd.args(["--timeout", HOST_CLI_TIMEOUT]).args(args);
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
