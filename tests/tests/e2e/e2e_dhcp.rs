//! `sim --tap --dhcp` against `dnsmasq` (Debian's `dnsmasq-base`) inside a private network
//! namespace: no server yet, so the fallback address; a server turns up, so a lease, and the
//! session on the fallback address is closed; the server is replaced by one with another range,
//! so the renewal is refused, the lease is lost and a new one (another address) taken.
//!
//! Runs only as root with `ip` and `dnsmasq`; every address lives inside the namespace the test
//! creates and always deletes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tether_tests::netns::{tap_namespace, Netns};
use tether_tests::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// `program args…` inside `ns` with stdout and stderr appended to `log`, so the test can read
/// what it printed so far while it runs.
fn logged(ns: &Netns, program: &Path, args: &[&str], log: &Path) -> Command {
    let mut a = vec!["-c", "exec \"$0\" \"$@\" >>\"$LOG\" 2>&1", p(program)];
    a.extend_from_slice(args);
    let mut cmd = ns.cmd(Path::new("sh"), &a);
    cmd.env("LOG", log);
    cmd
}

/// `sim`'s arguments for DHCP on the `tap0` of the test's namespace, 10.77.0.2/24 the fallback.
const DHCP_ON_TAP: [&str; 7] = [
    "--tap",
    "tap0",
    "--dhcp",
    "--ip",
    "10.77.0.2/24",
    "--gateway",
    "10.77.0.1",
];

/// dnsmasq serving `range` (`first,last`) on tap0 with 2-minute leases, in the foreground.
fn dnsmasq(ns: &Netns, range: &str, dir: &TempDir, tag: &str) -> Proc {
    let range = format!("--dhcp-range={range},255.255.255.0,2m");
    let leases = format!("--dhcp-leasefile={}", p(&dir.join(&format!("{tag}.leases"))));
    let args = [
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=tap0",
        "--bind-interfaces",
        &range,
        "--dhcp-option=option:router,10.77.0.1",
        &leases,
        "--dhcp-authoritative",
        "--no-ping",
        "--log-dhcp",
    ];
    Proc::spawn(logged(
        ns,
        Path::new("dnsmasq"),
        &args,
        &dir.join(&format!("{tag}.log")),
    ))
}

/// Waits up to `limit` for a line of `log` starting with `prefix` after the first `skip` lines
/// that do; returns it.
fn line_after(log: &Path, prefix: &str, skip: usize, limit: Duration) -> Option<String> {
    poll_until(limit, Duration::from_millis(50), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect();
        found.get(skip).cloned()
    })
}

/// Stops `sim` with Ctrl-C: it exits 0 and its log (`log`) says `said`.
#[track_caller]
fn stops_on_ctrl_c(mut sim: Proc, log: &Path, said: &str) {
    assert!(interrupt(sim.id()));
    let out = sim
        .wait_for(Duration::from_secs(10))
        .expect("sim did not stop on SIGINT");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(out.status.success(), "{}\n{text}", describe(&out));
    assert!(text.contains(said), "{text}");
}

/// The address in a `dhcp: leased A/24 …` line.
fn leased(line: &str) -> String {
    let rest = line
        .strip_prefix("dhcp: leased ")
        .unwrap_or_else(|| panic!("not a lease: {line}"));
    rest.split('/').next().expect("an address").to_string()
}

#[test]
fn a_tap_device_falls_back_then_takes_leases_from_dnsmasq_and_moves() {
    // dnsmasq comes with Debian's dnsmasq-base.
    let Some(ns) = tap_namespace("DHCP test", "dhcp", "10.77.0.1/24", &["dnsmasq"]) else {
        return;
    };
    let dir = TempDir::new("dhcp");
    let log = dir.join("sim.log");
    // Renewal at half of 6 s, so the replaced server is asked within seconds.
    let sim_args = [
        DHCP_ON_TAP.as_slice(),
        &["--dhcp-timeout", "2", "--dhcp-max-lease", "6"],
    ]
    .concat();
    let sim_bin: PathBuf = sim_bin();
    let sim = Proc::spawn(logged(&ns, &sim_bin, &sim_args, &log));
    let sim_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let host = |to: &str, args: &[&str]| -> Output {
        let to = format!("{to}:7070");
        let mut a = vec!["--to", &to, "--udp-port", "7071", "--timeout", "5s"];
        a.extend_from_slice(args);
        run_bounded(ns.cmd(&host_cli_bin(), &a), HOST_CLI_LIMIT)
    };

    // 1. No server on the segment: after --dhcp-timeout the fallback, and the device answers on it.
    let t = Instant::now();
    let fallback = line_after(&log, "dhcp: ", 0, Duration::from_secs(20));
    assert_eq!(
        fallback.as_deref(),
        Some("dhcp: no lease: fallback address 10.77.0.2/24 gateway 10.77.0.1"),
        "{}",
        sim_log()
    );
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "fallback after {:?}",
        t.elapsed()
    );
    ok(&host("10.77.0.2", &["info"]));

    // A silent peer holds a session on the fallback address.
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/sessions.py");
    let held = dir.join("held");
    let holder = Proc::spawn(ns.cmd(
        Path::new("python3"),
        &[p(&peers), "10.77.0.2", "7070", "hold", "1", p(&held)],
    ));
    let got = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        held.exists().then_some(())
    });
    assert!(got.is_some(), "the holding peer never got its session");

    // 2. A server turns up: its lease replaces the fallback (smoltcp asks again every 10 s), and
    // the held session is closed with a reset the peer sees.
    let _first = dnsmasq(&ns, "10.77.0.100,10.77.0.150", &dir, "first");
    let t = Instant::now();
    let lease =
        line_after(&log, "dhcp: ", 1, Duration::from_secs(30)).unwrap_or_else(|| panic!("no lease: {}", sim_log()));
    timing("DHCP: fallback replaced by a lease", t.elapsed());
    assert!(
        lease.ends_with("gateway 10.77.0.1 (was 10.77.0.2/24; 1 session closed)"),
        "{lease}"
    );
    let first = leased(&lease);
    let octet: u8 = first
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .expect("an IPv4 address");
    assert!(first.starts_with("10.77.0.") && (100..=150).contains(&octet), "{first}");
    let out = holder.output(Duration::from_secs(40));
    assert_eq!(stdout(&out).trim_end(), "evicted 1", "{}", describe(&out));
    // The device answers on its lease, and discovery on the segment reports it there.
    let info = ok(&host(&first, &["info"]));
    assert!(info.contains("tether-sim"), "{info}");
    let discover = ["--json", "--timeout", "1s", "discover", "10.77.0.0/24"];
    let found = ok(&run_bounded(ns.cmd(&host_cli_bin(), &discover), HOST_CLI_LIMIT));
    let want = format!("\"address\":\"{first}\"");
    assert!(found.lines().next().is_some_and(|l| l.contains(&want)), "{found}");

    // 3. The server is replaced by one with another range: the renewal (at 3 s) is refused, the
    // lease is lost, and discovery gets an address of the new range.
    drop(_first);
    let _second = dnsmasq(&ns, "10.77.0.200,10.77.0.210", &dir, "second");
    let t = Instant::now();
    let lost = line_after(&log, "dhcp: ", 2, Duration::from_secs(30)).unwrap_or_else(|| panic!("kept: {}", sim_log()));
    assert_eq!(
        lost,
        format!("dhcp: lease lost: no address (was {first}/24; 0 sessions closed)")
    );
    let lease =
        line_after(&log, "dhcp: ", 3, Duration::from_secs(30)).unwrap_or_else(|| panic!("no new lease: {}", sim_log()));
    timing("DHCP: renewal refused, new lease", t.elapsed());
    let second = leased(&lease);
    assert!(second.starts_with("10.77.0.2") && second != first, "{lease}");
    ok(&host(&second, &["info"]));
    // mDNS follows the move: a resolver (host-cli's, asked for nothing but mDNS) hears the device
    // at its new address.
    let mdns = ["--json", "--timeout", "2s", "discover", "--mdns", "10.77.0.9"];
    let heard = ok(&run_bounded(ns.cmd(&host_cli_bin(), &mdns), HOST_CLI_LIMIT));
    let want = format!("\"address\":\"{second}\"");
    assert!(
        heard
            .lines()
            .next()
            .is_some_and(|l| l.contains(&want) && l.contains("\"mdns\"")),
        "{heard}"
    );

    stops_on_ctrl_c(sim, &log, "sim: stopped");
}

#[test]
fn dhcp_wants_tap() {
    let mut cmd = Command::new(sim_bin());
    cmd.arg("--dhcp");
    let out = run_bounded(cmd, Duration::from_secs(20));
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--tap"), "{}", describe(&out));
}

/// `host-cli --json ARGS` inside `ns`: its JSON lines, the result line last.
fn json_in(ns: &Netns, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = run_bounded(ns.cmd(&host_cli_bin(), &a), HOST_CLI_LIMIT);
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", describe(&out))))
        .collect()
}

#[test]
fn a_fleet_on_tap_takes_a_lease_each_and_is_found_by_probe_and_mdns() {
    let Some(ns) = tap_namespace("fleet on TAP test", "fleet", "10.77.0.1/24", &["dnsmasq"]) else {
        return;
    };
    let dir = TempDir::new("fleet-tap");
    let _dnsmasq = dnsmasq(&ns, "10.77.0.100,10.77.0.150", &dir, "fleet");
    let log = dir.join("sim.log");
    let n = 4;
    let sim_args = [&["--devices", "4"], DHCP_ON_TAP.as_slice()].concat();
    let sim = Proc::spawn(logged(&ns, &sim_bin(), &sim_args, &log));
    let sim_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Every device takes a lease of its own, and says so under its name.
    let t = Instant::now();
    let leases = poll_until(Duration::from_secs(40), Duration::from_millis(100), || {
        let text = sim_log();
        let got: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.split_once(' ')?;
                rest.starts_with("dhcp: leased ")
                    .then(|| (name.to_string(), leased(rest)))
            })
            .collect();
        (got.len() >= n).then_some(got)
    })
    .unwrap_or_else(|| panic!("not every device got a lease: {}", sim_log()));
    timing("DHCP: 4 devices on TAP leased", t.elapsed());
    let mut names: Vec<&str> = leases.iter().map(|(name, _)| name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["sim-001", "sim-002", "sim-003", "sim-004"], "{}", sim_log());
    let mut addresses: Vec<&str> = leases.iter().map(|(_, a)| a.as_str()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), n, "one address each: {leases:?}");
    assert!(addresses.iter().all(|a| a.starts_with("10.77.0.1")), "{leases:?}");

    // Discovery on the segment: the probe broadcast on the subnet and mDNS both find every device, at its
    // lease, under its name.
    let found = json_in(&ns, &["--timeout", "2s", "discover", "10.77.0.0/24"]);
    let devices = &found[..found.len() - 1];
    assert_eq!(devices.len(), n, "{found:?}");
    for (name, address) in &leases {
        let d = devices
            .iter()
            .find(|d| d["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not found: {found:?}"));
        assert_eq!(d["address"], address.as_str(), "{d}");
        assert_eq!(d["found_by"], serde_json::json!(["broadcast", "mdns"]), "{d}");
        assert_eq!(
            (d["tcp_port"].as_u64(), d["udp_port"].as_u64()),
            (Some(7070), Some(7071)),
            "{d}"
        );
    }

    // A fan-out over the leases, with an address nobody has: each device answers from its own
    // store; the empty address is the one failure.
    let mut list: Vec<String> = leases.iter().map(|(_, a)| format!("{a}:7070")).collect();
    list.push("10.77.0.99:7070".to_string());
    let lines = json_in(
        &ns,
        &["--timeout", "5s", "--udp-port", "7071", "--to", &list.join(","), "info"],
    );
    let summary = &lines[lines.len() - 1];
    assert_eq!(
        (summary["devices"].as_u64(), summary["succeeded"].as_u64()),
        (Some(n as u64 + 1), Some(n as u64)),
        "{lines:?}"
    );
    for ((name, _), line) in leases.iter().zip(&lines) {
        assert_eq!(line["ok"], true, "{line}");
        assert!(line.to_string().contains(name.as_str()), "{name}: {line}");
    }

    stops_on_ctrl_c(sim, &log, "sim: stopped; 4 devices");
}
