//! Which device thread a command topic's `{device}` segment goes to.

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::Mutex;

use crate::device::Job;
use crate::topic::BRIDGE_SEGMENT;

/// Devices by segment.
#[derive(Debug, Default)]
pub struct Router {
    devices: Mutex<HashMap<String, Sender<Job>>>,
}

impl Router {
    /// Registers a device under `wanted`, or, when another device of this bridge has that
    /// segment (two devices with one name) or it is the bridges' own, under `wanted-ADDRESS`
    /// (made a segment): the segment it got.
    pub fn register(&self, wanted: &str, address: &str, jobs: Sender<Job>) -> String {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
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
        devices.insert(seg.clone(), jobs);
        seg
    }

    /// Hands `job` to the device with `segment`; gives it back when there is none.
    pub fn route(&self, segment: &str, job: Job) -> Result<(), Job> {
        let devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        match devices.get(segment) {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_devices_with_one_name_get_two_segments() {
        let r = Router::default();
        let (tx, _rx) = std::sync::mpsc::channel();
        assert_eq!(r.register("sim-001", "127.0.1.1:7070", tx.clone()), "sim-001");
        assert_eq!(r.register("sim-001", "127.0.1.2:7070", tx.clone()), "sim-001-127_0_1_2_7070");
        assert_eq!(r.register("bridge", "127.0.1.3:7070", tx), "bridge-127_0_1_3_7070");
    }
}
