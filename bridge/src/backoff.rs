//! Reconnect pauses: exponential with full jitter (AWS's "full jitter"), so that a broker that
//! comes back is not hit by every bridge of a site in the same millisecond, and a device that
//! is off costs a connection attempt every few seconds at most. rumqttc reconnects at once on
//! its next poll and has no back-off of its own (rumqtt#703); this is it.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Pauses that double from `first` up to `cap`, each drawn uniformly between half of the
/// current step and the step.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    /// A back-off from `first` up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap: cap.max(first),
            step: first,
        }
    }

    /// The next pause.
    pub fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        // Half fixed, half random: never zero (a tight loop), never more than the step.
        step / 2 + step.mul_f64(random_unit() / 2.0)
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

/// A number in [0, 1) that differs from call to call and from process to process. Jitter needs
/// no cryptographic randomness: std's per-process random hash keys, fed a counter and the time.
fn random_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_with_jitter_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let pauses: Vec<Duration> = (0..8).map(|_| b.next_pause()).collect();
        assert!(pauses[0] >= ms(50) && pauses[0] <= ms(100), "{pauses:?}");
        assert!(pauses[7] >= ms(500) && pauses[7] <= ms(1000), "{pauses:?}");
        let distinct: std::collections::HashSet<_> = pauses[4..].iter().collect();
        assert!(distinct.len() > 1, "jitter: {pauses:?}");
        b.reset();
        assert!(b.next_pause() <= ms(100));
    }
}
