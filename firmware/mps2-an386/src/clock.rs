//! smoltcp's clock from the LAN9118's free-running 25 MHz counter.

use smoltcp::time::Instant;

use crate::lan9118::Lan9118;

/// Counter ticks per microsecond.
const TICKS_PER_US: u64 = 25;

/// Extends the 32-bit counter (it wraps every 171.8 s) to 64 bits; read it at least once per
/// wrap, which the 1 kHz wake-up guarantees.
pub struct Clock {
    last: u32,
    ticks: u64,
}

impl Clock {
    /// A clock reading zero now.
    pub fn new(nic: &Lan9118) -> Self {
        Clock {
            last: nic.free_run(),
            ticks: 0,
        }
    }

    /// Time since [`Clock::new`].
    pub fn now(&mut self, nic: &Lan9118) -> Instant {
        let raw = nic.free_run();
        self.ticks += u64::from(raw.wrapping_sub(self.last));
        self.last = raw;
        Instant::from_micros((self.ticks / TICKS_PER_US) as i64)
    }
}
