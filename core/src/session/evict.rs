//! Which session gives way when every session is taken and another peer is waiting.
//!
//! The policy (`docs/PROTOCOL.md` §13, eviction) is built so that peers without the device's key
//! cannot turn it against key holders:
//! - a session whose peer has proven the key never gives way to a waiting peer, who has proven
//!   nothing yet;
//! - a session whose peer has not proven the key gives way at once, the oldest first — so a flood
//!   of keyless connections cycles through the sessions, and a key holder's fresh connection
//!   lives until several newer ones have arrived, far longer than its handshake takes;
//! - among those, one the device has not answered a handshake on goes before one it has: a key
//!   holder past its message 1 outlives any number of silent or chattering connections;
//! - on a device without a key, where every peer is alike, the session idle longest gives way,
//!   provided it has been idle for a minimum.

/// How readily a session gives way to a waiting peer: the greatest rank goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// 2: keyed, no handshake answered; 1: keyed, answered but not proven; 0: open device.
    class: u8,
    /// Within a class: milliseconds since the session opened (keyed) or since it was last active
    /// (open device).
    ms: u64,
}

impl Rank {
    /// A session on a keyed device whose peer has not proven the key, opened `age_ms` ago;
    /// `answered` once the device has answered its message 1.
    pub fn unproven(answered: bool, age_ms: u64) -> Rank {
        Rank {
            class: if answered { 1 } else { 2 },
            ms: age_ms,
        }
    }

    /// A session on a device without a key, idle for `idle_ms`: it gives way only once that is at
    /// least `min_idle_ms`.
    pub fn idle(idle_ms: u64, min_idle_ms: u64) -> Option<Rank> {
        (idle_ms >= min_idle_ms).then_some(Rank { class: 0, ms: idle_ms })
    }
}

/// Picks the session to evict for a waiting peer among `(index, rank)` of the sessions that may
/// give way: the highest rank, ties to the lowest index so the choice is deterministic. `None`
/// when no session may give way.
pub fn pick_eviction(sessions: impl IntoIterator<Item = (usize, Rank)>) -> Option<usize> {
    sessions
        .into_iter()
        .max_by_key(|&(i, rank)| (rank, core::cmp::Reverse(i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::{pick_eviction, Rank};

    fn idle(pairs: &[(usize, u64)], min: u64) -> Option<usize> {
        pick_eviction(pairs.iter().filter_map(|&(i, ms)| Rank::idle(ms, min).map(|r| (i, r))))
    }

    #[test]
    fn open_device_longest_idle_past_the_minimum() {
        assert_eq!(idle(&[(0, 100), (1, 5_000), (2, 3_000)], 2_000), Some(1));
        assert_eq!(idle(&[(0, 100), (1, 1_999)], 2_000), None);
        assert_eq!(idle(&[], 0), None);
        // Ties go to the lowest index, so the choice is deterministic.
        assert_eq!(idle(&[(3, 2_000), (1, 2_000)], 2_000), Some(1));
    }

    #[test]
    fn unproven_sessions_go_oldest_first_and_unanswered_before_answered() {
        let young_unanswered = (0, Rank::unproven(false, 1));
        let old_answered = (1, Rank::unproven(true, 4_000));
        let old_unanswered = (2, Rank::unproven(false, 3_000));
        assert_eq!(pick_eviction([young_unanswered, old_answered, old_unanswered]), Some(2));
        assert_eq!(pick_eviction([young_unanswered, old_answered]), Some(0));
        assert_eq!(
            pick_eviction([(0, Rank::unproven(true, 10)), (1, Rank::unproven(true, 20))]),
            Some(1)
        );
        // No minimum: an unproven session gives way at once.
        assert_eq!(pick_eviction([(5, Rank::unproven(false, 0))]), Some(5));
    }
}
