//! Which session gives way when every session is taken and another peer is waiting.
//!
//! The policy (`docs/PROTOCOL.md` §13, eviction) is built so that peers without the device's key
//! cannot turn it against key holders:
//! - a session whose peer has proven the key never gives way to a waiting peer, who has proven
//!   nothing yet;
//! - a session whose peer has not proven the key gives way at once, the oldest first — so a flood
//!   of keyless connections cycles through the sessions, and a key holder's fresh connection
//!   lives until several newer ones have arrived, far longer than its handshake takes;
//! - among those, one that has sent something other than a handshake (a `Hello`, garbage) goes
//!   first, then one that has sent nothing whole yet, then one the device has answered a handshake
//!   on, and that one only after a grace to send its first sealed frame: a key holder, whose first
//!   bytes are its message 1, outlives connections that cannot be one, and once answered it
//!   outlives any number of silent or chattering connections;
//! - but a waiting peer whose first bytes are a message 1 that proves the key and that the device
//!   has not answered lately does not wait out that grace: the session answered longest ago gives
//!   way to it at once. Without the key no one can write such a message 1; replaying one the
//!   device has forgotten is all an attacker can do, and that now only trades places with other
//!   answered sessions, where it held one for the grace and so, with a few dozen recordings,
//!   every session a key holder could get;
//! - on a device without a key, where every peer is alike, the session idle longest gives way,
//!   provided it has been idle for a minimum.

/// What a peer waiting for a session has shown of itself (on a device with a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newcomer {
    /// Nothing that proves the key (yet): only unproven sessions past their grace give way.
    Unproven,
    /// A message 1 that proves the key and that the device has not answered lately: a session
    /// answered but unproven gives way to it whatever its grace.
    FreshMessage1,
}

/// How readily a session gives way to a waiting peer: the greatest rank goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// On a keyed device, 3: no handshake, something else sent; 2: nothing whole sent yet;
    /// 1: handshake answered, not proven. 0: open device.
    class: u8,
    /// Within a class: milliseconds since the session opened (keyed) or since it was last active
    /// (open device).
    ms: u64,
}

impl Rank {
    /// A session on a keyed device that has not been answered a handshake, opened `age_ms` ago;
    /// `spoke` once its peer has sent a frame that is not a handshake, or garbage.
    pub fn locked(spoke: bool, age_ms: u64) -> Rank {
        Rank {
            class: if spoke { 3 } else { 2 },
            ms: age_ms,
        }
    }

    /// A session on a keyed device whose handshake the device answered `since_ms` ago but whose
    /// peer has not proven the key yet: it gives way only once that is at least `grace_ms`, the
    /// time its peer has to send its first sealed frame. (The device refuses a message 1 it
    /// answered lately, so such a session is a key holder's, or costs an attacker a recorded
    /// message 1 the device has forgotten.)
    pub fn answered(since_ms: u64, grace_ms: u64) -> Option<Rank> {
        (since_ms >= grace_ms).then_some(Rank { class: 1, ms: since_ms })
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
    fn unproven_sessions_go_oldest_first_chatty_then_silent_then_answered() {
        let young_silent = (0, Rank::locked(false, 1));
        let old_answered = (1, Rank::answered(4_000, 1_000).unwrap());
        let old_silent = (2, Rank::locked(false, 3_000));
        let young_chatty = (3, Rank::locked(true, 2));
        assert_eq!(
            pick_eviction([young_silent, old_answered, old_silent, young_chatty]),
            Some(3)
        );
        assert_eq!(pick_eviction([young_silent, old_answered, old_silent]), Some(2));
        assert_eq!(pick_eviction([young_silent, old_answered]), Some(0));
        // An answered session has a grace to send its first sealed frame; then the oldest goes.
        assert_eq!(Rank::answered(999, 1_000), None);
        let answered = |i, since| (i, Rank::answered(since, 1_000).unwrap());
        assert_eq!(pick_eviction([answered(0, 1_000), answered(1, 2_000)]), Some(1));
        // No minimum: an unproven session gives way at once.
        assert_eq!(pick_eviction([(5, Rank::locked(false, 0))]), Some(5));
    }
}
