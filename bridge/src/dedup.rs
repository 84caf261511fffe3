//! The commands a device already ran, by correlation id: a command delivered twice (QoS 1 is
//! "at least once": a broker resends what it saw no acknowledgement for, and a client retries
//! after a lost reply) runs once, and the repeat gets the first answer again.

use std::collections::{HashMap, VecDeque};

/// How many answers one device keeps. Bounded, so a long-running bridge does not grow; a repeat
/// older than this many commands runs again (docs/BRIDGE.md says so).
pub const KEEP: usize = 1024;

/// Answers by correlation id, the oldest forgotten first.
#[derive(Debug, Default)]
pub struct Dedup {
    answers: HashMap<String, (String, Vec<u8>)>,
    order: VecDeque<String>,
}

impl Dedup {
    /// The answer given to `id` (its reply topic and payload), if it ran.
    pub fn answered(&self, id: &str) -> Option<&(String, Vec<u8>)> {
        self.answers.get(id)
    }

    /// Records the answer to `id`.
    pub fn record(&mut self, id: &str, reply_topic: &str, payload: &[u8]) {
        if self
            .answers
            .insert(id.to_string(), (reply_topic.to_string(), payload.to_vec()))
            .is_none()
        {
            self.order.push_back(id.to_string());
        }
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
            }
        }
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_answers_only() {
        let mut d = Dedup::default();
        for i in 0..KEEP + 10 {
            d.record(&i.to_string(), "r", b"x");
        }
        assert_eq!(d.len(), KEEP);
        assert!(d.answered("0").is_none() && d.answered("9").is_none());
        assert_eq!(
            d.answered(&(KEEP + 9).to_string()).map(|a| a.1.as_slice()),
            Some(&b"x"[..])
        );
        d.record("10", "r", b"y");
        assert_eq!(d.len(), KEEP, "a repeat is not a new entry");
    }
}
