//! One device: its session, kept open (reconnected with back-off when it breaks), its retained
//! `state` and `info`, its events, and the commands the broker routes to it, one at a time.
//!
//! The session serves everything on one connection: the device pushes events into it (after a
//! `Subscribe` on it, sealed on a keyed device), and commands are requests between reads. The
//! thread sleeps until there is something to do (`crate::wake`): bytes from the device, a
//! command (the router signals the thread's waker after queueing it), the next `info` poll, or
//! stop. Bytes the session has read already (`AnyClient::has_buffered_input`) are worked through
//! before it sleeps. An event whose bytes have begun to arrive is read with a short read timeout
//! ([`EVENT_READ`]), and the decoder keeps a frame that a timeout cuts, so no event is torn and a
//! command never waits long behind a slow frame. Events that arrive while a command waits for
//! its answer are kept by the client (`Client::keeping_events`, up to 1024) and published after
//! it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tether_core::secure::Psk;
use tether_core::wire::Kind;
use tether_host::net::{AnyClient, Endpoint};

use crate::backoff::Backoff;
use crate::command::{self, Failed};
use crate::dedup::Dedup;
use crate::outbox::Outbox;
use crate::router::Router;
use crate::topic::{segment_of, Topics};
use crate::wake::{Waker, Woke};

/// How long the read of an event that has begun to arrive waits for the rest of it before the
/// command queue is looked at again (the rest is read later: the decoder keeps the part read).
pub const EVENT_READ: Duration = Duration::from_millis(20);

/// How long a session must last for the reconnection back-off to start again from its shortest
/// pause.
const STABLE: Duration = Duration::from_secs(10);

/// How long a `fw-update` waits for its device to come back after the reset, at least.
const UPDATE_WAIT: Duration = Duration::from_secs(60);

/// A command routed to a device.
#[derive(Debug)]
pub struct Job {
    /// The verb (`cmd/{verb}`).
    pub verb: String,
    /// The MQTT message (acknowledged once answered).
    pub publish: rumqttc::Publish,
}

/// Where a device thread's commands go: its queue, and the waker that tells it one came.
#[derive(Debug, Clone)]
pub struct Inbox {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
}

impl Inbox {
    /// An inbox that queues into `jobs` and wakes `waker`.
    pub fn new(jobs: Sender<Job>, waker: Arc<Waker>) -> Inbox {
        Inbox { jobs, waker }
    }

    /// Queues `job` and wakes the thread; gives it back when the thread is gone.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|e| e.0)?;
        self.waker.wake();
        Ok(())
    }
}

/// One device to bridge.
#[derive(Debug, Clone)]
pub struct Spec {
    /// How the bridge's messages name it (the entry as written, or the discovered name).
    pub label: String,
    /// Where it is.
    pub to: Endpoint,
    /// Its topic segment when known before it answers (a config name, a discovered name);
    /// otherwise its hello's name is used.
    pub segment: Option<String>,
    /// Its key.
    pub key: Option<Psk>,
}

/// What every device thread shares.
#[derive(Clone)]
pub struct Shared {
    /// The site's topics.
    pub topics: Topics,
    /// The outbox.
    pub outbox: Arc<Outbox>,
    /// Devices by segment.
    pub router: Arc<Router>,
    /// This bridge's client id and birth (ms since the epoch at start).
    pub bridge: String,
    /// See `bridge`.
    pub bridge_birth: u64,
    /// Timeout of each wait on a device.
    pub timeout: Duration,
    /// How often `info` is polled.
    pub poll: Duration,
    /// The longest pause between reconnections.
    pub backoff_cap: Duration,
    /// Set to stop, then wake every device thread ([`Device::waker`]): an idle one sleeps until
    /// the next `info` poll otherwise.
    pub stop: Arc<AtomicBool>,
    /// Log every event and command.
    pub verbose: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A device thread's state.
pub struct Device {
    spec: Spec,
    sh: Shared,
    jobs: Receiver<Job>,
    inbox: Inbox,
    segment: Option<String>,
    /// Times the device came online in this bridge's run: the birth number in `state`.
    birth: u64,
    online: bool,
    /// Whether a state was published for it.
    announced: bool,
    dedup: Dedup,
    /// The last `info` published, without its uptime (republished when the rest changes).
    info: Option<Map<String, Value>>,
    /// A `fw-update` whose device resets into the new image: answered once it is back.
    update: Option<(Held, command::Update, Instant)>,
}

/// A command read and not yet answered.
struct Held {
    publish: rumqttc::Publish,
    verb: String,
    request: command::Request,
    reply: String,
}

impl Device {
    /// A device thread's state; the segment, when known, is claimed now.
    pub fn new(spec: Spec, sh: Shared) -> Device {
        let (sender, jobs) = std::sync::mpsc::channel();
        let mut d = Device {
            segment: None,
            spec,
            sh,
            jobs,
            inbox: Inbox::new(sender, Arc::new(Waker::new())),
            birth: 0,
            online: false,
            announced: false,
            dedup: Dedup::default(),
            info: None,
            update: None,
        };
        if let Some(s) = d.spec.segment.clone() {
            d.claim(&s);
        }
        d
    }

    /// The thread's waker: wake it after setting `Shared::stop`.
    pub fn waker(&self) -> Arc<Waker> {
        self.inbox.waker.clone()
    }

    fn log(&self, what: std::fmt::Arguments<'_>) {
        eprintln!("tether-bridge: {}: {what}", self.spec.label);
    }

    /// Takes a segment (unique among this bridge's devices) and subscribes to its commands.
    fn claim(&mut self, wanted: &str) {
        let seg = self
            .sh
            .router
            .register(&segment_of(wanted), &self.spec.to.to_string(), self.inbox.clone());
        self.sh.outbox.subscribe(&self.sh.topics.commands(&seg));
        self.segment = Some(seg);
    }

    fn topic(&self, leaf: &str) -> Option<String> {
        self.segment.as_ref().map(|s| self.sh.topics.device(s, leaf))
    }

    fn publish_state(&mut self, online: bool, reason: Option<&str>) {
        self.online = online;
        let Some(topic) = self.topic("state") else { return };
        self.announced = true;
        let state = json!({
            "state": if online { "online" } else { "offline" }, "birth": self.birth,
            "bridge": self.sh.bridge, "bridge_birth": self.sh.bridge_birth,
            "to": self.spec.to.to_string(), "reason": reason, "at_ms": now_ms(),
        });
        self.sh.outbox.retain(&topic, state.to_string().into_bytes());
    }

    /// Runs until the bridge stops.
    pub fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), self.sh.backoff_cap);
        let mut told = None::<String>;
        while !self.sh.stop.load(Ordering::Relaxed) {
            let reason = match tether_host::net::open(&self.spec.to, self.sh.timeout, self.spec.key.as_ref()) {
                Ok(client) => {
                    let client = client.keeping_events();
                    told = None;
                    let began = Instant::now();
                    let ended = self.session(client);
                    // Short pauses again only after a session that held: a device that takes the
                    // connection and drops it at once is retried with back-off all the same.
                    if began.elapsed() >= STABLE {
                        backoff.reset();
                    }
                    match ended {
                        Ok(()) => break,
                        Err(e) => e,
                    }
                }
                Err(e) => e.to_string(),
            };
            if told.as_deref() != Some(reason.as_str()) {
                self.log(format_args!("offline: {reason}"));
                told = Some(reason.clone());
            }
            // Offline once when it goes (or at the start, when its name is known already).
            if self.online || (!self.announced && self.segment.is_some()) {
                self.publish_state(false, Some(&reason));
            }
            if self
                .update
                .as_ref()
                .is_some_and(|(_, _, until)| Instant::now() >= *until)
            {
                let why = format!("{} did not come back after its reset ({reason})", self.spec.label);
                self.end_update(Err(Failed {
                    kind: "timeout",
                    code: None,
                    message: why,
                }));
            }
            self.wait_offline(backoff.next_pause(), &reason);
        }
        let why = format!("the bridge stopped before {} came back from its reset", self.spec.label);
        self.end_update(Err(Failed::offline(why)));
        if self.segment.is_some() {
            self.publish_state(false, Some("the bridge stopped"));
        }
    }

    /// Answers the `fw-update` waiting for its device, if there is one.
    fn end_update(&mut self, result: Result<Map<String, Value>, Failed>) {
        if let Some((held, _, _)) = self.update.take() {
            self.finish(held, result, true);
        }
    }

    /// Waits `pause`, answering every command meanwhile: the device is offline.
    fn wait_offline(&mut self, pause: Duration, reason: &str) {
        let until = Instant::now() + pause;
        while !self.sh.stop.load(Ordering::Relaxed) {
            loop {
                match self.jobs.try_recv() {
                    Ok(job) => {
                        let why = format!("{} is offline ({reason})", self.spec.label);
                        self.answer(job, |_, _| Some(Err(Failed::offline(why.clone()))), false);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.inbox.waker.wait(None, left);
        }
    }

    /// One session, until it breaks (the reason) or the bridge stops (`Ok`).
    fn session(&mut self, mut client: AnyClient) -> Result<(), String> {
        let info = client.hello(crate::CLIENT).map_err(|e| e.to_string())?;
        if self.segment.is_none() {
            self.claim(&info.device);
        }
        self.publish_info(&info);
        // A device without the events service (or that refuses) is bridged without events.
        let events = match client.call(Kind::Subscribe, &tether_core::msg::Subscribe { on: true }, &[]) {
            Ok(_) => true,
            Err(e) if e.code().is_some() => false,
            Err(e) => return Err(e.to_string()),
        };
        if let Some((_, update, _)) = &self.update {
            let result = command::finish_update(&mut client, update);
            let broke = match &result {
                Err(f) if f.broke_session() => Some(f.message.clone()),
                _ => None,
            };
            self.end_update(result);
            if let Some(why) = broke {
                return Err(why);
            }
        }
        self.birth += 1;
        self.publish_state(true, None);
        self.log(format_args!(
            "online as {} (birth {}, events {})",
            self.segment.as_deref().unwrap_or("?"),
            self.birth,
            if events { "on" } else { "off" }
        ));
        let mut polled = Instant::now();
        // The read timeout now: short while an event is read, the device's timeout for a request.
        // Set only when it changes (a system call each).
        let mut patience = self.sh.timeout;
        loop {
            if self.sh.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            while let Ok(job) = self.jobs.try_recv() {
                wait_for(&mut client, &mut patience, self.sh.timeout)?;
                self.run_job(&mut client, job)?;
            }
            if polled.elapsed() >= self.sh.poll {
                wait_for(&mut client, &mut patience, self.sh.timeout)?;
                let info = client.hello(crate::CLIENT).map_err(|e| e.to_string())?;
                self.publish_info(&info);
                polled = Instant::now();
            }
            // Input read already is worked through first: the descriptor would not wake for it.
            if !(events && client.has_buffered_input()) {
                let left = self.sh.poll.saturating_sub(polled.elapsed());
                let session = events.then(|| client.get_ref().inner());
                if self.inbox.waker.wait(session, left) != Woke::Input {
                    continue;
                }
            }
            wait_for(&mut client, &mut patience, EVENT_READ)?;
            match client.next_event() {
                Ok(Some((seq, topic, data))) => self.publish_event(seq, &topic, &data),
                Ok(None) => {}
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn run_job(&mut self, client: &mut AnyClient, job: Job) -> Result<(), String> {
        let to = self.spec.to.to_string();
        let mut broke = None;
        let mut resetting = None;
        let held = self.answer(
            job,
            |verb, r| {
                let result = match verb {
                    "fw-update" => match command::begin_update(client, r) {
                        Ok(command::Begun::Done(m)) => Ok(m),
                        Ok(command::Begun::Resetting(u)) => {
                            resetting = Some(u);
                            return None;
                        }
                        Err(f) => Err(f),
                    },
                    _ => command::run(client, verb, r, &to),
                };
                match &result {
                    Err(f) if f.broke_session() => broke = Some(f.message.clone()),
                    Ok(_) if verb == "reset" => broke = Some("the device resets (`reset`)".into()),
                    _ => {}
                }
                Some(result)
            },
            true,
        );
        if let (Some(held), Some(update)) = (held, resetting) {
            let wait = UPDATE_WAIT.max(self.sh.timeout * 4);
            self.update = Some((held, update, Instant::now() + wait));
            return Err("the device resets into its new image (`fw-update`)".into());
        }
        broke.map_or(Ok(()), Err)
    }

    /// Answers `job` with `run`'s result (or the cached answer of a repeat), then acknowledges
    /// it. `remember`: whether the answer is kept for repeats (not for "offline": a repeat once
    /// the device is back should run). When `run` has no result yet (`None`), the command is
    /// returned, to be answered later with [`Device::finish`].
    fn answer(
        &mut self,
        job: Job,
        run: impl FnOnce(&str, &command::Request) -> Option<Result<Map<String, Value>, Failed>>,
        remember: bool,
    ) -> Option<Held> {
        let seg = self.segment.clone().unwrap_or_default();
        let default_reply = self.sh.topics.device(&seg, "reply");
        let Job { verb, publish } = job;
        match command::parse(&publish.payload) {
            Ok(r) => {
                if let Some((topic, payload)) = self.dedup.answered(&r.id) {
                    if self.sh.verbose {
                        self.log(format_args!(
                            "{verb} {}: a repeat, answered again without running",
                            r.id
                        ));
                    }
                    self.sh.outbox.publish(topic, payload.clone());
                } else {
                    let reply = r.reply.clone().unwrap_or(default_reply);
                    if let Err(e) = crate::topic::check_reply_topic(&reply) {
                        // Answering there could get the bridge disconnected (NATS): say so on
                        // the device's own reply topic.
                        self.log(format_args!("{verb} {}: {e}", r.id));
                        let payload = command::answer(&r.id, &seg, &verb, &Err(Failed::usage(e)));
                        self.sh.outbox.publish(&self.sh.topics.device(&seg, "reply"), payload);
                        self.sh.outbox.ack(publish);
                        return None;
                    }
                    let result = run(&verb, &r);
                    let held = Held {
                        publish,
                        verb,
                        request: r,
                        reply,
                    };
                    match result {
                        Some(result) => self.finish(held, result, remember),
                        None => return Some(held),
                    }
                    return None;
                }
            }
            Err(f) => {
                self.log(format_args!("{verb}: {}", f.message));
                // Answer where the sender listens when its payload names it (a typo in another
                // field is still worth telling it), else on the device's own reply topic.
                let v = serde_json::from_slice::<Value>(&publish.payload).unwrap_or(Value::Null);
                let id = v["id"].as_str().unwrap_or_default();
                let reply = v["reply"]
                    .as_str()
                    .filter(|r| crate::topic::check_reply_topic(r).is_ok())
                    .unwrap_or(&default_reply);
                self.sh.outbox.publish(reply, command::answer(id, &seg, &verb, &Err(f)));
            }
        }
        self.sh.outbox.ack(publish);
        None
    }

    /// Publishes the answer to a held command, keeps it for repeats (`remember`, unless the
    /// device was offline), and acknowledges the command.
    fn finish(&mut self, held: Held, result: Result<Map<String, Value>, Failed>, remember: bool) {
        let seg = self.segment.clone().unwrap_or_default();
        let Held {
            publish,
            verb,
            request: r,
            reply,
        } = held;
        if self.sh.verbose {
            self.log(format_args!("{verb} {}: ok {}", r.id, result.is_ok()));
        }
        let payload = command::answer(&r.id, &seg, &verb, &result);
        if remember && !matches!(&result, Err(f) if f.kind == "offline") {
            self.dedup.record(&r.id, &reply, &payload);
        }
        self.sh.outbox.publish(&reply, payload);
        self.sh.outbox.ack(publish);
    }

    fn publish_info(&mut self, info: &tether_host::client::DeviceInfo) {
        let Some(topic) = self.topic("info") else { return };
        let mut m = command::info_json(info, &self.spec.to.to_string());
        m.insert("events_dropped".into(), json!(self.sh.outbox.dropped_events()));
        let mut without_uptime = m.clone();
        without_uptime.remove("uptime_ms");
        without_uptime.remove("events_dropped");
        if self.info.as_ref() == Some(&without_uptime) {
            return;
        }
        self.info = Some(without_uptime);
        self.sh.outbox.retain(&topic, Value::Object(m).to_string().into_bytes());
    }

    fn publish_event(&mut self, seq: u32, topic: &str, data: &[u8]) {
        // The device's inbox traffic has a topic of its own; every other event is under event/.
        let leaf = if topic == "message" {
            "message".to_string()
        } else {
            format!("event/{}", segment_of(topic))
        };
        let Some(t) = self.topic(&leaf) else { return };
        let mut m = command::data_fields(data);
        m.insert("seq".into(), json!(seq));
        m.insert("topic".into(), json!(topic));
        m.insert("at_ms".into(), json!(now_ms()));
        if self.sh.verbose {
            self.log(format_args!("event {seq} {topic}"));
        }
        self.sh.outbox.event(&t, Value::Object(m).to_string().into_bytes());
    }
}

/// Sets the session's read timeout to `t` unless it is that already (`now`).
fn wait_for(client: &mut AnyClient, now: &mut Duration, t: Duration) -> Result<(), String> {
    if *now != t {
        client
            .get_mut()
            .inner_mut()
            .set_read_timeout(t)
            .map_err(|e| format!("cannot set the session's read timeout ({e})"))?;
        *now = t;
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use tether_core::codec::{encode, Decoder};
    use tether_core::msg;
    use tether_core::wire::FrameSpec;

    /// A device that answers `Hello` and `Subscribe` on one connection, and sends whatever bytes
    /// the test hands it (events) in one write each.
    fn device(listener: TcpListener, push: Receiver<Vec<u8>>) {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let mut decoder = Box::new(Decoder::<4096>::new());
        let mut input = vec![0u8; 4096];
        loop {
            while let Ok(bytes) = push.try_recv() {
                s.write_all(&bytes).unwrap();
            }
            let n = match s.read(&mut input) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(_) => return,
            };
            let mut rest = &input[..n];
            while !rest.is_empty() {
                let (used, frame) = decoder.decode(rest);
                rest = &rest[used..];
                let Some(Ok(f)) = frame else { continue };
                let mut out = vec![0u8; 1024];
                let spec = FrameSpec::response(f.kind(), f.request_id());
                let n = if f.kind() == Kind::Hello {
                    let info = msg::Info {
                        version: 1,
                        device: "fake",
                        max_frame: 4096,
                        max_chunk: 1024,
                        sessions: 1,
                        storage_capacity: 0,
                        storage_used: 0,
                        uptime_ms: 1,
                        commands: Default::default(),
                        udp_port: 7070,
                        clock_synced: false,
                        key_required: false,
                    };
                    encode(&mut out, spec, &info, &[]).unwrap()
                } else {
                    encode(&mut out, spec, &(), &[]).unwrap()
                };
                s.write_all(&out[..n]).unwrap();
            }
        }
    }

    /// An event frame as a device pushes it (the device's own encoder).
    fn event(seq: u32) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        let n = tether_core::service::events::event_frame(&mut f, "t", seq, b"x");
        f.truncate(n);
        f
    }

    /// Waits up to 10 s (a bound no loaded machine reaches) for `what`.
    fn soon(what: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The device thread sleeps while its device is quiet, wakes for a command because the
    /// router signals it (not because a poll came round), works through events that one read
    /// from the socket took along before it sleeps again, and ends when told to stop.
    #[test]
    fn an_idle_device_thread_sleeps_and_wakes_for_commands_events_and_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (push, pushed) = std::sync::mpsc::channel();
        let fake = std::thread::spawn(move || device(listener, pushed));
        let sh = Shared {
            topics: Topics::new("site"),
            outbox: Arc::new(Outbox::default()),
            router: Arc::new(Router::default()),
            bridge: "test".into(),
            bridge_birth: 1,
            timeout: Duration::from_secs(5),
            // No `info` poll during the test: nothing but the device and commands wakes it.
            poll: Duration::from_secs(600),
            backoff_cap: Duration::from_secs(1),
            stop: Arc::new(AtomicBool::new(false)),
            verbose: false,
        };
        let spec = Spec {
            label: "fake".into(),
            to: Endpoint::parse(&addr).unwrap(),
            segment: Some("fake".into()),
            key: None,
        };
        let d = Device::new(spec, sh.clone());
        let waker = d.waker();
        let thread = std::thread::spawn(move || d.run());
        let state = sh.topics.device("fake", "state");
        let online = || {
            sh.outbox
                .retained(&state)
                .is_some_and(|s| String::from_utf8_lossy(&s).contains("\"online\""))
        };
        assert!(soon(online), "the device came online");
        let published = |topic: &str| sh.outbox.queued().iter().filter(|(t, _)| t == topic).count();

        // Idle: the old design woke 50 times a second (its 20 ms read timeout).
        let before = waker.waits();
        std::thread::sleep(Duration::from_secs(1));
        let idle = waker.waits() - before;
        assert!(idle < 10, "{idle} wake-ups in an idle second");

        // A command: the router's signal wakes the thread.
        let woken = waker.woken();
        let reply = sh.topics.device("fake", "reply");
        let job = Job {
            verb: "info".into(),
            publish: rumqttc::Publish::new("t", rumqttc::QoS::AtLeastOnce, r#"{"id":"1"}"#),
        };
        assert!(sh.router.route("fake", job).is_empty());
        assert!(soon(|| published(&reply) == 1), "the command was answered");
        assert!(waker.woken() > woken, "woken by the router's signal");

        // Two events in one write: the second is in the bridge's read buffer, not the socket.
        let topic = sh.topics.device("fake", "event/t");
        push.send([event(1), event(2)].concat()).unwrap();
        assert!(soon(|| published(&topic) == 2), "both events were published");

        // Stop, as the bridge does it: the flag, then the waker.
        sh.stop.store(true, Ordering::Relaxed);
        waker.wake();
        assert!(soon(|| thread.is_finished()), "the thread stopped");
        thread.join().unwrap();
        drop(push);
        fake.join().unwrap();
    }
}
