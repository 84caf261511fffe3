//! The classic socket tutorials' client programs (tests/tutorial/*.py, standard library only)
//! against the plain-socket ports: the upper-case echo (multi-client, sticky packets, 1 MiB,
//! immediate reconnects), both remote-command versions (4-byte length; JSON header with MD5),
//! UDP time and UDP chat.
//!
//! Against the rootless sim on 127.0.0.1, and against the sim on TAP with the kernel as the peer,
//! inside a network namespace the test creates and deletes (root only; skipped otherwise). The
//! QEMU board runs the same clients from `scripts/firmware.sh test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tether_tests::netns::{is_root, Netns};
use tether_tests::*;

/// The longest one tutorial client may run.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tutorial").join(name)
}

/// The host's current UTC year, what a fresh sim's clock must say.
fn this_year() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 86_400;
    // Civil-from-days (proleptic Gregorian), the year only.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    year.to_string()
}

/// The clients, each with its port (from `ports`) and extra arguments; the upper-echo client
/// runs `echo_clients` clients at once.
fn clients(ports: &Ports, echo_clients: usize) -> Vec<(&'static str, u16, Vec<String>)> {
    vec![
        (
            "upper_echo_client.py",
            ports.echo,
            vec!["--clients".into(), echo_clients.to_string()],
        ),
        ("command_client.py", ports.command, vec![]),
        ("command_json_client.py", ports.command_json, vec![]),
        ("udp_chat_client.py", ports.chat, vec![]),
    ]
}

struct Ports {
    echo: u16,
    command: u16,
    command_json: u16,
    time: u16,
    chat: u16,
}

/// Runs one client (through `wrap`, e.g. `ip netns exec`) and checks that every case passed.
fn run_client(wrap: &dyn Fn(&[&str]) -> Command, name: &str, host: &str, port: u16, extra: &[String]) -> Output {
    let path = script(name);
    let port = port.to_string();
    let mut args = vec![path.to_str().expect("UTF-8 path"), host, &port];
    args.extend(extra.iter().map(String::as_str));
    let t = Instant::now();
    let out = run_bounded(wrap(&args), CLIENT_LIMIT);
    timing(name, t.elapsed());
    assert!(
        out.status.success() && stdout(&out).contains("all passed"),
        "{name} against {host}:{port}: {}",
        describe(&out)
    );
    assert!(!stdout(&out).contains("FAIL"), "{name}: {}", describe(&out));
    out
}

fn python(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(args);
    cmd
}

fn sim_ports(sim: &Sim) -> Ports {
    Ports {
        echo: sim.plain_tcp_port,
        command: sim.plain_command_port,
        command_json: sim.plain_command_json_port,
        time: sim.plain_udp_port,
        chat: sim.plain_chat_port,
    }
}

#[test]
fn tutorial_clients_against_the_rootless_sim() {
    if !have("python3") {
        eprintln!("e2e: NOTICE: python3 is not installed; the tutorial-client tests are skipped");
        return;
    }
    // The pool is configurable: 5 clients at once (and still room for a reconnect).
    let sim = Sim::start(&["--plain-clients", "5"]);
    let ports = sim_ports(&sim);
    for (name, port, extra) in clients(&ports, 5) {
        run_client(&python, name, "127.0.0.1", port, &extra);
    }
    // Still serving the framed protocol afterwards.
    assert_eq!(
        ok(&host_cli(&sim, &["send", "after the tutorials"])).trim_end(),
        "after the tutorials"
    );
}

/// Needs the sim's clock to start from the host's UTC clock (a change made elsewhere): until it
/// lands a fresh sim answers 1970 and this test fails.
#[test]
fn udp_time_tutorial_client_gets_the_hosts_year_from_a_fresh_sim() {
    if !have("python3") {
        eprintln!("e2e: NOTICE: python3 is not installed; the tutorial-client tests are skipped");
        return;
    }
    let sim = Sim::start(&[]);
    let year = this_year();
    run_client(
        &python,
        "udp_time_client.py",
        "127.0.0.1",
        sim.plain_udp_port,
        &["--year".into(), year],
    );
}

#[test]
fn tutorial_clients_against_the_sim_on_tap_with_the_kernel_as_peer() {
    if !is_root() || !have("ip") || !have("python3") {
        eprintln!("e2e: NOTICE: TAP tutorial test skipped: it needs root, `ip` (iproute2) and python3");
        return;
    }
    let name = format!("tether-tut-{}", std::process::id());
    let ns = match Netns::create(&name) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("e2e: NOTICE: TAP tutorial test skipped: cannot create a network namespace: {e}");
            return;
        }
    };
    if let Err(e) = ns.add_tap("tap0", "10.78.0.1/24") {
        eprintln!("e2e: NOTICE: TAP tutorial test skipped: cannot set up tap0: {e}");
        return;
    }
    let sim_args = ["--tap", "tap0", "--ip", "10.78.0.2/24", "--gateway", "10.78.0.1"];
    let mut sim = Proc::spawn(ns.cmd(&sim_bin(), &sim_args));
    let host = |args: &[&str]| -> Output {
        let mut a = vec!["--to", "10.78.0.2:7070", "--udp-port", "7071", "--timeout", "5s"];
        a.extend_from_slice(args);
        run_bounded(ns.cmd(&host_cli_bin(), &a), HOST_CLI_LIMIT)
    };
    let up = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        if sim.finished() {
            return Some(false);
        }
        host(&["send", "hello"]).status.success().then_some(true)
    });
    assert_eq!(up, Some(true), "sim on TAP never answered");

    // The device's own ports (no forwarder in between): the kernel sees every refusal.
    let ports = Ports {
        echo: 8080,
        command: 8081,
        command_json: 8082,
        time: 9000,
        chat: 9001,
    };
    let py = Path::new("python3");
    let wrap = |args: &[&str]| ns.cmd(py, args);
    for (client, port, extra) in clients(&ports, tether_sim::device::PLAIN_CLIENTS) {
        run_client(&wrap, client, "10.78.0.2", port, &extra);
    }
    run_client(
        &wrap,
        "udp_time_client.py",
        "10.78.0.2",
        ports.time,
        &["--year".into(), this_year()],
    );

    assert!(interrupt(sim.id()));
    let out = sim
        .wait_for(Duration::from_secs(10))
        .expect("sim --tap did not stop on SIGINT");
    assert!(out.status.success(), "sim --tap: {}", describe(&out));
    drop(ns);
    let left = tether_tests::netns::ip(&["netns", "list"]);
    assert!(!stdout(&left).contains(&name), "namespace {name} was not deleted");
}
