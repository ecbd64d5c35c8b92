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
/// Longest team name of a player in a battle session.
pub const MAX_TEAM_BYTES: usize = 64;
/// Longest reason, detail or response text kept in replicated state; longer
/// text is clipped (with an ellipsis).
pub const TEXT_LIMIT: usize = 1_024;

/// Largest server node id: 2^53 − 1, the largest integer a JSON number
/// carries exactly in every client (JavaScript's `Number.MAX_SAFE_INTEGER`).
/// Ids are 1 to this; the configuration and the admin API refuse others.
pub const MAX_NODE_ID: u64 = (1 << 53) - 1;
/// Bounds of the retention windows (terminal records, unused issued battle
/// session ids), in milliseconds: one second to 30 days.
pub const RETENTION_RANGE_MS: (u64, u64) = (1_000, 30 * 86_400_000);
/// Most ids of one kind one prune command may list.
pub const MAX_PRUNE_BATCH: usize = 2_000;
/// Bounds of the cap on issued, not yet used battle session ids per title region.
pub const ISSUED_IDS_CAP_RANGE: (u32, u32) = (1, 1_000_000);

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
