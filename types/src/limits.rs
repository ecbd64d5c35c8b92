//! Bounds on fleet settings and battle sessions, defined once: the
//! replicated state (`respawn-state`) enforces them on every command, and the
//! configuration, the HTTP edge and the agent check the same constants before
//! a command is ever proposed.

/// Fleet settings must lie within these bounds (milliseconds).
pub const ACTIVATION_TIMEOUT_RANGE: (u64, u64) = (1_000, 600_000);
pub const HEALTH_INTERVAL_RANGE: (u64, u64) = (1_000, 60_000);
pub const PLACEMENT_TIMEOUT_RANGE: (u64, u64) = (1_000, 3_600_000);
pub const ENDING_GRACE_RANGE: (u64, u64) = (1_000, 3_600_000);
/// Most DS processes one host may be asked to run.
pub const MAX_PROCESSES_PER_HOST: u32 = 1_024;
/// Most DS processes one fleet may run, all hosts together.
pub const MAX_FLEET_PROCESSES: u32 = 100_000;
/// Most players one battle session may hold.
pub const MAX_PLAYERS_LIMIT: u32 = 1_000;
/// Most bytes of opaque player data one player battle session may carry.
pub const MAX_PLAYER_DATA_BYTES: usize = 4_096;
/// Longest reason, detail or response text kept in replicated state; longer
/// text is clipped (with an ellipsis).
pub const TEXT_LIMIT: usize = 1_024;

/// A millisecond range in whole seconds, for the configuration file and the
/// HTTP API, which speak seconds.
pub const fn in_secs((lo, hi): (u64, u64)) -> (u64, u64) {
    (lo / 1_000, hi / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_ranges_are_the_millisecond_ranges() {
        assert_eq!(in_secs(PLACEMENT_TIMEOUT_RANGE), (1, 3_600));
        assert_eq!(in_secs(ACTIVATION_TIMEOUT_RANGE), (1, 600));
        assert_eq!(in_secs(HEALTH_INTERVAL_RANGE), (1, 60));
        assert_eq!(in_secs(ENDING_GRACE_RANGE), (1, 3_600));
    }
}
