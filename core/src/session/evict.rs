//! Which session gives way when every session is taken and another peer is waiting.

/// Picks the session to evict for a waiting peer: among `(index, idle_ms)` of the open sessions,
/// the one idle longest, provided it has been idle for at least `min_idle_ms`. `None` when every
/// session is busy enough to keep.
///
/// Idle means no byte moved in either direction, so a session that is downloading or uploading
/// is never chosen, while one whose peer sits silent — or whose command waits — is.
pub fn pick_eviction(sessions: impl IntoIterator<Item = (usize, u64)>, min_idle_ms: u64) -> Option<usize> {
    sessions
        .into_iter()
        .filter(|&(_, idle)| idle >= min_idle_ms)
        .max_by_key(|&(i, idle)| (idle, core::cmp::Reverse(i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::pick_eviction;

    #[test]
    fn longest_idle_past_the_minimum() {
        assert_eq!(pick_eviction([(0, 100), (1, 5_000), (2, 3_000)], 2_000), Some(1));
        assert_eq!(pick_eviction([(0, 100), (1, 1_999)], 2_000), None);
        assert_eq!(pick_eviction([], 0), None);
        // Ties go to the lowest index, so the choice is deterministic.
        assert_eq!(pick_eviction([(3, 2_000), (1, 2_000)], 2_000), Some(1));
    }
}
