//! What a fleet's view shows of the autoscaler and the rollout (the
//! `scaling` part of `GET /admin/title_regions/{tr}/fleets/{fleet_id}`, and
//! what the fleet metrics read).

use respawn_actors::autoscale::{decide, ScaleInput};
use respawn_state::ClusterState;
use respawn_types::scaling::ScalingDecision;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A rolling update's progress: live processes of the current version and
/// of older ones (idle old ones are replaced at once, busy ones finish first).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RolloutView {
    /// The version new processes launch with.
    pub version: u64,
    pub current_version_processes: u32,
    pub older_version_processes: u32,
    /// Older-version processes still holding sessions.
    pub older_busy: u32,
    /// No older-version process is left.
    pub done: bool,
}

/// What the autoscaler wants of a fleet, and what it last did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScalingView {
    /// `fill` (every host runs processes_per_host) or `autoscaled`.
    pub policy: String,
    /// Processes the fleet should run now.
    pub desired_processes: u32,
    /// Hosts needed for them: desired processes ÷ processes_per_host, rounded up.
    pub desired_hosts: u32,
    /// Why, as the autoscaler would decide now.
    pub reason: String,
    /// Set by an operator (`PUT .../desired`), overriding the buffer.
    pub manual_desired: Option<u32>,
    /// The last decision the autoscaler committed (targets changed or processes stopped).
    pub last_decision: Option<ScalingDecision>,
    /// Decisions committed so far.
    pub decisions: u64,
    /// Process targets per host (empty: processes_per_host each).
    pub host_targets: BTreeMap<String, u32>,
    /// Live processes by fleet version, then by state.
    pub processes_by_version: BTreeMap<u64, BTreeMap<String, u32>>,
    pub rollout: RolloutView,
}

/// The scaling part of fleet `f`'s view.
pub fn scaling_view(
    s: &ClusterState,
    f: &Fleet,
    status_name: impl Fn(ProcessStatus) -> String,
) -> ScalingView {
    let rec = s.scaling.get(&f.id).cloned().unwrap_or_default();
    let now = now_millis();
    let plan = ScaleInput::of(s, &f.id, |_| true, now).map(|i| decide(&i));
    let mut by_version: BTreeMap<u64, BTreeMap<String, u32>> = BTreeMap::new();
    let mut rollout = RolloutView {
        version: f.version,
        ..Default::default()
    };
    for p in s.live_processes(&f.id) {
        *by_version
            .entry(p.fleet_version)
            .or_default()
            .entry(status_name(p.status))
            .or_insert(0) += 1;
        if p.fleet_version == f.version {
            rollout.current_version_processes += 1;
        } else {
            rollout.older_version_processes += 1;
            if p.sessions_current > 0 {
                rollout.older_busy += 1;
            }
        }
    }
    rollout.done = rollout.older_version_processes == 0;
    let autoscaled = f.scaling.is_autoscaled() || rec.manual_desired.is_some();
    ScalingView {
        policy: if autoscaled { "autoscaled" } else { "fill" }.into(),
        desired_processes: plan.as_ref().map_or(0, |p| p.decision.desired_processes),
        desired_hosts: plan.as_ref().map_or(0, |p| p.decision.desired_hosts),
        reason: plan.map(|p| p.decision.reason).unwrap_or_default(),
        manual_desired: rec.manual_desired,
        last_decision: rec.last,
        decisions: rec.decisions,
        host_targets: rec
            .targets
            .iter()
            .map(|(h, t)| (h.to_string(), *t))
            .collect(),
        processes_by_version: by_version,
        rollout,
    }
}
