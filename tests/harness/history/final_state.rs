//! What a test reads from the cluster at the end, for the checker.

use respawn_state::{ClusterState, PrunedWatermarks};
use respawn_types::{BattleSessionId, PlacementId, PlacementStatus, ProcessId, ServerMode};
use std::collections::BTreeMap;

/// What the test reads from the cluster at the end (from any node, after
/// convergence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalState {
    /// Every placement the cluster knows: its status and battle session.
    pub placements: BTreeMap<PlacementId, (PlacementStatus, BattleSessionId)>,
    /// Each process's mode; processes not listed have `default_mode`.
    pub process_modes: BTreeMap<ProcessId, ServerMode>,
    pub default_mode: ServerMode,
    /// The history holds the DS processes' observations (deliveries,
    /// activations), so a FULFILLED placement must show an activation.
    pub agents_observed: bool,
    /// A subscriber (a virtual server's handler of the placement events)
    /// was registered before the first placement and its deliveries were
    /// recorded, so every placement of `placements` that ended with an
    /// event must show it delivered. Without it, delivered events are
    /// still checked for consistency, but none is required.
    pub events_subscribed: bool,
    /// What retention removed: a placement missing from `placements` that
    /// these cover was pruned after it ended, not lost.
    pub pruned: PrunedWatermarks,
    /// The scenario has no reason to stop a busy process (no faults, no
    /// forced delete, every DS activates): the cluster only stops idle
    /// ones (scale-in, rollouts, drains), so a termination asked of a
    /// process holding a session breaks invariant 2 of the design.
    pub no_busy_stops: bool,
}

impl Default for FinalState {
    fn default() -> Self {
        FinalState {
            placements: BTreeMap::new(),
            process_modes: BTreeMap::new(),
            default_mode: ServerMode::Simple,
            agents_observed: false,
            events_subscribed: false,
            pruned: PrunedWatermarks::default(),
            no_busy_stops: false,
        }
    }
}

impl FinalState {
    /// Reads the placements and each process's mode (its fleet's) from the
    /// replicated state, e.g. `cluster.read(|s| FinalState::from_state(s, true))`.
    ///
    /// Events are not required; see [`FinalState::with_events`].
    pub fn from_state(s: &ClusterState, agents_observed: bool) -> Self {
        FinalState {
            placements: s
                .placements
                .iter()
                .map(|(id, p)| (id.clone(), (p.status, p.battle_session_id.clone())))
                .collect(),
            process_modes: s
                .processes
                .iter()
                .filter_map(|(id, p)| Some((id.clone(), s.fleets.get(&p.fleet_id)?.mode)))
                .collect(),
            default_mode: ServerMode::Simple,
            agents_observed,
            events_subscribed: false,
            pruned: s.pruned,
            no_busy_stops: false,
        }
    }

    /// Requires that no process holding a session is asked to terminate
    /// (see [`FinalState::no_busy_stops`]).
    pub fn with_no_busy_stops(mut self) -> Self {
        self.no_busy_stops = true;
        self
    }

    /// Requires the placement events: the history recorded every delivery
    /// of a subscriber registered for all of `placements` (filter
    /// `placements` to what it saw otherwise).
    pub fn with_events(mut self) -> Self {
        self.events_subscribed = true;
        self
    }

    /// Was this placement removed by retention (absent, and covered by the
    /// watermark)? Retention removes only placements that ended.
    pub fn was_pruned(&self, p: &PlacementId) -> bool {
        !self.placements.contains_key(p) && self.pruned.placement(p)
    }

    pub(super) fn mode(&self, p: &ProcessId) -> ServerMode {
        self.process_modes
            .get(p)
            .copied()
            .unwrap_or(self.default_mode)
    }
}
