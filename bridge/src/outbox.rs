//! Everything the bridge sends to the broker goes through one outbox, drained by one thread
//! that owns the MQTT client's sending side.
//!
//! Why: rumqttc's `publish` blocks while its request channel is full (rumqtt#910), and the
//! channel drains only while the event loop runs; a device thread — or worse, the event loop
//! thread itself — blocked there stalls the bridge. Here no one but the outbox thread ever calls
//! the client, and it only uses `try_*` calls: on a full channel it waits a moment and tries
//! again, while device threads go on.
//!
//! What is kept, and for how long:
//! - retained topics (states, infos): the last payload per topic, sent again in full after
//!   every (re)connection — a broker that restarted without its store, or a will that fired,
//!   must see the current state again (Sparkplug's rebirth);
//! - replies and acknowledgements: in order, until sent while connected;
//! - events: at most [`MAX_EVENTS`] waiting; past that new ones are dropped and counted, as a
//!   device drops events for a busy session (the sequence numbers show the gap);
//! - subscriptions: every filter, subscribed again after every (re)connection (rumqttc does not
//!   restore them, rumqtt#250; a persistent session would, but a broker that lost its store
//!   does not), and after a pause when the broker refused one ([`Outbox::resubscribe_after`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rumqttc::{Client, QoS};

/// Most events waiting to be sent; the rest are dropped and counted.
pub const MAX_EVENTS: usize = 10_000;

/// One thing to send, in order.
#[derive(Debug, Clone)]
enum Out {
    Publish {
        topic: String,
        payload: Vec<u8>,
        event: bool,
    },
    Ack(Box<rumqttc::Publish>),
}

#[derive(Debug, Default)]
struct State {
    retained: BTreeMap<String, Vec<u8>>,
    /// Retained topics not sent since they changed or since the last connection.
    dirty: BTreeSet<String>,
    queue: VecDeque<Out>,
    events_waiting: usize,
    dropped_events: u64,
    filters: BTreeSet<String>,
    /// Filters not subscribed on this connection yet.
    unsubscribed: BTreeSet<String>,
    /// When every filter is to be subscribed again on this connection (the broker refused one).
    resubscribe_at: Option<Instant>,
    connected: bool,
    /// The bridge stops: DISCONNECT after everything else, then nothing.
    closing: bool,
    /// Whether the DISCONNECT was handed to the client.
    disconnected: bool,
    stop: bool,
}

impl State {
    fn idle(&self) -> bool {
        self.dirty.is_empty()
            && self.queue.is_empty()
            && self.unsubscribed.is_empty()
            && (!self.closing || self.disconnected)
    }
}

/// The outbox (shared by every thread of the bridge).
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<State>,
    wake: Condvar,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left whole values behind (every change
        // is one insert or push): go on with them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.wake.notify_all();
    }

    /// Sets retained `topic` to `payload` (sent once; again after every reconnection).
    pub fn retain(&self, topic: &str, payload: Vec<u8>) {
        self.changed(|s| {
            s.retained.insert(topic.to_string(), payload);
            s.dirty.insert(topic.to_string());
        });
    }

    /// The retained payload of `topic`, as last set.
    pub fn retained(&self, topic: &str) -> Option<Vec<u8>> {
        self.lock().retained.get(topic).cloned()
    }

    /// Queues a reply (never dropped).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.changed(|s| {
            s.queue.push_back(Out::Publish {
                topic: topic.to_string(),
                payload,
                event: false,
            })
        });
    }

    /// Queues an event, unless [`MAX_EVENTS`] wait already; returns whether it was queued.
    pub fn event(&self, topic: &str, payload: Vec<u8>) -> bool {
        let mut s = self.lock();
        if s.events_waiting >= MAX_EVENTS {
            s.dropped_events += 1;
            return false;
        }
        s.events_waiting += 1;
        s.queue.push_back(Out::Publish {
            topic: topic.to_string(),
            payload,
            event: true,
        });
        drop(s);
        self.wake.notify_all();
        true
    }

    /// Queues the acknowledgement of a command (after its reply: the broker forgets the command
    /// only once the answer is on its way).
    pub fn ack(&self, publish: rumqttc::Publish) {
        self.changed(|s| s.queue.push_back(Out::Ack(Box::new(publish))));
    }

    /// The publishes queued (replies and events), in order: what tests look at.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> Vec<(String, Vec<u8>)> {
        let s = self.lock();
        let published = s.queue.iter().filter_map(|o| match o {
            Out::Publish { topic, payload, .. } => Some((topic.clone(), payload.clone())),
            Out::Ack(_) => None,
        });
        published.collect()
    }

    /// Adds a subscription (kept for every later connection).
    pub fn subscribe(&self, filter: &str) {
        self.changed(|s| {
            if s.filters.insert(filter.to_string()) {
                s.unsubscribed.insert(filter.to_string());
            }
        });
    }

    /// The broker refused a subscription (a SUBACK failure): subscribe to every filter again
    /// after `pause`, on this connection (a filter the broker holds already is only confirmed).
    /// The earliest of two such pauses counts.
    pub fn resubscribe_after(&self, pause: Duration) {
        let at = Instant::now() + pause;
        self.changed(|s| s.resubscribe_at = Some(s.resubscribe_at.map_or(at, |t| t.min(at))));
    }

    /// The event loop (re)connected: subscribe again and send every retained topic again.
    pub fn connected(&self) {
        self.changed(|s| {
            s.connected = true;
            s.resubscribe_at = None;
            s.unsubscribed = s.filters.clone();
            s.dirty = s.retained.keys().cloned().collect();
        });
    }

    /// The connection broke: hold everything until the next one.
    pub fn disconnected(&self) {
        self.changed(|s| s.connected = false);
    }

    /// Events dropped because too many waited.
    pub fn dropped_events(&self) -> u64 {
        self.lock().dropped_events
    }

    /// Waits up to `limit` until everything queued has been handed to the client; whether it was.
    pub fn drained(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut s = self.lock();
        while !s.idle() {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .wake
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// Hands DISCONNECT to the client once everything queued so far was handed, and nothing after
    /// it. (Handed from the outbox's thread, it cannot overtake a publish taken out just before:
    /// a DISCONNECT sent by another thread once [`Outbox::drained`] said so could.)
    pub fn close(&self) {
        self.changed(|s| s.closing = true);
    }

    /// Ends [`Outbox::run`].
    pub fn stop(&self) {
        self.changed(|s| s.stop = true);
    }

    /// The next request to hand to the client, taken out of the state (put back with
    /// [`Outbox::put_back`] when the channel is full).
    fn next(&self) -> Option<Taken> {
        let mut s = self.lock();
        loop {
            if s.stop {
                return None;
            }
            if s.connected && !s.disconnected {
                if s.resubscribe_at.is_some_and(|t| t <= Instant::now()) {
                    s.resubscribe_at = None;
                    s.unsubscribed = s.filters.clone();
                }
                if let Some(f) = s.unsubscribed.pop_first() {
                    return Some(Taken::Subscribe(f));
                }
                if let Some(t) = s.dirty.pop_first() {
                    if let Some(p) = s.retained.get(&t) {
                        return Some(Taken::Retained(t.clone(), p.clone()));
                    }
                    continue;
                }
                if let Some(o) = s.queue.pop_front() {
                    if matches!(o, Out::Publish { event: true, .. }) {
                        s.events_waiting -= 1;
                    }
                    return Some(Taken::Queued(o));
                }
                if s.closing {
                    s.disconnected = true;
                    return Some(Taken::Disconnect);
                }
            }
            self.wake.notify_all();
            s = match s.resubscribe_at.filter(|_| s.connected) {
                Some(t) => {
                    let left = t.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(s, left)
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g)
                }
                None => self.wake.wait(s).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    fn put_back(&self, t: Taken) {
        self.changed(|s| match t {
            Taken::Subscribe(f) => {
                s.unsubscribed.insert(f);
            }
            Taken::Retained(topic, _) => {
                s.dirty.insert(topic);
            }
            Taken::Queued(o) => {
                if matches!(o, Out::Publish { event: true, .. }) {
                    s.events_waiting += 1;
                }
                s.queue.push_front(o);
            }
            Taken::Disconnect => s.disconnected = false,
        });
    }

    /// Hands everything to `client` until [`Outbox::stop`]; QoS 1 throughout.
    pub fn run(&self, client: &Client) {
        while let Some(t) = self.next() {
            let sent = match &t {
                Taken::Subscribe(f) => client.try_subscribe(f.clone(), QoS::AtLeastOnce),
                Taken::Retained(topic, p) => client.try_publish(topic.clone(), QoS::AtLeastOnce, true, p.clone()),
                Taken::Queued(Out::Publish { topic, payload, .. }) => {
                    client.try_publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                }
                Taken::Queued(Out::Ack(p)) => client.try_ack(p),
                Taken::Disconnect => client.try_disconnect(),
            };
            match sent {
                Ok(()) => self.wake.notify_all(),
                Err(_) => {
                    // The request channel is full (or the event loop is gone): keep it, and let
                    // the event loop drain the channel.
                    self.put_back(t);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// A request taken out of the outbox.
enum Taken {
    Subscribe(String),
    Retained(String, Vec<u8>),
    Queued(Out),
    Disconnect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_topics_are_sent_again_after_a_reconnection_and_events_are_bounded() {
        let o = Outbox::default();
        o.retain("a", b"1".to_vec());
        o.retain("a", b"2".to_vec());
        o.subscribe("f");
        o.connected();
        assert!(matches!(o.next(), Some(Taken::Subscribe(f)) if f == "f"));
        assert!(matches!(o.next(), Some(Taken::Retained(t, p)) if t == "a" && p == b"2"));
        assert!(o.lock().idle());
        o.disconnected();
        o.connected();
        assert!(matches!(o.next(), Some(Taken::Subscribe(_))));
        assert!(matches!(o.next(), Some(Taken::Retained(_, _))));
        for _ in 0..MAX_EVENTS {
            assert!(o.event("e", vec![]));
        }
        assert!(!o.event("e", vec![]));
        assert_eq!(o.dropped_events(), 1);
        o.publish("r", b"reply".to_vec());
        let first = o.next().expect("an event");
        o.put_back(first);
        assert_eq!(o.lock().events_waiting, MAX_EVENTS);
    }

    #[test]
    fn at_close_disconnect_goes_after_everything_queued_and_nothing_goes_after_it() {
        let o = Outbox::default();
        o.subscribe("f");
        o.connected();
        assert!(matches!(o.next(), Some(Taken::Subscribe(_))));
        o.retain("state", b"offline".to_vec());
        o.publish("r", b"reply".to_vec());
        o.close();
        assert!(!o.lock().idle(), "the DISCONNECT is not handed yet");
        assert!(matches!(o.next(), Some(Taken::Retained(t, _)) if t == "state"));
        assert!(matches!(o.next(), Some(Taken::Queued(_))));
        assert!(matches!(o.next(), Some(Taken::Disconnect)));
        assert!(o.lock().idle());
        // What comes later (a command's acknowledgement) is not sent after the DISCONNECT.
        o.publish("late", b"x".to_vec());
        let waiter = std::thread::spawn({
            let o = std::sync::Arc::new(o);
            let o2 = o.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                o2.stop();
            });
            move || o.next().is_none()
        });
        assert!(waiter.join().expect("the waiter"), "nothing after the DISCONNECT");
    }

    #[test]
    fn a_refused_subscription_makes_every_filter_subscribed_again_after_the_pause() {
        let o = Outbox::default();
        o.subscribe("a");
        o.subscribe("b");
        o.connected();
        assert!(matches!(o.next(), Some(Taken::Subscribe(f)) if f == "a"));
        assert!(matches!(o.next(), Some(Taken::Subscribe(f)) if f == "b"));
        let asked = Instant::now();
        o.resubscribe_after(Duration::from_millis(300));
        o.resubscribe_after(Duration::from_secs(60));
        o.publish("r", b"reply".to_vec());
        // What waits goes first; the filters when the (earlier) pause is over.
        assert!(matches!(o.next(), Some(Taken::Queued(_))));
        assert!(matches!(o.next(), Some(Taken::Subscribe(f)) if f == "a"));
        let waited = asked.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(30),
            "{waited:?}"
        );
        assert!(matches!(o.next(), Some(Taken::Subscribe(f)) if f == "b"));
        // A new connection subscribes to everything anyway: no pause left over.
        o.resubscribe_after(Duration::from_secs(60));
        o.disconnected();
        o.connected();
        assert!(o.lock().resubscribe_at.is_none());
    }
}
