//! Which running instance of a virtual server gets a call: one pure rule
//! shared by the server's edge and the agent's local endpoints.

/// Picks among running instances, given as `(instance, requests in flight)`
/// in a stable order: the one with the fewest requests in flight; among
/// equals, the first at or after position `start`, else the first before it
/// (so a caller that knows no load spreads calls with a random `start`).
/// `None` when there is no candidate.
pub fn pick_instance<T>(candidates: impl IntoIterator<Item = (T, u32)>, start: usize) -> Option<T> {
    let mut best: Option<((u32, bool, usize), T)> = None;
    for (i, (instance, load)) in candidates.into_iter().enumerate() {
        // Positions before `start` come after every position from it on.
        let key = (load, i < start, i);
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, instance));
        }
    }
    best.map(|(_, instance)| instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_instance_gets_the_call() {
        assert_eq!(pick_instance([("a", 3), ("b", 1), ("c", 2)], 0), Some("b"));
        assert_eq!(pick_instance(Vec::<(&str, u32)>::new(), 0), None);
    }

    #[test]
    fn among_equals_the_first_from_start_round_the_list() {
        let equal = [("a", 0), ("b", 0), ("c", 0)];
        assert_eq!(pick_instance(equal, 0), Some("a"));
        assert_eq!(pick_instance(equal, 1), Some("b"));
        assert_eq!(pick_instance(equal, 2), Some("c"));
        // A start past the end wraps to the first.
        assert_eq!(pick_instance(equal, 3), Some("a"));
        // Load still wins over position.
        assert_eq!(pick_instance([("a", 0), ("b", 1), ("c", 1)], 1), Some("a"));
        assert_eq!(pick_instance([("a", 1), ("b", 1), ("c", 0)], 1), Some("c"));
    }
}
