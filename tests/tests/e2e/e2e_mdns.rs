//! mDNS / DNS-SD: `sim --tap` announces `_tether._tcp` and `_tether._udp`, and a real resolver
//! (`mdns-sd`, in `host-cli discover`) inside a private network namespace finds it, with the same
//! facts as the `Discover` probe gets. Multicast on loopback does not carry mDNS well, so this
//! runs on TAP, with the kernel's stack as the resolver's; root and `ip` only. Every address lives
//! inside the namespace the test creates and always deletes.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tether_tests::netns::{is_root, Netns};
use tether_tests::*;

/// `host-cli --json --timeout 2s discover ARGS` inside `ns`: its device objects (the result line
/// dropped).
fn discover(ns: &Netns, args: &[&str]) -> (Output, Vec<Value>) {
    let mut a = vec!["--json", "--timeout", "2s", "discover"];
    a.extend_from_slice(args);
    let out = run_bounded(ns.cmd(&host_cli_bin(), &a), HOST_CLI_LIMIT);
    let mut lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    lines.pop();
    (out, lines)
}

#[test]
fn a_tap_device_is_found_by_mdns_with_the_facts_of_its_probe_answer() {
    if !is_root() || !have("ip") {
        eprintln!("e2e: NOTICE: mDNS test skipped: it needs root and `ip` (iproute2)");
        return;
    }
    let name = format!("tether-mdns-{}", std::process::id());
    let ns = match Netns::create(&name) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("e2e: NOTICE: mDNS test skipped: cannot create a network namespace: {e}");
            return;
        }
    };
    if let Err(e) = ns.add_tap("tap0", "10.77.0.1/24") {
        eprintln!("e2e: NOTICE: mDNS test skipped: cannot set up tap0: {e}");
        return;
    }
    let dir = TempDir::new("mdns");
    let key = dir.join("device.key");
    ok(&run_bounded(
        {
            let mut c = std::process::Command::new(host_cli_bin());
            c.args(["keygen", key.to_str().expect("UTF-8")]);
            c
        },
        HOST_CLI_LIMIT,
    ));
    let args = [
        "--tap",
        "tap0",
        "--ip",
        "10.77.0.2/24",
        "--gateway",
        "10.77.0.1",
        "--key-file",
        key.to_str().expect("UTF-8"),
    ];
    let mut sim = Proc::spawn(ns.cmd(&sim_bin(), &args));
    // Up once the probe finds it; that answer is what mDNS must agree with.
    let probed = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        if sim.finished() {
            return Some(None);
        }
        let (out, found) = discover(&ns, &["--no-mdns", "10.77.0.2"]);
        out.status.success().then(|| Some(found))
    })
    .flatten()
    .unwrap_or_else(|| panic!("sim on TAP never answered a probe"));
    assert_eq!(probed.len(), 1, "{probed:?}");
    let probe = &probed[0];
    assert_eq!(probe["found_by"], serde_json::json!(["probe"]));

    // mDNS alone: WHERE is an address nobody has, so only the resolver can find the device.
    let (out, found) = discover(&ns, &["--mdns", "10.77.0.9"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(found.len(), 1, "{}", describe(&out));
    let heard = &found[0];
    assert_eq!(heard["found_by"], serde_json::json!(["mdns"]), "{heard}");
    for field in [
        "name",
        "id",
        "address",
        "tcp_port",
        "udp_port",
        "protocol",
        "firmware",
        "key_required",
    ] {
        assert_eq!(heard[field], probe[field], "{field}: mDNS {heard} vs probe {probe}");
    }
    assert_eq!(heard["key_required"], true);
    assert_eq!(heard["address"], "10.77.0.2");

    // Both ways at once (a broadcast scope browses by default): one device, found both ways.
    let (out, found) = discover(&ns, &["10.77.0.0/24"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(found.len(), 1, "merged by id: {}", describe(&out));
    let by = found[0]["found_by"].as_array().expect("found_by");
    assert!(
        by.contains(&"broadcast".into()) && by.contains(&"mdns".into()),
        "{}",
        found[0]
    );

    // --no-mdns turns the resolver off: nothing at the address nobody has.
    let (out, _) = discover(&ns, &["--no-mdns", "10.77.0.9"]);
    assert_code(&out, 3);

    assert!(interrupt(sim.id()));
    let out = sim
        .wait_for(Duration::from_secs(10))
        .expect("sim did not stop on SIGINT");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("mdns         announces _tether._tcp and _tether._udp"),
        "{}",
        describe(&out)
    );
}
