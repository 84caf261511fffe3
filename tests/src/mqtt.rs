//! MQTT for the bridge's tests and its benchmark: a mosquitto of the test's own, and a client that
//! keeps every message it receives.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use crate::{free_port, poll_until, Proc, TempDir};

/// Where `program` is installed: on PATH, or in /usr/sbin (where Debian puts the brokers, which a
/// user's PATH may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A mosquitto on a free 127.0.0.1 port, its store in a temporary directory; killed on drop.
pub struct Mosquitto {
    proc: Option<Proc>,
    /// Its port.
    pub port: u16,
    dir: TempDir,
}

impl Mosquitto {
    /// Starts one with `extra` lines of configuration; `Err` when mosquitto is not installed.
    pub fn start(extra: &str) -> Result<Mosquitto, String> {
        find_program("mosquitto").ok_or("mosquitto is not installed (apt-get install mosquitto)")?;
        let dir = TempDir::new("mosquitto");
        let port = free_port();
        // `user root`: run as root (CI), mosquitto would drop to a user that cannot write the store.
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nuser root\n{extra}",
            dir.path().display()
        );
        std::fs::write(dir.join("m.conf"), conf).map_err(|e| format!("cannot write mosquitto.conf: {e}"))?;
        let mut m = Mosquitto { proc: None, port, dir };
        m.run();
        Ok(m)
    }

    /// Starts mosquitto (again) on the same port and store, and waits until it listens.
    #[track_caller]
    pub fn run(&mut self) {
        let mut cmd = Command::new(find_program("mosquitto").expect("mosquitto"));
        cmd.arg("-c").arg(self.dir.join("m.conf"));
        self.proc = Some(Proc::spawn(cmd));
        let port = self.port;
        poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("mosquitto did not listen on {port} within 10 s"));
    }

    /// Kills it (SIGKILL: the store holds what it saved).
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// `127.0.0.1:PORT`.
    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A message received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Whether the broker delivered it as retained.
    pub retain: bool,
    /// When it arrived.
    pub at: Instant,
}

/// Every message received so far.
pub type Inbox = Arc<Mutex<Vec<Received>>>;

/// The topic of the notes a [`subscriber`] keeps among its messages about its own connection
/// (connected, disconnected, a subscription refused), so that a failed wait shows them. A topic
/// starting with `$` is the broker's: no client publishes one.
pub const WATCHER_NOTES: &str = "$e2e/watcher";

/// A client on the broker at 127.0.0.1:`port` (clean session, TCP_NODELAY) that subscribes to
/// `filters` (again after each reconnection, and again after a pause when the broker refuses one:
/// a NATS node does under load) and keeps every message; returns once the broker accepted every
/// filter, within `limit`.
pub fn subscriber(port: u16, filters: &[&str], limit: Duration) -> Result<(Client, Inbox), String> {
    let id = format!("e2e-{}-{}", std::process::id(), free_port());
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut conn) = Client::new(o, 1024);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    conn.eventloop.set_network_options(net);
    let inbox: Inbox = Arc::default();
    let (sub, store) = (client.clone(), inbox.clone());
    let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
    let (ready, is_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let keep = |topic: &str, payload: Vec<u8>, retain: bool| {
            store.lock().unwrap_or_else(|e| e.into_inner()).push(Received {
                topic: topic.to_string(),
                payload,
                retain,
                at: Instant::now(),
            })
        };
        let note = |what: String| {
            keep(
                WATCHER_NOTES,
                serde_json::Value::from(what).to_string().into_bytes(),
                false,
            )
        };
        // With a clean session every request left from the last connection is dropped at the
        // next: the subscriptions asked on this connection, in order, until rumqttc numbers them.
        let mut asked = std::collections::VecDeque::<String>::new();
        let mut numbered = std::collections::HashMap::<u16, String>::new();
        let mut accepted = std::collections::BTreeSet::<String>::new();
        let (mut said_ready, mut up) = (false, false);
        let subscribe = |f: &String, asked: &mut std::collections::VecDeque<String>| {
            if sub.try_subscribe(f.clone(), QoS::AtLeastOnce).is_ok() {
                asked.push_back(f.clone());
            }
        };
        while let Ok(event) = conn.recv() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    up = true;
                    note(format!("connected (session present: {})", ack.session_present));
                    asked.clear();
                    numbered.clear();
                    accepted.clear();
                    for f in &filters {
                        subscribe(f, &mut asked);
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Subscribe(pkid))) => {
                    if let Some(f) = asked.pop_front() {
                        numbered.insert(pkid, f);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let Some(f) = numbered.remove(&ack.pkid) else { continue };
                    if ack.return_codes.contains(&rumqttc::SubscribeReasonCode::Failure) {
                        note(format!("the broker refused the subscription to {f}; subscribing again"));
                        std::thread::sleep(Duration::from_millis(200));
                        subscribe(&f, &mut asked);
                        continue;
                    }
                    accepted.insert(f);
                    if !said_ready && accepted.len() == filters.len() {
                        said_ready = true;
                        let _ = ready.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => keep(&p.topic, p.payload.to_vec(), p.retain),
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    // Said once a connection: a broker that is down fails every 100 ms.
                    if !std::mem::take(&mut up) {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    note(format!("disconnected: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    is_ready
        .recv_timeout(limit)
        .map_err(|_| format!("the MQTT client did not subscribe within {limit:?}"))?;
    Ok((client, inbox))
}
