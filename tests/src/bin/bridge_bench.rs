//! `bridge_bench`: figures for docs/BENCHMARKS.md ("Devices on an MQTT broker"), in one run on
//! 127.0.0.1 only: a mosquitto of its own, `sim --devices N`, and `tether-bridge` (the binaries
//! next to this one, so build them in the same profile), then
//!
//! 1. the bridge's resident memory with 1 device and with N (and so per device);
//! 2. events per second from the N devices through the bridge to the broker: each device gets
//!    `--events` datagram messages (each becomes a `message` event pushed into the bridge's
//!    session), counted as they arrive on the broker; beside it, `mosquitto_pub -l`'s own rate
//!    for as many messages of the same size at QoS 1 on the same broker;
//! 3. command round trips through the broker (`exec uptime`, one at a time): p50 and p99.
//!
//! ```text
//! bridge_bench [--devices 256] [--events 40] [--commands 500]
//! ```
//!
//! Every process it starts is killed on exit; every wait is bounded. Prints a Markdown table.

use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tether_core::codec::encode;
use tether_core::msg;
use tether_core::wire::{FrameSpec, Kind};
use tether_tests::mqtt::{find_program, subscriber, Inbox, Mosquitto};
use tether_tests::{fleet_listen, free_port, poll_until, Proc, TempDir};

struct Opts {
    devices: u32,
    events: u32,
    commands: u32,
    pace_ms: u32,
}

fn main() -> ExitCode {
    let mut o = Opts {
        devices: 256,
        events: 40,
        commands: 500,
        pace_ms: 20,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u32>().ok());
        match (pair[0].as_str(), value) {
            ("--devices", Some(v)) if (1..=256).contains(&v) => o.devices = v,
            ("--events", Some(v)) if (1..=10_000).contains(&v) => o.events = v,
            ("--commands", Some(v)) if (1..=100_000).contains(&v) => o.commands = v,
            ("--pace-ms", Some(v)) if (1..=1000).contains(&v) => o.pace_ms = v,
            _ => {
                eprintln!(
                    "bridge_bench: usage: bridge_bench [--devices 1..256] [--events 1..10000] [--commands 1..100000] [--pace-ms 1..1000]"
                );
                return ExitCode::from(2);
            }
        }
    }
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exe(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.parent().unwrap_or(Path::new(".")).join(name)
}

fn find(program: &str) -> Result<PathBuf, String> {
    find_program(program).ok_or_else(|| format!("{program} is not installed"))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// How long the bridge's idle CPU is measured.
const IDLE: Duration = Duration::from_secs(10);

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name (which may hold spaces) in parentheses.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Clock ticks a second (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn count(seen: &Inbox, pred: impl Fn(&str) -> bool) -> usize {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| pred(&m.topic))
        .count()
}

/// Waits until `want` messages match, up to `limit`, or until none more came for 3 s (some were
/// lost); how many did.
fn wait_count(seen: &Inbox, want: usize, limit: Duration, pred: impl Fn(&str) -> bool) -> usize {
    let (mut last, mut since) = (0, Instant::now());
    poll_until(limit, Duration::from_millis(10), || {
        let n = count(seen, &pred);
        if n != last {
            (last, since) = (n, Instant::now());
        }
        (n >= want || (n > 0 && since.elapsed() > Duration::from_secs(3))).then_some(())
    });
    count(seen, &pred)
}

fn bridge(port: u16, site: &str, to: &str, dir: &TempDir) -> Proc {
    let mut cmd = Command::new(exe("tether-bridge"));
    cmd.args(["--broker", &format!("127.0.0.1:{port}"), "--site", site, "--to", to])
        .args(["--client-id", site, "--poll", "10s"])
        .env("TETHER_CONFIG", dir.join("none.toml"))
        .env_remove("TETHER_KEY_FILE");
    Proc::spawn(cmd)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

fn run(o: &Opts) -> Result<(), String> {
    let dir = TempDir::new("bridge-bench");
    let broker = Mosquitto::start("max_queued_messages 100000\nset_tcp_nodelay true\n")?;
    let port = broker.port;

    let listen = fleet_listen();
    let (tcp, udp) = (free_port(), free_port());
    let mut sim = Command::new(exe("sim"));
    sim.args(["--devices", &o.devices.to_string(), "--listen", &listen, "--no-plain"])
        .args(["--tcp-port", &tcp.to_string(), "--udp-port", &udp.to_string()]);
    let _sim = Proc::spawn(sim);
    let first: std::net::Ipv4Addr = listen.parse().map_err(|_| "a bad listen address")?;
    let ip = |i: u32| std::net::Ipv4Addr::from(u32::from(first) + i - 1);
    let last = format!("{}:{tcp}", ip(o.devices));
    poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        TcpStream::connect(&last).ok()
    })
    .ok_or("the sim did not come up")?;

    let (client, seen) = subscriber(
        port,
        &["tether/v1/+/+/state", "tether/v1/+/+/message", "bench/#"],
        Duration::from_secs(30),
    )?;
    let online =
        |site: &'static str| move |t: &str| t.starts_with(&format!("tether/v1/{site}/")) && t.ends_with("/state");

    // 1. Memory: one device, then all.
    let one = bridge(port, "one", &format!("{}:{tcp}", ip(1)), &dir);
    wait_count(&seen, 1, Duration::from_secs(20), online("one"));
    std::thread::sleep(Duration::from_secs(1));
    let rss_one = rss_kib(one.id());
    drop(one);
    let started = Instant::now();
    let all = bridge(
        port,
        "all",
        &format!("@discover:{}-{}:{udp}", ip(1), ip(o.devices)),
        &dir,
    );
    let n = wait_count(&seen, o.devices as usize, Duration::from_secs(60), online("all"));
    let all_online = started.elapsed();
    if n < o.devices as usize {
        return Err(format!("only {n} of {} devices came online", o.devices));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_all = rss_kib(all.id());
    let idle_before = cpu_ticks(all.id());
    std::thread::sleep(IDLE);
    let idle_cpu = (cpu_ticks(all.id()) - idle_before) as f64 / ticks_per_second() / IDLE.as_secs_f64() * 100.0;

    // 2. Events: datagram messages to every device, round robin, a few at a time per device.
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let body = [b'x'; 64];
    let mut frame = vec![0u8; msg::MAX_DATAGRAM];
    let total = (o.devices * o.events) as usize;
    let is_event = |t: &str| t.starts_with("tether/v1/all/") && t.ends_with("/message");
    let t0 = Instant::now();
    let mut id = 1;
    for _round in 0..o.events {
        for i in 1..=o.devices {
            frame.iter_mut().for_each(|b| *b = 0);
            encode(
                &mut frame,
                FrameSpec::request(Kind::Message, id),
                &msg::Message { from: "bench" },
                &body,
            )
            .map_err(|e| format!("encode: {e:?}"))?;
            id += 1;
            let _ = sock.send_to(&frame, (ip(i), udp));
        }
        // Paced: one datagram per device per round (the devices' UDP sockets hold a few each).
        std::thread::sleep(Duration::from_millis(u64::from(o.pace_ms)));
    }
    let got = wait_count(&seen, total, Duration::from_secs(60), is_event);
    let last_event = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| is_event(&m.topic))
        .map(|m| m.at)
        .max()
        .unwrap_or(t0);
    let event_size = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|m| is_event(&m.topic))
        .map_or(100, |m| m.payload.len());
    let bridge_rate = got as f64 / (last_event - t0).as_secs_f64();
    // How many events the devices published: each device's last sequence number (they count
    // from 1 at boot, and nothing else made events on them).
    let mut last_seq = std::collections::HashMap::<String, u64>::new();
    for m in seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| is_event(&m.topic))
    {
        let seq = serde_json::from_slice::<serde_json::Value>(&m.payload)
            .ok()
            .and_then(|v| v["seq"].as_u64())
            .unwrap_or(0);
        let e = last_seq.entry(m.topic.clone()).or_default();
        *e = (*e).max(seq);
    }
    let published: u64 = last_seq.values().sum();
    let offered = f64::from(o.devices) * 1000.0 / f64::from(o.pace_ms);

    // mosquitto_pub's own rate: as many messages of the same size, QoS 1, from stdin.
    let line = "x".repeat(event_size);
    let input: String = (0..total).map(|_| format!("{line}\n")).collect();
    let t1 = Instant::now();
    let mut publ = Command::new(find("mosquitto_pub")?);
    publ.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        "bench/pub",
        "-l",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null());
    let mut child = publ.spawn().map_err(|e| format!("mosquitto_pub: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let pubbed = wait_count(&seen, total, Duration::from_secs(60), |t| t == "bench/pub");
    let pub_time = t1.elapsed();
    let _ = child.wait();
    let pub_rate = pubbed as f64 / pub_time.as_secs_f64();

    // 3. Command round trips, one at a time, over the devices in turn.
    let mut rtts = Vec::new();
    for k in 0..o.commands {
        let device = format!("sim-{:03}", k % o.devices + 1);
        let reply = format!("bench/reply/{k}");
        let payload = format!(r#"{{"id":"b{k}","reply":"{reply}","command":"uptime"}}"#);
        let t = Instant::now();
        client
            .publish(
                format!("tether/v1/all/{device}/cmd/exec"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .map_err(|e| e.to_string())?;
        // Looked for every millisecond: a round trip is timed to about 1 ms (wait_count's 10 ms
        // steps made every answer under 10 ms read as 10 ms).
        let answered = poll_until(Duration::from_secs(10), Duration::from_millis(1), || {
            (count(&seen, |x| x == reply) > 0).then_some(())
        });
        if answered.is_none() {
            return Err(format!("no answer to command {k}"));
        }
        rtts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rtts.sort_by(f64::total_cmp);
    drop(all);

    println!("| figure | value |");
    println!("| --- | --- |");
    println!("| devices | {} (`sim --devices {} --no-plain`) |", o.devices, o.devices);
    println!(
        "| all devices online (from the bridge's start, discovery included) | {:.2} s |",
        all_online.as_secs_f64()
    );
    println!(
        "| bridge resident memory, 1 device | {:.1} MiB |",
        rss_one as f64 / 1024.0
    );
    println!(
        "| bridge resident memory, {} devices | {:.1} MiB |",
        o.devices,
        rss_all as f64 / 1024.0
    );
    println!(
        "| bridge CPU, idle, {} devices | {idle_cpu:.1} % of a core |",
        o.devices
    );
    println!(
        "| per device | {:.0} KiB |",
        (rss_all.saturating_sub(rss_one)) as f64 / f64::from(o.devices.max(2) - 1)
    );
    println!(
        "| events: {total} datagrams sent ({offered:.0} /s offered), {published} published by the devices, {got} arrived on the broker ({event_size}-byte payloads) | {bridge_rate:.0} /s |"
    );
    println!("| `mosquitto_pub -l -q 1`, {pubbed} messages of {event_size} bytes | {pub_rate:.0} /s |");
    println!(
        "| command round trip (`exec uptime`, {} in turn) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        rtts.len(),
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
        rtts.last().copied().unwrap_or(0.0)
    );
    let _ = client.try_disconnect();
    Ok(())
}
