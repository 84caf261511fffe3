//! Which device thread a command topic's `{device}` segment goes to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::device::{Inbox, Job};
use crate::topic::BRIDGE_SEGMENT;

/// How long a command for a device whose name is not known yet waits for it: a persistent
/// session delivers commands queued while the bridge was away as soon as it connects, before a
/// device known only by its address has answered its first hello.
pub const UNKNOWN_WAIT: Duration = Duration::from_secs(60);

/// The most commands that wait for devices not known yet.
pub const UNKNOWN_MAX: usize = 1024;

/// Devices by segment.
#[derive(Debug, Default)]
pub struct Router {
    devices: Mutex<Devices>,
}

#[derive(Debug, Default)]
struct Devices {
    known: HashMap<String, Inbox>,
    /// Commands for segments no device has (yet), with when they came.
    waiting: Vec<(String, Instant, Job)>,
}

impl Devices {
    /// Takes out the waiting commands past [`UNKNOWN_WAIT`] (or past [`UNKNOWN_MAX`]).
    fn expired(&mut self) -> Vec<Job> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].1.elapsed() > UNKNOWN_WAIT || self.waiting.len() > UNKNOWN_MAX {
                out.push(self.waiting.remove(i).2);
            } else {
                i += 1;
            }
        }
        out
    }
}

impl Router {
    /// Registers a device under `wanted`, or, when another device of this bridge has that
    /// segment (two devices with one name) or it is the bridges' own, under `wanted-ADDRESS`
    /// (made a segment): the segment it got.
    pub fn register(&self, wanted: &str, address: &str, jobs: Inbox) -> String {
        let mut all = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let devices = &mut all.known;
        let mut seg = wanted.to_string();
        if seg == BRIDGE_SEGMENT || devices.contains_key(&seg) {
            seg = crate::topic::segment_of(&format!("{wanted}-{address}"));
        }
        let mut n = 2;
        let base = seg.clone();
        while devices.contains_key(&seg) {
            seg = format!("{base}-{n}");
            n += 1;
        }
        // Commands that came before the device's name was known.
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut all.waiting).into_iter().partition(|w| w.0 == seg);
        all.waiting = later;
        for (_, _, job) in now {
            let _ = jobs.send(job);
        }
        all.known.insert(seg.clone(), jobs);
        seg
    }

    /// The commands that waited past [`UNKNOWN_WAIT`] for a device (to be acknowledged).
    pub fn expired(&self) -> Vec<Job> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner()).expired()
    }

    /// Hands `job` to the device with `segment`, or keeps it until a device takes that segment
    /// (up to [`UNKNOWN_WAIT`]). Returns the commands given up on (to be acknowledged).
    pub fn route(&self, segment: &str, job: Job) -> Vec<Job> {
        let mut all = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        match all.known.get(segment) {
            Some(inbox) => {
                if let Err(job) = inbox.send(job) {
                    return vec![job];
                }
            }
            None => all.waiting.push((segment.to_string(), Instant::now(), job)),
        }
        all.expired()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::Waker;
    use std::sync::Arc;

    fn inbox() -> (Inbox, std::sync::mpsc::Receiver<Job>, Arc<Waker>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let waker = Arc::new(Waker::new());
        (Inbox::new(tx, waker.clone()), rx, waker)
    }

    #[test]
    fn two_devices_with_one_name_get_two_segments() {
        let r = Router::default();
        let (tx, _rx, _) = inbox();
        assert_eq!(r.register("sim-001", "127.0.1.1:7070", tx.clone()), "sim-001");
        assert_eq!(
            r.register("sim-001", "127.0.1.2:7070", tx.clone()),
            "sim-001-127_0_1_2_7070"
        );
        assert_eq!(r.register("bridge", "127.0.1.3:7070", tx), "bridge-127_0_1_3_7070");
    }

    #[test]
    fn a_command_for_a_device_not_known_yet_waits_for_it() {
        let r = Router::default();
        let job = Job {
            verb: "exec".into(),
            publish: rumqttc::Publish::new("t", rumqttc::QoS::AtLeastOnce, "{}"),
        };
        assert!(r.route("later", job).is_empty());
        let (tx, rx, waker) = inbox();
        r.register("later", "127.0.0.1:7070", tx);
        assert_eq!(rx.try_recv().map(|j| j.verb).ok().as_deref(), Some("exec"));
        // The device thread was told.
        if cfg!(unix) {
            assert_eq!(waker.wait(None, Duration::ZERO), crate::wake::Woke::Woken);
        }
    }
}
