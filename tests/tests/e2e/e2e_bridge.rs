//! `tether-bridge` end to end: the real bridge between real `sim` devices and a real mosquitto
//! the test starts (on a free 127.0.0.1 port, persistence in a temporary directory), watched and
//! commanded by an MQTT client of the test's own. The fault cases of docs/BRIDGE.md: the broker
//! restarts, a device drops off and comes back, the bridge is killed (its will), commands queued
//! while the bridge is away, two bridges for one site. Skipped, saying so, only when mosquitto is
//! not installed (`.ci/run` installs it).

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rumqttc::{Client, QoS};
use serde_json::{json, Value};
use tether_tests::mqtt::{find_program, subscriber, Inbox, Mosquitto, WATCHER_NOTES};
use tether_tests::{bridge_bin, fleet_listen, free_port, poll_until, run_bounded, sim_bin, Proc, TempDir};

/// The longest any wait for a message may take.
const WAIT: Duration = Duration::from_secs(20);

/// A mosquitto of the test's own, or `None` (saying the test is skipped) when it is not installed.
fn mosquitto(test: &str) -> Option<Mosquitto> {
    match Mosquitto::start("") {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("e2e_bridge::{test}: SKIPPED: {e}");
            None
        }
    }
}

/// One message seen by the watcher.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    json: Value,
    retain: bool,
    at: Instant,
}

/// An MQTT client of the test: subscribes to `filters` (again after each reconnection, with a
/// clean session, and again when the broker refuses one) and keeps every message, with notes of
/// its own connection (`WATCHER_NOTES`); publishes commands.
struct Watch {
    client: Client,
    got: Inbox,
}

impl Watch {
    /// Once the broker accepted every filter (waiting up to a minute).
    #[track_caller]
    fn new(port: u16, filters: &[&str]) -> Watch {
        Watch::new_up_to(Duration::from_secs(60), port, filters)
    }

    /// [`Watch::new`] up to `limit`.
    #[track_caller]
    fn new_up_to(limit: Duration, port: u16, filters: &[&str]) -> Watch {
        let (client, got) = subscriber(port, filters, limit).unwrap_or_else(|e| panic!("{e}"));
        Watch { client, got }
    }

    /// The messages so far, their payloads read as JSON.
    fn messages(&self) -> Vec<Msg> {
        let got = self.got.lock().expect("lock");
        got.iter()
            .map(|m| Msg {
                topic: m.topic.clone(),
                json: serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
                retain: m.retain,
                at: m.at,
            })
            .collect()
    }

    /// The first message since `since` on `topic` that `pred` accepts, waiting up to [`WAIT`].
    #[track_caller]
    fn wait(&self, topic: &str, since: Instant, what: &str, pred: impl Fn(&Value) -> bool) -> Msg {
        self.wait_up_to(WAIT, topic, since, what, pred)
    }

    /// [`Watch::wait`] up to `limit`.
    #[track_caller]
    fn wait_up_to(
        &self,
        limit: Duration,
        topic: &str,
        since: Instant,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Msg {
        poll_until(limit, Duration::from_millis(20), || {
            self.messages()
                .into_iter()
                .find(|m| m.at >= since && m.topic == topic && pred(&m.json))
        })
        .unwrap_or_else(|| {
            // Each with when it came, in seconds from `since`.
            let seen: Vec<String> = self
                .messages()
                .iter()
                .map(|m| {
                    let at =
                        m.at.checked_duration_since(since)
                            .map_or_else(|| -since.duration_since(m.at).as_secs_f64(), |d| d.as_secs_f64());
                    format!("{at:+.2} s {} {}", m.topic, m.json)
                })
                .collect();
            panic!("no {what} on {topic} within {limit:?}; seen:\n{}", seen.join("\n"))
        })
    }

    /// Every message on `topic` since `since`.
    fn all(&self, topic: &str, since: Instant) -> Vec<Msg> {
        self.messages()
            .into_iter()
            .filter(|m| m.at >= since && m.topic == topic)
            .collect()
    }

    /// Publishes a command (QoS 1).
    fn command(&self, site: &str, device: &str, verb: &str, body: Value) {
        let topic = format!("tether/v1/{site}/{device}/cmd/{verb}");
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body.to_string().into_bytes())
            .expect("publish a command");
    }

    /// Sends a command and waits for its answer on `reply`.
    #[track_caller]
    fn ask(&self, site: &str, device: &str, verb: &str, body: Value) -> Value {
        self.ask_up_to(WAIT, site, device, verb, body)
    }

    /// [`Watch::ask`] up to `limit`.
    #[track_caller]
    fn ask_up_to(&self, limit: Duration, site: &str, device: &str, verb: &str, mut body: Value) -> Value {
        let since = Instant::now();
        let id = body["id"].as_str().expect("an id").to_string();
        let reply = body["reply"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| "e2e/replies".into());
        body["reply"] = json!(reply);
        self.command(site, device, verb, body);
        self.wait_up_to(limit, &reply, since, &format!("answer to {id}"), |v| {
            v["id"] == id.as_str()
        })
        .json
    }

    /// Sends a command every `every` (the same id) until its answer comes, up to `limit`, as a
    /// consumer does when a broker may lose a publish in flight (a cluster node dying, a node that
    /// closes the consumer's connection when it cannot store its publish in time; the client's
    /// clean session then drops it); returns the answer. The bridge runs an id once: see
    /// [`Watch::answers`].
    #[track_caller]
    fn ask_until_answered(
        &self,
        limit: Duration,
        every: Duration,
        site: &str,
        device: &str,
        verb: &str,
        mut body: Value,
    ) -> Value {
        let since = Instant::now();
        let id = body["id"].as_str().expect("an id").to_string();
        let reply = body["reply"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| "e2e/replies".into());
        body["reply"] = json!(reply);
        let mut sent = 0;
        let answer = poll_until(limit, Duration::from_millis(20), || {
            if let Some(a) = self.answers(&reply, since, &id).into_iter().next() {
                return Some(a);
            }
            if since.elapsed() >= every * sent {
                self.command(site, device, verb, body.clone());
                sent += 1;
            }
            None
        });
        answer.unwrap_or_else(|| {
            let notes: Vec<String> = self
                .all(WATCHER_NOTES, since)
                .iter()
                .map(|m| m.json.to_string())
                .collect();
            panic!("no answer to {id} within {limit:?} (sent {sent} times); the watcher's notes: {notes:?}")
        })
    }

    /// Every answer to `id` on `reply` since `since`.
    fn answers(&self, reply: &str, since: Instant, id: &str) -> Vec<Value> {
        self.all(reply, since)
            .into_iter()
            .map(|m| m.json)
            .filter(|v| v["id"] == id)
            .collect()
    }

    /// Whether the watcher lost its connection since `since` (what was published meanwhile did not
    /// reach it: its session is clean).
    fn dropped_since(&self, since: Instant) -> bool {
        self.all(WATCHER_NOTES, since)
            .iter()
            .any(|m| m.json.as_str().is_some_and(|n| n.starts_with("disconnected")))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// A `sim --devices n` on addresses and ports the test chooses (so that it can come back on the
/// same ones); killed on drop.
struct Fleet {
    proc: Option<Proc>,
    listen: String,
    tcp: u16,
    udp: u16,
    n: u32,
    extra: Vec<String>,
}

impl Fleet {
    fn start(n: u32) -> Fleet {
        Fleet::start_with(n, &[])
    }

    fn start_with(n: u32, extra: &[&str]) -> Fleet {
        let mut f = Fleet {
            proc: None,
            listen: fleet_listen(),
            tcp: free_port(),
            udp: free_port(),
            n,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        f.run();
        f
    }

    fn run(&mut self) {
        let mut cmd = Command::new(sim_bin());
        cmd.args(["--devices", &self.n.to_string(), "--listen", &self.listen, "--no-plain"])
            .args(["--tcp-port", &self.tcp.to_string(), "--udp-port", &self.udp.to_string()])
            .args(&self.extra)
            .env_remove("TETHER_LOG");
        self.proc = Some(Proc::spawn(cmd));
        let last = self.to(self.n);
        poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
            TcpStream::connect(&last).ok()
        })
        .unwrap_or_else(|| panic!("sim --devices {} did not listen on {last}", self.n));
    }

    fn ip(&self, i: u32) -> std::net::Ipv4Addr {
        let first: std::net::Ipv4Addr = self.listen.parse().expect("an address");
        std::net::Ipv4Addr::from(u32::from(first) + i - 1)
    }

    fn to(&self, i: u32) -> String {
        format!("{}:{}", self.ip(i), self.tcp)
    }

    /// `A,B,…` of devices `range`.
    fn list(&self, range: std::ops::RangeInclusive<u32>) -> String {
        range.map(|i| self.to(i)).collect::<Vec<_>>().join(",")
    }
}

/// A running `tether-bridge`; killed on drop (SIGKILL: its will fires), its log printed when the
/// test fails.
struct Bridge(Option<Proc>);

impl Bridge {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Proc::id)
    }

    /// Waits up to `limit` for it to exit (killed past that).
    fn wait_for(&mut self, limit: Duration) -> Option<std::process::Output> {
        self.0.take()?.wait_for(limit)
    }

    /// Stops it with Ctrl-C; what it logged.
    #[track_caller]
    fn stop(&mut self) -> String {
        tether_tests::interrupt(self.id());
        let out = self
            .wait_for(Duration::from_secs(15))
            .expect("the bridge stops on Ctrl-C");
        assert!(out.status.success(), "{}", tether_tests::describe(&out));
        tether_tests::stderr(&out)
    }

    /// Kills it (SIGKILL, as a crash would: no goodbye, the will fires).
    fn kill(&mut self) {
        if let Some(p) = self.0.take() {
            p.kill();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(out) = self.0.take().map(Proc::kill) {
                eprintln!("tether-bridge's log:\n{}", tether_tests::stderr(&out));
            }
        }
    }
}

/// `tether-bridge` with these arguments (quick back-off and polls for a test, unless `extra`
/// names the flag).
fn bridge(broker: &str, site: &str, to: &str, extra: &[&str]) -> Bridge {
    bridge_in(Command::new(bridge_bin()), broker, site, to, extra)
}

/// [`bridge`] run as `cmd` (the bridge's program, or a shell that runs it).
fn bridge_in(mut cmd: Command, broker: &str, site: &str, to: &str, extra: &[&str]) -> Bridge {
    cmd.args(["--broker", broker, "--site", site, "--to", to]);
    for (flag, value) in [
        ("--backoff-max", "500ms"),
        ("--poll", "1s"),
        ("--keep-alive", "2s"),
        ("--timeout", "5s"),
    ] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra)
        .env_remove("TETHER_KEY_FILE")
        .env("TETHER_CONFIG", "/nonexistent/tether-e2e/config.toml");
    Bridge(Some(Proc::spawn(cmd)))
}

/// A mosquitto, a fleet (made by `fleet`) and a watcher of the site's topics and of `e2e/#`;
/// `None` (the test is skipped, saying so) when mosquitto is not installed.
fn setup(test: &str, site: &str, fleet: impl FnOnce() -> Fleet) -> Option<(Mosquitto, Fleet, Watch)> {
    let broker = mosquitto(test)?;
    let fleet = fleet();
    let watch = Watch::new(broker.port, &[&format!("tether/v1/{site}/#"), "e2e/#"]);
    Some((broker, fleet, watch))
}

/// `exec led toggle` on `device` through the broker: answered with status 0, and the device's
/// `led` event (the LED now on) published.
#[track_caller]
fn toggle_and_see_the_event(watch: &Watch, site: &str, device: &str, id: &str) {
    let t = Instant::now();
    let a = watch.ask(
        site,
        device,
        "exec",
        json!({"id": id, "command": "led", "args": ["toggle"]}),
    );
    assert_eq!(a["status"], 0, "{a}");
    let topic = format!("tether/v1/{site}/{device}/event/led");
    watch.wait(&topic, t, "the led event", |v| v["data"] == "on");
}

fn state_topic(site: &str, device: &str) -> String {
    format!("tether/v1/{site}/{device}/state")
}

fn online(v: &Value) -> bool {
    v["state"] == "online"
}

fn offline(v: &Value) -> bool {
    v["state"] == "offline"
}

#[test]
fn devices_states_events_and_commands_go_through_mosquitto() {
    let site = "e2e-cmd";
    let Some((broker, fleet, watch)) = setup("devices_states_events_and_commands_go_through_mosquitto", site, || {
        Fleet::start(3)
    }) else {
        return;
    };
    let start = Instant::now();
    let _bridge = bridge(&broker.broker(), site, &fleet.list(1..=3), &[]);
    for i in 1..=3 {
        let name = format!("sim-00{i}");
        let s = watch.wait(&state_topic(site, &name), start, "online state", online);
        assert!(
            s.json["birth"] == 1 && s.json["bridge"] == "tether-bridge-e2e-cmd",
            "{}",
            s.json
        );
        let info = watch.wait(&format!("tether/v1/{site}/{name}/info"), start, "info", |v| {
            v["device"] == name.as_str()
        });
        assert!(
            info.retain || info.json["commands"].as_array().is_some_and(|c| !c.is_empty()),
            "{}",
            info.json
        );
    }
    let bridge_state = watch.wait(
        &format!("tether/v1/{site}/bridge/tether-bridge-e2e-cmd/state"),
        start,
        "bridge state",
        online,
    );
    assert_eq!(bridge_state.json["devices"], 3);

    // exec: status and output; the LED's event comes through event/led.
    let t = Instant::now();
    let a = watch.ask(
        site,
        "sim-002",
        "exec",
        json!({"id": "c1", "command": "led", "args": ["toggle"]}),
    );
    assert_eq!((a["ok"].as_bool(), a["status"].as_i64()), (Some(true), Some(0)), "{a}");
    let ev = watch.wait(&format!("tether/v1/{site}/sim-002/event/led"), t, "led event", |_| true);
    assert_eq!(ev.json["data"], "on", "{}", ev.json);
    assert!(ev.json["seq"].as_u64().is_some(), "{}", ev.json);

    // The same correlation id again: the first answer, and the command did not run again (the
    // LED was toggled once: no second event).
    let again = watch.ask(
        site,
        "sim-002",
        "exec",
        json!({"id": "c1", "command": "led", "args": ["toggle"]}),
    );
    assert_eq!(again, a);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(watch.all(&format!("tether/v1/{site}/sim-002/event/led"), t).len(), 1);

    // put, get, ls, rm, time-set, time-get, info, message.
    let put = watch.ask(
        site,
        "sim-001",
        "put",
        json!({"id": "p1", "name": "a.txt", "data": "hello over mqtt"}),
    );
    assert_eq!(
        (put["ok"].as_bool(), put["size"].as_u64()),
        (Some(true), Some(15)),
        "{put}"
    );
    let get = watch.ask(site, "sim-001", "get", json!({"id": "g1", "name": "a.txt"}));
    assert_eq!(
        (get["data"].as_str(), get["sha256"].clone()),
        (Some("hello over mqtt"), put["sha256"].clone()),
        "{get}"
    );
    let bin = watch.ask(
        site,
        "sim-001",
        "put",
        json!({"id": "p2", "name": "b.bin", "data_hex": "00ff10"}),
    );
    assert_eq!(bin["size"], 3, "{bin}");
    assert_eq!(
        watch.ask(site, "sim-001", "get", json!({"id": "g2", "name": "b.bin"}))["data_hex"],
        "00ff10"
    );
    let ls = watch.ask(site, "sim-001", "ls", json!({"id": "l1"}));
    assert_eq!(ls["files"].as_array().map(Vec::len), Some(2), "{ls}");
    assert_eq!(
        watch.ask(site, "sim-001", "rm", json!({"id": "r1", "name": "b.bin"}))["ok"],
        true
    );
    let set = watch.ask(
        site,
        "sim-003",
        "time-set",
        json!({"id": "t1", "unix_ms": 1_700_000_000_000u64}),
    );
    assert_eq!(set["synced"], true, "{set}");
    let time = watch.ask(site, "sim-003", "time-get", json!({"id": "t2", "format": "%Y"}));
    assert_eq!(time["time"], "2023", "{time}");
    assert_eq!(
        watch.ask(site, "sim-003", "info", json!({"id": "i1"}))["device"],
        "sim-003"
    );
    let m = watch.ask(site, "sim-003", "message", json!({"id": "m1", "text": "hi device"}));
    assert_eq!(m["ok"], true, "{m}");
    watch.wait(
        &format!("tether/v1/{site}/sim-003/message"),
        t,
        "the device's message event",
        |v| v["data"].as_str().is_some_and(|d| d.contains("hi device")),
    );

    // An event that comes while a command waits for its answer is published too (after it).
    let t = Instant::now();
    watch.command(
        site,
        "sim-003",
        "exec",
        json!({"id": "slow", "reply": "e2e/replies", "command": "sleep", "args": ["1500"]}),
    );
    std::thread::sleep(Duration::from_millis(300));
    let udp = format!("{}", fleet.udp);
    let mut chat = Command::new(tether_tests::host_cli_bin());
    chat.args([
        "--to",
        &fleet.to(3),
        "--udp-port",
        &udp,
        "--timeout",
        "5s",
        "chat",
        "--message",
        "during a command",
    ]);
    tether_tests::clean_cli_env(&mut chat);
    tether_tests::ok(&run_bounded(chat, Duration::from_secs(30)));
    let slow = watch.wait("e2e/replies", t, "the slow command's answer", |v| v["id"] == "slow");
    assert_eq!(slow.json["status"], 0, "{}", slow.json);
    watch.wait(
        &format!("tether/v1/{site}/sim-003/message"),
        t,
        "the event that came during the command",
        |v| v["data"].as_str().is_some_and(|d| d.contains("during a command")),
    );

    // Refusals and bad commands are answered, never dropped: the device's error, a typo, a bad
    // verb, an unsafe reply topic (answered on the device's own reply topic), not JSON.
    let big = "x".repeat(1_500_000);
    let too_big = watch.ask(
        site,
        "sim-001",
        "put",
        json!({"id": "big", "name": "big.txt", "data": big}),
    );
    assert_eq!(too_big["error"]["kind"], "usage", "an oversized command is answered");
    let missing = watch.ask(site, "sim-001", "get", json!({"id": "e1", "name": "nope.txt"}));
    assert_eq!(
        (missing["ok"].as_bool(), missing["error"]["kind"].as_str()),
        (Some(false), Some("device")),
        "{missing}"
    );
    let typo = watch.ask(site, "sim-001", "exec", json!({"id": "e2", "comand": "uptime"}));
    assert_eq!(typo["error"]["kind"], "usage", "{typo}");
    let verb = watch.ask(site, "sim-001", "reboot-now", json!({"id": "e3"}));
    assert!(
        verb["error"]["message"].as_str().is_some_and(|m| m.contains("exec")),
        "{verb}"
    );
    let t = Instant::now();
    watch.command(
        site,
        "sim-001",
        "exec",
        json!({"id": "e4", "reply": "e2e/a.b", "command": "uptime"}),
    );
    let own = watch.wait(
        &format!("tether/v1/{site}/sim-001/reply"),
        t,
        "answer on the device's reply topic",
        |v| v["id"] == "e4",
    );
    assert_eq!(own.json["error"]["kind"], "usage");
    watch
        .client
        .publish(
            format!("tether/v1/{site}/sim-001/cmd/exec"),
            QoS::AtLeastOnce,
            false,
            "not json",
        )
        .expect("publish");
    watch.wait(
        &format!("tether/v1/{site}/sim-001/reply"),
        t,
        "answer to a payload that is not JSON",
        |v| v["error"]["kind"] == "usage" && v["id"] == "",
    );
}

#[test]
fn faults_broker_restart_device_drop_bridge_kill_and_queued_commands() {
    let site = "e2e-faults";
    let Some((mut broker, mut fleet, watch)) = setup(
        "faults_broker_restart_device_drop_bridge_kill_and_queued_commands",
        site,
        || Fleet::start(2),
    ) else {
        return;
    };
    let start = Instant::now();
    let mut bridge1 = bridge(&broker.broker(), site, &fleet.list(1..=2), &[]);
    for name in ["sim-001", "sim-002"] {
        watch.wait(&state_topic(site, name), start, "online state", online);
    }

    // The broker restarts: the bridge reconnects, publishes its state again, and runs commands.
    broker.kill();
    std::thread::sleep(Duration::from_millis(300));
    broker.run();
    let after = Instant::now();
    let watch = Watch::new(broker.port, &["tether/v1/e2e-faults/#", "e2e/#"]);
    watch.wait(
        &state_topic(site, "sim-001"),
        start,
        "state after the broker restarted",
        online,
    );
    let a = watch.ask(
        site,
        "sim-001",
        "exec",
        json!({"id": "after-restart", "command": "uptime"}),
    );
    assert_eq!(a["status"], 0, "{a}");
    let bridge_topic = format!("tether/v1/{site}/bridge/tether-bridge-e2e-faults/state");
    watch.wait(&bridge_topic, after, "the bridge online again", online);

    // The devices drop off: offline; back on the same addresses: online with the next birth.
    let t = Instant::now();
    fleet.proc = None;
    let off = watch.wait(&state_topic(site, "sim-002"), t, "offline state", offline);
    assert!(
        off.json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{}",
        off.json
    );
    // A command to an offline device is answered at once.
    let down = watch.ask(
        site,
        "sim-002",
        "exec",
        json!({"id": "while-down", "command": "uptime"}),
    );
    assert_eq!(down["error"]["kind"], "offline", "{down}");
    fleet.run();
    let back = watch.wait(&state_topic(site, "sim-002"), t, "online again", |v| {
        online(v) && v["birth"] == 2
    });
    assert_eq!(back.json["birth"], 2);
    // Both devices went with the sim: the bridge finds sim-001's session gone when it next uses
    // it, and is online with it again before the reboot below goes to it.
    watch.wait(&state_topic(site, "sim-001"), t, "sim-001 online again", |v| {
        online(v) && v["birth"] == 2
    });
    // The same id once it is back: it runs now (an "offline" answer is not remembered).
    let up = watch.ask(
        site,
        "sim-002",
        "exec",
        json!({"id": "while-down", "command": "uptime"}),
    );
    assert_eq!(up["status"], 0, "{up}");

    // A device reboots (asked through the bridge): offline, then online with the next birth.
    let t = Instant::now();
    let before = watch
        .all(&state_topic(site, "sim-001"), start)
        .iter()
        .filter_map(|m| m.json["birth"].as_u64())
        .max()
        .expect("sim-001 had states");
    let r = watch.ask(site, "sim-001", "exec", json!({"id": "reboot", "command": "reboot"}));
    assert_eq!(r["ok"], true, "{r}");
    watch.wait(&state_topic(site, "sim-001"), t, "offline while it reboots", offline);
    watch.wait(&state_topic(site, "sim-001"), t, "online after the reboot", |v| {
        online(v) && v["birth"].as_u64() > Some(before)
    });

    // The bridge is killed: its will marks it offline; the devices' states still name its
    // birth, which is how a consumer knows they are stale (docs/BRIDGE.md).
    let t = Instant::now();
    let birth = watch.wait(&bridge_topic, start, "bridge online", online).json["birth"].clone();
    bridge1.kill();
    let will = watch.wait(&bridge_topic, t, "the will", offline);
    assert_eq!(will.json["birth"], birth, "{}", will.json);
    // A command sent while no bridge runs is queued by the broker (persistent session, QoS 1)
    // and runs once the bridge is back.
    watch.command(
        site,
        "sim-001",
        "exec",
        json!({"id": "queued", "reply": "e2e/queued", "command": "uptime"}),
    );
    std::thread::sleep(Duration::from_millis(300));
    bridge1 = bridge(&broker.broker(), site, &fleet.list(1..=2), &[]);
    let q = watch.wait("e2e/queued", t, "the queued command's answer", |v| v["id"] == "queued");
    assert_eq!(q.json["status"], 0, "{}", q.json);
    let reborn = watch.wait(&bridge_topic, t, "bridge online again", online);
    assert_ne!(reborn.json["birth"], birth);
    // Both devices online under the new bridge before it is stopped (a device still connecting
    // when the bridge stops has no state of this bridge to end).
    for name in ["sim-001", "sim-002"] {
        watch.wait(&state_topic(site, name), t, "online under the new bridge", |v| {
            online(v) && v["bridge_birth"] == reborn.json["birth"]
        });
    }

    // Ctrl-C: every device and the bridge are marked offline, and it exits 0.
    let t = Instant::now();
    bridge1.stop();
    watch.wait(&bridge_topic, t, "bridge offline", |v| {
        offline(v) && v["reason"] == "the bridge stopped"
    });
    for name in ["sim-001", "sim-002"] {
        watch.wait(&state_topic(site, name), t, "offline at stop", offline);
    }
}

#[test]
fn two_bridges_for_one_site_keep_their_devices_and_deaths_apart() {
    let site = "e2e-two";
    let Some((broker, fleet, watch)) = setup(
        "two_bridges_for_one_site_keep_their_devices_and_deaths_apart",
        site,
        || Fleet::start(4),
    ) else {
        return;
    };
    let start = Instant::now();
    let _a = bridge(&broker.broker(), site, &fleet.list(1..=2), &["--client-id", "bridge-a"]);
    let b = bridge(&broker.broker(), site, &fleet.list(3..=4), &["--client-id", "bridge-b"]);
    for (name, owner) in [
        ("sim-001", "bridge-a"),
        ("sim-002", "bridge-a"),
        ("sim-003", "bridge-b"),
        ("sim-004", "bridge-b"),
    ] {
        let s = watch.wait(&state_topic(site, name), start, "online state", online);
        assert_eq!(s.json["bridge"], owner, "{}", s.json);
    }
    // Each device's command is run by its own bridge only: one answer each.
    let t = Instant::now();
    let a = watch.ask(site, "sim-004", "exec", json!({"id": "one", "command": "uptime"}));
    assert_eq!(a["status"], 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(watch.all("e2e/replies", t).len(), 1);
    // Killing bridge B marks B offline (its will) and not A.
    let t = Instant::now();
    drop(b);
    watch.wait(
        &format!("tether/v1/{site}/bridge/bridge-b/state"),
        t,
        "bridge-b's will",
        offline,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        watch
            .all(&format!("tether/v1/{site}/bridge/bridge-a/state"), t)
            .iter()
            .all(|m| online(&m.json)),
        "bridge-a stays online"
    );
    let still = watch.ask(site, "sim-001", "exec", json!({"id": "two", "command": "uptime"}));
    assert_eq!(still["status"], 0);

    // Two bridges with one client id (here both the default): the broker keeps one connection
    // per id, so they keep taking it from each other; they say so (docs/BRIDGE.md).
    let mut c = bridge(&broker.broker(), site, &fleet.to(3), &[]);
    let mut d = bridge(&broker.broker(), site, &fleet.to(4), &[]);
    std::thread::sleep(Duration::from_secs(6));
    let logs = [c.stop(), d.stop()];
    assert!(
        logs.iter().any(|l| {
            l.contains("another bridge runs with the client id tether-bridge-e2e-two")
                || l.contains("may use the client id tether-bridge-e2e-two")
        }),
        "{logs:?}"
    );
}

#[test]
fn sixty_four_devices_found_by_discovery_are_bridged_at_once() {
    let site = "e2e-64";
    let Some((broker, fleet, watch)) = setup(
        "sixty_four_devices_found_by_discovery_are_bridged_at_once",
        site,
        || Fleet::start(64),
    ) else {
        return;
    };
    let start = Instant::now();
    let scope = format!("@discover:{}-{}:{}", fleet.ip(1), fleet.ip(64), fleet.udp);
    // Started with a soft limit of 128 open files, below what 64 devices hold (three each): the
    // bridge raises it for them (up to the hard limit), else sessions would fail to open.
    let mut sh = Command::new("sh");
    sh.args(["-c", "ulimit -Sn 128 && exec \"$0\" \"$@\""])
        .arg(bridge_bin());
    let _bridge = bridge_in(sh, &broker.broker(), site, &scope, &[]);
    for i in 1..=64 {
        watch.wait(
            &state_topic(site, &format!("sim-{i:03}")),
            start,
            "online state",
            online,
        );
    }
    eprintln!(
        "e2e timing: 64 devices online through the bridge: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let a = watch.ask(site, "sim-064", "exec", json!({"id": "last", "command": "uptime"}));
    assert_eq!(a["status"], 0);
}

#[test]
fn keyed_devices_are_bridged_over_sealed_sessions_and_a_wrong_key_says_so() {
    let keys = TempDir::new("bridge-keys");
    for name in ["sim-001.key", "sim-002.key", "wrong.key"] {
        let mut cmd = Command::new(tether_tests::host_cli_bin());
        cmd.args(["keygen", keys.join(name).to_str().expect("UTF-8 path")]);
        tether_tests::ok(&run_bounded(cmd, Duration::from_secs(30)));
    }
    std::fs::copy(keys.join("sim-001.key"), keys.join("sim-002.key")).expect("one key for both");
    let dir = keys.path().to_str().expect("UTF-8 path");
    let site = "e2e-keys";
    let test = "keyed_devices_are_bridged_over_sealed_sessions_and_a_wrong_key_says_so";
    let Some((broker, fleet, watch)) = setup(test, site, || Fleet::start_with(2, &["--key-dir", dir])) else {
        return;
    };
    let start = Instant::now();
    let key = keys.join("sim-001.key");
    let right = bridge(
        &broker.broker(),
        site,
        &fleet.to(1),
        &["--key-file", key.to_str().expect("UTF-8")],
    );
    watch.wait(&state_topic(site, "sim-001"), start, "online state", online);
    // Commands and events travel sealed.
    toggle_and_see_the_event(&watch, site, "sim-001", "k1");
    drop(right);
    // With the wrong key the device never comes online, and the bridge says why.
    let wrong = keys.join("wrong.key");
    let mut b = bridge(
        &broker.broker(),
        site,
        &fleet.to(2),
        &["--key-file", wrong.to_str().expect("UTF-8")],
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = b.stop();
    assert!(log.contains("offline") && log.to_lowercase().contains("key"), "{log}");
    assert!(watch
        .all(&state_topic(site, "sim-002"), start)
        .iter()
        .all(|m| !online(&m.json)));
}

#[test]
fn a_device_on_a_serial_line_is_bridged_like_one_on_tcp() {
    let Some(broker) = mosquitto("a_device_on_a_serial_line_is_bridged_like_one_on_tcp") else {
        return;
    };
    let sim = tether_tests::Sim::start(&["--serial", "--no-plain"]);
    let site = "e2e-serial";
    let watch = Watch::new(broker.port, &["tether/v1/e2e-serial/#", "e2e/#"]);
    let start = Instant::now();
    let to = format!("serial:{}", sim.pty());
    let _bridge = bridge(&broker.broker(), site, &to, &[]);
    let state = watch.wait(&state_topic(site, "tether-sim"), start, "online state", online);
    assert_eq!(state.json["to"], format!("{to}@115200"), "{}", state.json);
    toggle_and_see_the_event(&watch, site, "tether-sim", "s1");
    let put = watch.ask(
        site,
        "tether-sim",
        "put",
        json!({"id": "s2", "name": "s.txt", "data": "over the line"}),
    );
    assert_eq!(put["size"], 13, "{put}");
    let get = watch.ask(site, "tether-sim", "get", json!({"id": "s3", "name": "s.txt"}));
    assert_eq!(get["data"], "over the line", "{get}");
}

#[test]
fn bad_arguments_are_refused_with_distinct_exit_codes() {
    let run = |args: &[&str]| {
        let mut cmd = Command::new(bridge_bin());
        cmd.args(args)
            .env_remove("TETHER_KEY_FILE")
            .env("TETHER_CONFIG", "/nonexistent/tether-e2e/config.toml");
        run_bounded(cmd, Duration::from_secs(30))
    };
    let code = |args: &[&str]| run(args).status.code();
    let base = ["--broker", "127.0.0.1:1", "--to", "127.0.0.1:9"];
    // A site or client id NATS would refuse, a broker without a port, no broker at all: usage.
    assert_eq!(code(&[&base[..], &["--site", "a.b"]].concat()), Some(2));
    assert_eq!(
        code(&[&base[..], &["--site", "a", "--client-id", "x y"]].concat()),
        Some(2)
    );
    assert_eq!(
        code(&["--broker", "localhost", "--site", "a", "--to", "127.0.0.1"]),
        Some(2)
    );
    assert_eq!(code(&["--site", "a", "--to", "127.0.0.1"]), Some(2));
    assert_eq!(
        code(&[&base[..], &["--site", "a", "--keep-alive", "200ms"]].concat()),
        Some(2)
    );
    let out = run(&["--broker", "127.0.0.1:1", "--site", "a", "--to", "@rack"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        tether_tests::stderr(&out).contains("no group `rack`"),
        "{}",
        tether_tests::describe(&out)
    );
    // A key file that is not there: 4. Nobody answers discovery: 3.
    assert_eq!(
        code(&[&base[..], &["--site", "a", "--key-file", "/nonexistent/k.key"]].concat()),
        Some(4)
    );
    let nobody = format!("@discover:127.0.0.1:{}", free_port());
    assert_eq!(
        code(&[
            "--broker",
            "127.0.0.1:1",
            "--site",
            "a",
            "--to",
            &nobody,
            "--discover-wait",
            "300ms"
        ]),
        Some(3)
    );
}

/// A broker of the test's own for one connection (MQTT 3.1.1, rumqttc's codec), up to `limit`:
/// it refuses the first subscription to `refuse` with a SUBACK failure — what a NATS node answers
/// when it cannot make the subscription's JetStream consumer in time, under load — and accepts
/// every other. Once `refuse` is accepted it sends `command` (topic, payload; QoS 1), and it
/// returns the first payload the bridge publishes on `reply` and how often `refuse` was
/// subscribed; `None` when the limit passed first.
fn refusing_broker(
    listener: std::net::TcpListener,
    limit: Duration,
    refuse: String,
    command: (String, Vec<u8>),
    reply: String,
) -> std::thread::JoinHandle<Option<(Vec<u8>, u32)>> {
    use rumqttc::mqttbytes::Error::InsufficientBytes;
    use rumqttc::{ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode};
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let (mut s, _) = listener.accept().ok()?;
        s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
        let (mut input, mut chunk, mut subscribed) = (bytes::BytesMut::new(), vec![0u8; 1 << 16], 0u32);
        while Instant::now() < deadline {
            let packet = match Packet::read(&mut input, 1 << 24) {
                Ok(p) => p,
                Err(InsufficientBytes(_)) => {
                    match s.read(&mut chunk) {
                        Ok(0) => return None,
                        Ok(n) => input.extend_from_slice(&chunk[..n]),
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(_) => return None,
                    }
                    continue;
                }
                Err(e) => panic!("the bridge sent a bad packet: {e:?}"),
            };
            let mut answers = Vec::new();
            match packet {
                Packet::Connect(_) => answers.push(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))),
                Packet::Subscribe(sub) => {
                    let mut accepted = false;
                    let codes = sub
                        .filters
                        .iter()
                        .map(|f| {
                            if f.path != refuse {
                                return SubscribeReasonCode::Success(QoS::AtLeastOnce);
                            }
                            subscribed += 1;
                            if subscribed == 1 {
                                return SubscribeReasonCode::Failure;
                            }
                            accepted = true;
                            SubscribeReasonCode::Success(QoS::AtLeastOnce)
                        })
                        .collect();
                    answers.push(Packet::SubAck(SubAck::new(sub.pkid, codes)));
                    if accepted {
                        let mut p = Publish::new(command.0.clone(), QoS::AtLeastOnce, command.1.clone());
                        p.pkid = 1;
                        answers.push(Packet::Publish(p));
                    }
                }
                Packet::Publish(p) if p.topic == reply => return Some((p.payload.to_vec(), subscribed)),
                Packet::Publish(p) if p.qos == QoS::AtLeastOnce => answers.push(Packet::PubAck(PubAck::new(p.pkid))),
                Packet::PingReq => answers.push(Packet::PingResp),
                Packet::Disconnect => return None,
                _ => {}
            }
            let mut out = bytes::BytesMut::new();
            for a in answers {
                a.write(&mut out, 1 << 24).expect("encode a packet");
            }
            s.write_all(&out).ok()?;
        }
        None
    })
}

#[test]
fn a_subscription_the_broker_refuses_is_made_again_on_the_same_connection() {
    let fleet = Fleet::start(1);
    let site = "e2e-refused";
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let broker = listener.local_addr().expect("its address").to_string();
    let command = json!({"id": "r1", "reply": "e2e/replies", "command": "uptime"});
    let limit = Duration::from_secs(60);
    let answered = refusing_broker(
        listener,
        limit,
        format!("tether/v1/{site}/tether-sim/cmd/+"),
        (
            format!("tether/v1/{site}/tether-sim/cmd/exec"),
            command.to_string().into_bytes(),
        ),
        "e2e/replies".into(),
    );
    let _bridge = bridge(&broker, site, &fleet.to(1), &[]);
    let (answer, subscribed) = answered
        .join()
        .expect("the broker's thread")
        .unwrap_or_else(|| panic!("the bridge did not subscribe again and answer within {limit:?}"));
    let answer: Value = serde_json::from_slice(&answer).expect("an answer in JSON");
    assert_eq!(
        (answer["id"].as_str(), answer["status"].as_i64()),
        (Some("r1"), Some(0)),
        "{answer}"
    );
    assert_eq!(subscribed, 2, "refused once, then accepted");
}

/// A three-node NATS cluster with JetStream and MQTT (Debian's nats-server 2.9; field notes §5),
/// on free 127.0.0.1 ports, its stores in a temporary directory; killed on drop.
struct Nats {
    nodes: Vec<Option<Proc>>,
    mqtt: Vec<u16>,
    http: Vec<u16>,
    /// The nodes' stores, removed with the cluster.
    _dir: TempDir,
}

/// Whether `GET /healthz` on `port` answers 200 (the node is up, JetStream included).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

impl Nats {
    /// Starts the cluster, or says the test is skipped. A cluster that does not come up (a port
    /// taken meanwhile by another test) is tried once more on new ports.
    #[track_caller]
    fn start(test: &str) -> Option<Nats> {
        let Some(bin) = find_program("nats-server") else {
            eprintln!("e2e_bridge::{test}: SKIPPED: nats-server is not installed (apt-get install nats-server)");
            return None;
        };
        let mut why = String::new();
        for _ in 0..2 {
            match Nats::try_start(&bin) {
                Ok(n) => return Some(n),
                Err(e) => why = e,
            }
        }
        panic!("{why}");
    }

    fn try_start(bin: &std::path::Path) -> Result<Nats, String> {
        let dir = TempDir::new("nats");
        let ports = |_| free_port();
        let (client, http, route, mqtt): (Vec<u16>, Vec<u16>, Vec<u16>, Vec<u16>) = (
            (0..3).map(ports).collect(),
            (0..3).map(ports).collect(),
            (0..3).map(ports).collect(),
            (0..3).map(ports).collect(),
        );
        let routes: Vec<String> = route.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let conf = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                 jetstream {{ store_dir: \"{}/js{i}\", max_memory_store: 64MB, max_file_store: 256MB }}\n\
                 cluster {{ name: e2e, listen: 127.0.0.1:{}, routes: [{}] }}\nmqtt {{ listen: 127.0.0.1:{} }}\n",
                client[i],
                http[i],
                dir.path().display(),
                route[i],
                routes.join(", "),
                mqtt[i]
            );
            let file = dir.join(&format!("n{i}.conf"));
            std::fs::write(&file, conf).expect("write a nats config");
            let mut cmd = Command::new(bin);
            cmd.arg("-c").arg(&file);
            nodes.push(Some(Proc::spawn(cmd)));
        }
        let n = Nats {
            nodes,
            mqtt,
            http,
            _dir: dir,
        };
        let all = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
            n.http.iter().all(|p| healthy(*p)).then_some(())
        });
        if all.is_none() {
            let logs: Vec<String> = n
                .nodes
                .into_iter()
                .flatten()
                .map(|p| tether_tests::stderr(&p.kill()))
                .collect();
            return Err(format!(
                "the NATS cluster was not healthy within 60 s; its nodes said:\n{}",
                logs.join("\n---\n")
            ));
        }
        Ok(n)
    }

    fn broker(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.mqtt[i])
    }
}

#[test]
fn a_nats_cluster_carries_commands_across_nodes_and_survives_a_node_killed() {
    let Some(mut nats) = Nats::start("a_nats_cluster_carries_commands_across_nodes_and_survives_a_node_killed") else {
        return;
    };
    // NATS is slower than mosquitto here: streams are made on first use, the first QoS 1
    // subscription of a session takes about a second, a re-election about five.
    // Under load (the tests run two at a time on two cores) a re-election has taken over a minute.
    // Every wait below is for a state (a retained topic, an answer) and returns when it comes;
    // `slow` only bounds it.
    let slow = Duration::from_secs(120);
    // Under load a node closes a connection whose QoS 1 publish it could not store within 4 s
    // (its JetStream request's timeout): the watcher's command is then lost (its clean session
    // drops it), as a consumer's may be. Commands are sent again (the same id) until answered;
    // the bridge runs each id once.
    let every = Duration::from_secs(3);
    let fleet = Fleet::start(2);
    let site = "e2e-nats";
    // The watcher on node 2, the bridge on node 0 first (then 1, then 2).
    let watch = Watch::new_up_to(slow, nats.mqtt[2], &["tether/v1/e2e-nats/#", "e2e/#"]);
    let start = Instant::now();
    let brokers = [nats.broker(0), nats.broker(1), nats.broker(2)];
    // A node answers a ping only after the request it is working on, and a JetStream request
    // takes up to 4 s under load: the default keep-alive (10 s), not the tests' 2 s, else the
    // bridge leaves a node that is only slow.
    let _bridge = bridge(
        &brokers[0],
        site,
        &fleet.list(1..=2),
        &["--broker", &brokers[1], "--broker", &brokers[2], "--keep-alive", "10s"],
    );
    for name in ["sim-001", "sim-002"] {
        watch.wait_up_to(slow, &state_topic(site, name), start, "online state", online);
    }
    // A command published on node 2 reaches the bridge on node 0.
    let ask = |device: &str, body: Value| watch.ask_until_answered(slow, every, site, device, "exec", body);
    let a = ask("sim-001", json!({"id": "n1", "command": "uptime"}));
    assert_eq!(a["status"], 0, "{a}");
    // The LED's event comes through. Events are best effort and not kept for a watcher that is
    // away (a clean session): toggled again only when the watcher lost its connection meanwhile.
    let mut toggles = 0;
    loop {
        toggles += 1;
        let since = Instant::now();
        let led = ask(
            "sim-002",
            json!({"id": format!("n2-{toggles}"), "command": "led", "args": ["toggle"]}),
        );
        assert_eq!(led["status"], 0, "{led}");
        let topic = format!("tether/v1/{site}/sim-002/event/led");
        // Some(true): the event came; Some(false): the watcher was away meanwhile.
        let came = poll_until(slow, Duration::from_millis(20), || {
            if !watch.all(&topic, since).is_empty() {
                Some(true)
            } else if watch.dropped_since(since) {
                Some(false)
            } else {
                None
            }
        });
        if came == Some(false) && toggles < 5 {
            continue;
        }
        watch.wait_up_to(Duration::ZERO, &topic, since, "an event", |_| true);
        break;
    }

    // Node 0 is killed mid-run: the bridge moves to node 1, publishes its state again, and a
    // command sent meanwhile is not lost.
    let t = Instant::now();
    nats.nodes[0] = None;
    // (A publish that a node accepts while the cluster re-elects may be lost; the consumer sends
    // it again with the same id until answered, and the bridge runs it once: every answer is
    // the same, with the same uptime in its output.)
    let during = json!({"id": "during", "reply": "e2e/during", "command": "uptime"});
    let first = ask("sim-001", during);
    assert_eq!(first["status"], 0, "{first}");
    // A repeat sent just before the first answer came is answered again: the same answer.
    std::thread::sleep(every);
    let answers = watch.answers("e2e/during", t, "during");
    assert!(answers.iter().all(|a| *a == first), "ran once: {answers:?}");
    let bridge_topic = format!("tether/v1/{site}/bridge/tether-bridge-e2e-nats/state");
    watch.wait_up_to(slow, &bridge_topic, t, "the bridge's state again", online);
    let after = ask("sim-002", json!({"id": "n3", "command": "uptime"}));
    assert_eq!(after["status"], 0, "{after}");
    eprintln!(
        "e2e timing: NATS node killed to commands answered again: {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

/// An image file in hex, as `fw-update` carries it.
fn image_hex(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).expect("the image");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn firmware_is_updated_through_the_broker_and_an_unconfirmed_trial_goes_back() {
    use crate::e2e_firmware::{image, image_hash, keys};
    let dir = TempDir::new("bridge-fw");
    let key = keys(&dir, "fw.key");
    let public = format!("{}.pub", key.to_str().expect("UTF-8 path"));
    let site = "e2e-fw";
    let test = "firmware_is_updated_through_the_broker_and_an_unconfirmed_trial_goes_back";
    let Some((broker, fleet, watch)) = setup(test, site, || Fleet::start_with(1, &["--fw-key", &public])) else {
        return;
    };
    let start = Instant::now();
    let _bridge = bridge(&broker.broker(), site, &fleet.to(1), &[]);
    let state = state_topic(site, "tether-sim");
    watch.wait(&state, start, "online state", online);
    let v1 = image(&dir, &key, "1.0.0", &[], 20_000);
    let v2 = image(&dir, &key, "2.0.0", &[], 30_000);
    let before = watch.ask(site, "tether-sim", "fw-status", json!({"id": "f0"}));
    assert_eq!(before["running"]["version"], "0.0.0", "{before}");

    // The whole update in one command: upload, trial boot, reset, back online, confirmed. The
    // device went offline and came back in between, and the answer came after that.
    let t = Instant::now();
    let a = watch.ask_up_to(
        Duration::from_secs(60),
        site,
        "tether-sim",
        "fw-update",
        json!({"id": "f1", "image_hex": image_hex(&v1)}),
    );
    assert_eq!(
        (a["ok"].as_bool(), a["updated"].as_bool()),
        (Some(true), Some(true)),
        "{a}"
    );
    assert_eq!(a["running"]["version"], "1.0.0", "{a}");
    assert_eq!(a["running"]["hash"], image_hash(&v1).as_str(), "{a}");
    assert_eq!(a["confirmed"], true, "{a}");
    assert_eq!(a["previous"], "0.0.0 (slot 0)", "{a}");
    let states: Vec<Value> = watch.all(&state, t).into_iter().map(|m| m.json).collect();
    assert!(
        states.iter().any(offline) && states.last().is_some_and(online),
        "offline for the reset, then online: {states:?}"
    );
    // The same id again: answered from memory, not run again; the same image again: nothing to do.
    let again = watch.ask(site, "tether-sim", "fw-update", json!({"id": "f1", "image_hex": "00"}));
    assert_eq!(again, a);
    let same = watch.ask(
        site,
        "tether-sim",
        "fw-update",
        json!({"id": "f2", "image_hex": image_hex(&v1)}),
    );
    assert_eq!(
        (same["ok"].as_bool(), same["updated"].as_bool()),
        (Some(true), Some(false)),
        "{same}"
    );

    // v2 left on trial (`confirm: false`): it runs, and the next reset goes back to v1.
    let trial = watch.ask_up_to(
        Duration::from_secs(60),
        site,
        "tether-sim",
        "fw-update",
        json!({"id": "f3", "image_hex": image_hex(&v2), "confirm": false}),
    );
    assert_eq!(
        (trial["ok"].as_bool(), trial["confirmed"].as_bool()),
        (Some(true), Some(false)),
        "{trial}"
    );
    assert_eq!(trial["running"]["version"], "2.0.0", "{trial}");
    let t = Instant::now();
    let reset = watch.ask(site, "tether-sim", "reset", json!({"id": "f4"}));
    assert_eq!(reset["reset"], true, "{reset}");
    watch.wait(&state, t, "offline for the reset", offline);
    watch.wait(&state, t, "online after the reset", online);
    let after = watch.ask(site, "tether-sim", "fw-status", json!({"id": "f5"}));
    assert_eq!(after["running"]["version"], "1.0.0", "{after}");
    let v2_slot = &after["slots"][1 - after["running"]["slot"].as_u64().expect("a slot") as usize];
    assert_eq!(v2_slot["state"], "reverted", "{after}");

    // Bad images are refused with the device's reason, and the running image stays.
    let bad = watch.ask(
        site,
        "tether-sim",
        "fw-update",
        json!({"id": "f6", "image_hex": "00ff"}),
    );
    assert_eq!(
        (bad["ok"].as_bool(), bad["error"]["kind"].as_str()),
        (Some(false), Some("usage")),
        "{bad}"
    );
    let mut tampered = std::fs::read(&v2).expect("v2");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let hex: String = tampered.iter().map(|b| format!("{b:02x}")).collect();
    let refused = watch.ask(site, "tether-sim", "fw-update", json!({"id": "f7", "image_hex": hex}));
    assert_eq!(refused["ok"], false, "{refused}");
    let still = watch.ask(site, "tether-sim", "fw-status", json!({"id": "f8"}));
    assert_eq!(still["running"]["version"], "1.0.0", "{still}");
}
