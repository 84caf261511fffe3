//! # tether-bridge
//!
//! Tether devices on an MQTT 3.1.1 broker (or a cluster of them): one MQTT connection, one
//! session per device, retained `state` and `info` per device, events relayed, commands run.
//! Topics and payloads are in docs/BRIDGE.md; the pieces:
//!
//! - [`topic`]: the topic layout and its naming rules;
//! - [`outbox`]: everything sent to the broker, from one thread that never blocks the others;
//! - [`device`]: a thread per device (session, reconnection, events, commands);
//! - [`command`]: the verbs and their answers; [`dedup`]: a command delivered twice runs once;
//! - [`router`]: command topics to device threads; [`backoff`]: reconnect pauses with jitter;
//! - [`run`]: the MQTT event loop (reconnection, another node of a cluster, subscriptions and
//!   retained state restored) and the start and stop of the whole.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod command;
pub mod dedup;
pub mod device;
pub mod outbox;
pub mod router;
pub mod topic;
pub mod wake;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode};
use serde_json::json;
use tether_host::net::Address;

use crate::backoff::Backoff;
use crate::device::{Device, Job, Shared, Spec};
use crate::outbox::Outbox;
use crate::router::Router;
use crate::topic::Topics;

/// How the bridge names itself to devices (their logs show it).
pub const CLIENT: &str = concat!("tether-bridge ", env!("CARGO_PKG_VERSION"));

/// Requests rumqttc's channel holds: a small buffer between the outbox and the event loop (the
/// outbox keeps the rest, and never blocks on it).
const REQUEST_CHANNEL: usize = 256;

/// How long a broker connection must last for the reconnection back-off to start again from its
/// shortest pause.
const STABLE: Duration = Duration::from_secs(10);

/// How long the broker may leave every publish unacknowledged before the bridge tries another.
const STALL: Duration = Duration::from_secs(15);

/// After how many short connections in a row the bridge suspects another client with its id.
const SHORT_WARN: u32 = 3;

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The brokers (the nodes of one cluster): the first is tried first, the next after a failure.
    pub brokers: Vec<Address>,
    /// The site (a topic segment).
    pub site: String,
    /// The MQTT client id (a topic segment: it names the bridge's state topic).
    pub client_id: String,
    /// The devices.
    pub devices: Vec<Spec>,
    /// Timeout of each wait on a device.
    pub timeout: Duration,
    /// How often each device's `info` is read.
    pub poll: Duration,
    /// MQTT keep-alive: how soon a broker notices a bridge that vanished without closing its
    /// connection (a closed connection fires the will at once).
    pub keep_alive: Duration,
    /// The longest pause between reconnections (to the broker, to a device).
    pub backoff_cap: Duration,
    /// Log every event and command.
    pub verbose: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn log(what: std::fmt::Arguments<'_>) {
    eprintln!("tether-bridge: {what}");
}

/// The bridge's state payload.
fn bridge_state(s: &Settings, birth: u64, online: bool, reason: &str) -> Vec<u8> {
    json!({"state": if online { "online" } else { "offline" }, "bridge": s.client_id, "birth": birth,
           "site": s.site, "devices": s.devices.len(), "version": env!("CARGO_PKG_VERSION"),
           "reason": reason, "at_ms": now_ms()})
    .to_string()
    .into_bytes()
}

/// The connection options for broker `i`: a persistent session (the broker keeps the
/// subscriptions and queues QoS 1 commands while the bridge is away), manual acknowledgements
/// (a command is acknowledged once answered), and the will that marks the bridge offline.
fn options(s: &Settings, i: usize, will: &[u8]) -> MqttOptions {
    let b = &s.brokers[i % s.brokers.len()];
    let mut o = MqttOptions::new(s.client_id.clone(), b.host.clone(), b.port);
    o.set_keep_alive(s.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(command::MAX_INCOMING, command::MAX_PACKET)
        .set_last_will(LastWill::new(
            Topics::new(&s.site).bridge_state(&s.client_id),
            will.to_vec(),
            QoS::AtLeastOnce,
            true,
        ));
    o
}

/// Runs the bridge until `stop` is set; then marks every device and the bridge offline and
/// disconnects.
pub fn run(s: Settings, stop: Arc<AtomicBool>) {
    let topics = Topics::new(&s.site);
    let birth = now_ms();
    let bridge_topic = topics.bridge_state(&s.client_id);
    let will = bridge_state(
        &s,
        birth,
        false,
        "the bridge's connection ended without a goodbye (its MQTT will)",
    );
    let (client, mut conn) = Client::new(options(&s, 0, &will), REQUEST_CHANNEL);
    // Without TCP_NODELAY (rumqttc's default is off) an answer and the acknowledgement after it
    // wait for the broker's delayed ACK: about 40 ms added to every command.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    conn.eventloop.set_network_options(net);
    let outbox = Arc::new(Outbox::default());
    outbox.retain(&bridge_topic, bridge_state(&s, birth, true, ""));
    let router = Arc::new(Router::default());
    let sender = {
        let (outbox, client) = (outbox.clone(), client.clone());
        std::thread::spawn(move || outbox.run(&client))
    };
    let (loop_done, loop_ended) = std::sync::mpsc::channel::<()>();
    {
        let (outbox, router, topics, s, will) =
            (outbox.clone(), router.clone(), topics.clone(), s.clone(), will.clone());
        std::thread::spawn(move || {
            event_loop(conn, &s, birth, &will, &outbox, &router, &topics);
            let _ = loop_done.send(());
        });
    }
    let shared = Shared {
        topics: topics.clone(),
        outbox: outbox.clone(),
        router,
        bridge: s.client_id.clone(),
        bridge_birth: birth,
        timeout: s.timeout,
        poll: s.poll,
        backoff_cap: s.backoff_cap,
        stop: stop.clone(),
        verbose: s.verbose,
    };
    let devices: Vec<_> = s
        .devices
        .iter()
        .map(|spec| {
            let d = Device::new(spec.clone(), shared.clone());
            (d.waker(), std::thread::spawn(move || d.run()))
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    log(format_args!(
        "stopping: marking {} devices and the bridge offline",
        devices.len()
    ));
    // Device threads sleep until something happens: this is it.
    for (waker, _) in &devices {
        waker.wake();
    }
    let devices = devices.into_iter().map(|(_, thread)| thread);
    for d in devices {
        let _ = d.join();
    }
    outbox.retain(&bridge_topic, bridge_state(&s, birth, false, "the bridge stopped"));
    // DISCONNECT after everything else, on the same connection.
    outbox.close();
    if !outbox.drained(Duration::from_secs(5)) {
        log(format_args!(
            "the broker is unreachable: the bridge's will marks it offline"
        ));
    }
    // The event loop ends when the broker closed the connection after the DISCONNECT (see
    // `event_loop`), or this gives up on it.
    let _ = loop_ended.recv_timeout(Duration::from_secs(3));
    outbox.stop();
    let _ = sender.join();
}

/// Polls the MQTT connection until it is told to disconnect: routes commands, restores
/// subscriptions and retained state after each connection, and after a failure waits (back-off
/// with jitter) and moves to the next broker of the list.
///
/// After the DISCONNECT it reads on until the broker closes the connection. Exiting at once would
/// close a socket with the broker's last packets (acknowledgements) unread, which resets the
/// connection, and a broker reset drops what it had not read yet: the last states and the
/// DISCONNECT itself, so that its will fired after a clean stop (seen under load).
fn event_loop(
    mut conn: Connection,
    s: &Settings,
    birth: u64,
    will: &[u8],
    outbox: &Outbox,
    router: &Router,
    topics: &Topics,
) {
    let mut own = Own {
        topic: topics.bridge_state(&s.client_id),
        birth,
        warned: None,
    };
    outbox.subscribe(&own.topic);
    let mut at = 0usize;
    let mut backoff = Backoff::new(Duration::from_millis(100), s.backoff_cap);
    // Pauses before subscribing again after the broker refused a subscription on a connection.
    let mut refused = Backoff::new(Duration::from_millis(100), s.backoff_cap);
    let mut refusal_told = None::<Instant>;
    let mut last_error = None::<String>;
    let mut since = Instant::now();
    let mut connected_at = None::<Instant>;
    // Connections in a row that the broker closed soon after accepting them.
    let mut short = 0u32;
    // `recv` rather than `iter`: the options change between polls (another broker).
    // When the broker last acknowledged something (or accepted the connection).
    let mut acked = Instant::now();
    let mut leaving = false;
    while let Ok(event) = conn.recv() {
        if leaving {
            // Until the broker closes (an error), reading whatever it still sends.
            if event.is_err() {
                return;
            }
            continue;
        }
        // (The event loop wakes at least once a keep-alive.)
        for job in router.expired() {
            give_up(job, outbox);
        }
        if matches!(
            event,
            Ok(Event::Incoming(
                Packet::PubAck(_) | Packet::SubAck(_) | Packet::ConnAck(_)
            ))
        ) {
            acked = Instant::now();
        }
        // A broker that answers pings but acknowledges no publish (a NATS node whose JetStream
        // lost its leaders, re-electing under load) holds everything: try the next broker.
        if conn.eventloop.network.is_some() && conn.eventloop.state.inflight() > 0 && acked.elapsed() > STALL {
            let b = &s.brokers[at % s.brokers.len()];
            log(format_args!(
                "the broker {b} acknowledged nothing for {} s; reconnecting",
                STALL.as_secs()
            ));
            outbox.disconnected();
            conn.eventloop.clean();
            connected_at = None;
            acked = Instant::now();
            if s.brokers.len() > 1 {
                at = (at + 1) % s.brokers.len();
                conn.eventloop.mqtt_options = options(s, at, will);
            }
            continue;
        }
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let b = &s.brokers[at % s.brokers.len()];
                log(format_args!(
                    "connected to the broker {b} (session {})",
                    if ack.session_present { "resumed" } else { "new" }
                ));
                connected_at = Some(Instant::now());
                refused.reset();
                outbox.connected();
            }
            // A refused subscription (a NATS node that could not make the subscription's
            // JetStream consumer in time, under load) leaves the connection up but deaf to those
            // commands: subscribe again, on this connection, after a pause.
            Ok(Event::Incoming(Packet::SubAck(ack))) if ack.return_codes.contains(&SubscribeReasonCode::Failure) => {
                let pause = refused.next_pause();
                if refusal_told.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                    let b = &s.brokers[at % s.brokers.len()];
                    log(format_args!(
                        "the broker {b} refused a subscription; subscribing again in {} ms",
                        pause.as_millis()
                    ));
                    refusal_told = Some(Instant::now());
                }
                outbox.resubscribe_after(pause);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == own.topic => {
                let _ = own.saw(&p.payload, &s.client_id);
                outbox.ack(p);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => route(p, topics, router, outbox),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => leaving = true,
            Ok(_) => {}
            Err(e) => {
                outbox.disconnected();
                let b = &s.brokers[at % s.brokers.len()];
                let text = format!("the broker {b}: {e}");
                // Say each new trouble once, and a lasting one every half minute.
                if last_error.as_deref() != Some(text.as_str()) || since.elapsed() > Duration::from_secs(30) {
                    log(format_args!("{text}; reconnecting"));
                    last_error = Some(text);
                    since = Instant::now();
                }
                // Back to short pauses only after a connection that held: one the broker closes
                // right after accepting it (another client with this id) is not a success.
                match connected_at.take().map(|t| t.elapsed() >= STABLE) {
                    Some(true) => {
                        backoff.reset();
                        short = 0;
                    }
                    Some(false) => {
                        short += 1;
                        if short.is_multiple_of(SHORT_WARN) {
                            log(format_args!(
                                "warning: the broker {b} closed this connection {short} times in a row soon after accepting it: another client (another bridge?) may use the client id {} (give each bridge its own --client-id), or the broker cannot keep sessions yet (NATS: JetStream not ready; see its log)",
                                s.client_id
                            ));
                        }
                    }
                    None => {}
                }
                let pause = backoff.next_pause();
                if s.brokers.len() > 1 {
                    at = (at + 1) % s.brokers.len();
                    conn.eventloop.mqtt_options = options(s, at, will);
                }
                std::thread::sleep(pause);
            }
        }
    }
}

/// The bridge's own state topic, watched for another bridge with the same client id: a broker
/// keeps one connection per client id and closes the older when another connects, so two bridges
/// with one id take the connection from each other in turn, and neither says why.
struct Own {
    topic: String,
    birth: u64,
    warned: Option<Instant>,
}

impl Own {
    /// Looks at a message on the bridge's own state topic; whether it warned.
    fn saw(&mut self, payload: &[u8], id: &str) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return false;
        };
        if v["state"] != "online" {
            return false;
        }
        // A birth before this one's may be a previous run's state, left retained; a later one is
        // a bridge that started after this one. (Of two bridges with one id, the older warns.)
        let later = v["birth"].as_u64().is_some_and(|b| b > self.birth);
        if later && self.warned.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
            self.warned = Some(Instant::now());
            log(format_args!(
                "warning: another bridge runs with the client id {id} (its birth {}): the broker keeps one connection per client id, so the two keep taking it from each other; give each bridge its own --client-id",
                v["birth"]
            ));
            return true;
        }
        false
    }
}

/// Hands a command to its device's thread; anything else is acknowledged and dropped.
fn route(p: rumqttc::Publish, topics: &Topics, router: &Router, outbox: &Outbox) {
    if p.retain {
        // A retained command would run again at every subscription: never run one.
        log(format_args!(
            "ignoring a retained message on {} (commands must not be retained)",
            p.topic
        ));
        outbox.ack(p);
        return;
    }
    let Some((device, verb)) = topics.parse_command(&p.topic) else {
        outbox.ack(p);
        return;
    };
    let (device, verb) = (device.to_string(), verb.to_string());
    let job = Job { verb, publish: p };
    for job in router.route(&device, job) {
        give_up(job, outbox);
    }
}

/// Drops a command that no device of this bridge took in time.
fn give_up(job: Job, outbox: &Outbox) {
    log(format_args!(
        "no device of this bridge took the name in {} within {} s: the command is dropped",
        job.publish.topic,
        router::UNKNOWN_WAIT.as_secs()
    ));
    outbox.ack(job.publish);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_birth_online_on_the_own_state_topic_is_another_bridge_with_this_id() {
        let mut own = Own {
            topic: "t".into(),
            birth: 100,
            warned: None,
        };
        let state = |s: &str, b: u64| json!({"state": s, "birth": b}).to_string().into_bytes();
        assert!(!own.saw(&state("online", 100), "id"), "its own state");
        assert!(
            !own.saw(&state("online", 50), "id"),
            "a previous run's state, left retained"
        );
        assert!(!own.saw(&state("offline", 150), "id"), "a will");
        assert!(!own.saw(b"not json", "id"));
        assert!(own.saw(&state("online", 150), "id"), "a bridge that started later");
        assert!(!own.saw(&state("online", 150), "id"), "said at most every 30 s");
    }
}
