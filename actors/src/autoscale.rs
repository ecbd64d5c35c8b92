//! The autoscaler's decision, pure: from what a fleet runs and needs now,
//! how many processes each host should run, which idle processes to stop,
//! and why. No I/O, no clock (the caller passes `now`; the time the fleet
//! first had more capacity than needed is the committed scale-in clock,
//! [`respawn_types::scaling::FleetScaling::surplus_since`]). The fleet actor commits the
//! result ([`respawn_state::Command::Autoscale`]); the agents keep their
//! host's target.
//!
//! The rules:
//! - **fill** (the default policy, nothing set): no target, every host runs
//!   `processes_per_host`, as before autoscaling existed;
//! - otherwise desired processes = the busy ones + enough idle ones for the
//!   waiting placements and the buffer (a count of slots, or a percentage of
//!   the fleet's slots, the larger), at least `min_processes` (and a scheduled
//!   window's min and buffer while it is open), at most `max_processes`; a
//!   manual desired count replaces the buffer rule, still within min/max;
//! - scale-out is immediate, onto the fullest hosts with room first (packed,
//!   like placement); hosts that are draining or have no agent link get none;
//! - scale-in waits until capacity has been above what is needed for
//!   `scale_in_delay_secs`, and only ever stops a process that holds no
//!   session (READY or LAUNCHING with no session: invariant 2 of the design),
//!   emptiest hosts first, older fleet versions first;
//! - rollout: every idle READY process of an older fleet version is stopped
//!   (its host keeps its target, so the agent launches a new-version one);
//!   busy ones finish their sessions first.

use respawn_state::ClusterState;
use respawn_types::scaling::{ScalingAction, ScalingDecision, ScalingPolicy};
use respawn_types::*;
use std::collections::BTreeMap;

/// A process as the autoscaler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcFacts {
    pub id: ProcessId,
    pub host: HostId,
    pub status: ProcessStatus,
    /// ACTIVATING or ACTIVE sessions on it.
    pub sessions: u32,
    pub version: u64,
}

/// A host of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub id: HostId,
    pub draining: bool,
    /// Its agent is linked (only linked hosts get new processes).
    pub connected: bool,
}

/// Everything [`decide`] reads.
#[derive(Clone, Debug)]
pub struct ScaleInput {
    pub policy: ScalingPolicy,
    /// Session slots per process (1 in simple mode).
    pub slots: u32,
    /// A host's capacity: `processes_per_host`.
    pub per_host: u32,
    /// The fleet's current version.
    pub version: u64,
    pub hosts: Vec<HostFacts>,
    /// Its processes that have not exited.
    pub processes: Vec<ProcFacts>,
    /// Placements waiting for a process.
    pub waiting: u32,
    pub manual_desired: Option<u32>,
    /// Targets committed now (empty for a fill fleet).
    pub targets: BTreeMap<HostId, u32>,
    pub now: UnixMillis,
    /// Since when the fleet has had more processes than desired (`None`:
    /// not), as committed.
    pub surplus_since: Option<UnixMillis>,
}

/// What [`decide`] wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePlan {
    /// Per-host targets to commit (empty for the fill policy).
    pub targets: BTreeMap<HostId, u32>,
    /// Idle processes to stop, with the reason given to them.
    pub stop: Vec<(ProcessId, String)>,
    pub decision: ScalingDecision,
    /// The scale-in clock as it should be committed (`None`: no surplus).
    pub surplus_since: Option<UnixMillis>,
}

impl ScalePlan {
    /// Does the plan change anything compared with what is committed?
    pub fn changes(&self, committed: &BTreeMap<HostId, u32>) -> bool {
        !self.stop.is_empty() || &self.targets != committed
    }
}

impl ScaleInput {
    /// The view of fleet `id` in `state`, in one read; `connected` tells
    /// linked hosts.
    pub fn of(
        state: &ClusterState,
        id: &FleetId,
        connected: impl Fn(&HostId) -> bool,
        now: UnixMillis,
    ) -> Option<ScaleInput> {
        let input = ScaleInput::header(state, id, connected, now)?;
        Some(input.with(proc_facts(state, id, None, usize::MAX).0))
    }

    /// What [`ScaleInput::of`] reads except the processes (left empty):
    /// O(hosts + waiting placements), not O(processes). `None` for a
    /// missing or forking fleet. The processes are read with
    /// [`proc_facts`], in chunks, so that no read of the state is long.
    pub fn header(
        state: &ClusterState,
        id: &FleetId,
        connected: impl Fn(&HostId) -> bool,
        now: UnixMillis,
    ) -> Option<ScaleInput> {
        let fleet = state.fleets.get(id)?;
        // Forking mode: the forking parent, not the agent, starts the
        // processes (up to `processes_per_host`), and they run the parent's
        // version; the autoscaler leaves such fleets alone.
        if matches!(fleet.mode, ServerMode::Forking) {
            return None;
        }
        let scaling = state.scaling.get(id);
        let hosts = state
            .hosts
            .values()
            .filter(|h| &h.fleet_id == id)
            .map(|h| HostFacts {
                id: h.id.clone(),
                draining: state.draining_hosts.contains(&h.id),
                connected: connected(&h.id),
            })
            .collect();
        Some(ScaleInput {
            policy: fleet.scaling.clone(),
            slots: match fleet.mode {
                ServerMode::Simple | ServerMode::Forking => 1,
                ServerMode::Parallel { max_sessions } => max_sessions.max(1),
            },
            per_host: fleet.runtime.processes_per_host,
            version: fleet.version,
            hosts,
            processes: Vec::new(),
            waiting: u32::try_from(state.waiting_placements(id).count()).unwrap_or(u32::MAX),
            manual_desired: scaling.and_then(|s| s.manual_desired),
            targets: scaling.map(|s| s.targets.clone()).unwrap_or_default(),
            now,
            surplus_since: scaling.and_then(|s| s.surplus_since),
        })
    }
}

impl ScaleInput {
    /// This input with `processes`.
    pub fn with(mut self, processes: Vec<ProcFacts>) -> ScaleInput {
        self.processes = processes;
        self
    }
}

/// Most processes read by one [`proc_facts`] call of the fleet actor: the
/// state's lock is held for one chunk at a time, so apply never waits for
/// a scan of a large fleet (a 100,000-process fleet is read in 98 short
/// reads instead of one long one).
pub const FACTS_CHUNK: usize = 1024;

/// Up to `max` live processes of fleet `id` after `after` (in id order),
/// and the id to continue after (`None`: the end was reached). Reading a
/// fleet chunk by chunk gives every process that stayed live throughout
/// exactly once; one that changed between two chunks is seen as it was
/// when its chunk was read. That is enough for the autoscaler: `apply`
/// checks again that a process it is asked to stop is idle.
pub fn proc_facts(
    state: &ClusterState,
    id: &FleetId,
    after: Option<&ProcessId>,
    max: usize,
) -> (Vec<ProcFacts>, Option<ProcessId>) {
    use std::ops::Bound;
    let Some(live) = state.live_processes_by_fleet.get(id) else {
        return (Vec::new(), None);
    };
    let lower = match after {
        Some(a) => Bound::Excluded(a),
        None => Bound::Unbounded,
    };
    let mut ids = live.range::<ProcessId, _>((lower, Bound::Unbounded));
    let mut facts = Vec::new();
    let mut last = None;
    for pid in ids.by_ref().take(max) {
        last = Some(pid);
        if let Some(p) = state.processes.get(pid) {
            facts.push(ProcFacts {
                id: p.id.clone(),
                host: p.host_id.clone(),
                status: p.status,
                sessions: p.sessions_current,
                version: p.fleet_version,
            });
        }
    }
    let next = match ids.next() {
        Some(_) => last.cloned(),
        None => None,
    };
    (facts, next)
}

/// A process that still counts as capacity: launching or ready.
fn counts(p: &ProcFacts) -> bool {
    matches!(p.status, ProcessStatus::Launching | ProcessStatus::Ready)
}

/// May it be stopped? Never with a session (invariant 2).
fn idle(p: &ProcFacts) -> bool {
    counts(p) && p.sessions == 0
}

/// The autoscaler's decision for one fleet.
pub fn decide(input: &ScaleInput) -> ScalePlan {
    let draining = |h: &HostId| input.hosts.iter().any(|x| &x.id == h && x.draining);
    // Processes that count, on hosts that are not draining.
    let counted: Vec<&ProcFacts> = input
        .processes
        .iter()
        .filter(|p| counts(p) && !draining(&p.host))
        .collect();
    // Rollout: idle READY processes of an older version go (replaced by the agent).
    let stale: Vec<&ProcFacts> = counted
        .iter()
        .copied()
        .filter(|p| p.version != input.version && p.status == ProcessStatus::Ready && idle(p))
        .collect();
    let rollout_reason = format!("rolling update to fleet version {}", input.version);
    let mut stop: Vec<(ProcessId, String)> = stale
        .iter()
        .map(|p| (p.id.clone(), rollout_reason.clone()))
        .collect();

    let s = input.slots.max(1);
    let per_host = input.per_host.max(1);
    let current = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    let busy: Vec<&&ProcFacts> = counted.iter().filter(|p| p.sessions > 0).collect();
    let busy_n = u32::try_from(busy.len()).unwrap_or(u32::MAX);
    let used: u32 = counted.iter().map(|p| p.sessions.min(s)).sum();
    let free_on_busy: u32 = busy.iter().map(|p| s - p.sessions.min(s)).sum();
    let free: u32 = counted.iter().map(|p| s - p.sessions.min(s)).sum();
    let available = free.saturating_sub(input.waiting);

    let p = &input.policy;
    let windows: Vec<_> = p.schedule.iter().filter(|w| w.is_open(input.now)).collect();
    let min = windows
        .iter()
        .filter_map(|w| w.min_processes)
        .fold(p.min_processes, u32::max)
        .min(p.max_processes);
    let buffer = windows
        .iter()
        .filter_map(|w| w.buffer)
        .fold(p.buffer, u32::max);

    if !p.is_autoscaled() && input.manual_desired.is_none() {
        // Fill: no targets, the agents run processes_per_host each.
        let hosts = input.hosts.iter().filter(|h| !h.draining).count();
        let desired = u32::try_from(hosts)
            .unwrap_or(u32::MAX)
            .saturating_mul(per_host);
        let (action, reason) = if stop.is_empty() {
            (
                ScalingAction::Fill,
                format!("fill policy: every host runs {per_host} process(es)"),
            )
        } else {
            (
                ScalingAction::Rollout,
                format!("{rollout_reason}: {} idle process(es) replaced", stop.len()),
            )
        };
        return ScalePlan {
            targets: BTreeMap::new(),
            decision: record(input, action, desired, per_host, &stop, reason),
            stop,
            surplus_since: None,
        };
    }

    // Desired processes.
    let (want, why) = match input.manual_desired {
        Some(m) => (m, format!("manual desired {m}")),
        None => {
            let needed_free = input.waiting.saturating_add(buffer);
            let mut slots_wanted = used.saturating_add(needed_free);
            if let Some(pct) = p.buffer_percent {
                // Available ≥ pct % of all slots: total ≥ used × 100 / (100 − pct).
                let total = (u64::from(used) + u64::from(input.waiting)) * 100;
                let by_pct = total.div_ceil(u64::from(100 - pct.min(99)));
                slots_wanted = slots_wanted.max(u32::try_from(by_pct).unwrap_or(u32::MAX));
            }
            let extra_slots = slots_wanted
                .saturating_sub(used)
                .saturating_sub(free_on_busy);
            let want = busy_n.saturating_add(extra_slots.div_ceil(s));
            let pct = p
                .buffer_percent
                .map(|x| format!(" ({x}% of the fleet)"))
                .unwrap_or_default();
            (
                want,
                format!(
                    "available {available}, buffer {buffer}{pct}, waiting {}",
                    input.waiting
                ),
            )
        }
    };
    let mut desired = want.max(min).min(p.max_processes);
    let mut limits = String::new();
    if want < min {
        limits = format!(", raised to min {min}");
    } else if want > p.max_processes {
        limits = format!(", capped at max_processes {}", p.max_processes);
    }
    // Busy processes stay whatever the policy says.
    desired = desired.max(busy_n);

    // Per-host counts now.
    let mut live_on: BTreeMap<&HostId, u32> = BTreeMap::new();
    for p in &input.processes {
        if p.status != ProcessStatus::Exited {
            *live_on.entry(&p.host).or_default() += 1;
        }
    }
    let mut targets: BTreeMap<HostId, u32> = BTreeMap::new();
    for h in &input.hosts {
        let n = counted.iter().filter(|p| p.host == h.id).count();
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        targets.insert(h.id.clone(), if h.draining { 0 } else { n.min(per_host) });
    }

    let mut surplus_since = None;
    let (action, reason) = if desired > current {
        // Scale out now: fullest hosts with room first.
        let mut missing = desired - current;
        let mut order: Vec<&HostFacts> = input
            .hosts
            .iter()
            .filter(|h| !h.draining && h.connected)
            .collect();
        order.sort_by_key(|h| {
            (
                std::cmp::Reverse(live_on.get(&h.id).copied().unwrap_or(0)),
                h.id.clone(),
            )
        });
        let mut added = 0;
        for h in order {
            let room = per_host.saturating_sub(live_on.get(&h.id).copied().unwrap_or(0));
            let add = room.min(missing);
            if let Some(t) = targets.get_mut(&h.id) {
                *t += add;
            }
            missing -= add;
            added += add;
            if missing == 0 {
                break;
            }
        }
        let short = if missing > 0 {
            format!("; hosts are full, {missing} more need new hosts")
        } else {
            String::new()
        };
        (
            ScalingAction::ScaleOut,
            format!("{why}{limits}: scale out by {added} to {desired}{short}"),
        )
    } else if desired < current {
        let since = input.surplus_since.unwrap_or(input.now);
        let waited = input.now.saturating_sub(since);
        let delay = p.scale_in_delay_secs.saturating_mul(1000);
        if waited < delay {
            surplus_since = Some(since);
            (
                ScalingAction::Hold,
                format!(
                    "{why}{limits}: {} more than desired {desired}, scale-in after {} s (waited {} s)",
                    current - desired,
                    p.scale_in_delay_secs,
                    waited / 1000
                ),
            )
        } else {
            // Stale processes already going count first: their hosts keep
            // one fewer instead of a replacement.
            let mut n = current - desired;
            for p in stale.iter().take(n as usize) {
                if let Some(t) = targets.get_mut(&p.host) {
                    *t = t.saturating_sub(1);
                }
                n -= 1;
            }
            let chosen = pick_idle(&counted, &stale, n, input.version);
            let n = current - desired;
            for p in chosen {
                if let Some(t) = targets.get_mut(&p.host) {
                    *t = t.saturating_sub(1);
                }
                stop.push((p.id.clone(), format!("scale-in to {desired} processes")));
            }
            (
                ScalingAction::ScaleIn,
                format!("{why}{limits}: scale in by {n} to {desired}"),
            )
        }
    } else {
        (
            ScalingAction::Hold,
            format!("{why}{limits}: {desired} process(es) as desired"),
        )
    };
    let action = if action == ScalingAction::Hold && !stale.is_empty() {
        ScalingAction::Rollout
    } else {
        action
    };
    let reason = if stale.is_empty() {
        reason
    } else {
        format!("{reason}; {rollout_reason}: {} idle replaced", stale.len())
    };
    ScalePlan {
        decision: record(input, action, desired, per_host, &stop, reason),
        targets,
        stop,
        surplus_since,
    }
}

/// Up to `n` idle processes to stop, not already stopped for the rollout:
/// older versions first, then hosts with fewest busy processes (to empty
/// them), READY before LAUNCHING, then by id.
fn pick_idle<'a>(
    counted: &[&'a ProcFacts],
    stale: &[&ProcFacts],
    n: u32,
    version: u64,
) -> Vec<&'a ProcFacts> {
    let busy_on = |h: &HostId| counted.iter().filter(|p| &p.host == h && !idle(p)).count();
    let mut idle_ones: Vec<&ProcFacts> = counted
        .iter()
        .copied()
        .filter(|p| idle(p) && !stale.iter().any(|s| s.id == p.id))
        .collect();
    idle_ones.sort_by_key(|p| {
        (
            p.version == version,
            busy_on(&p.host),
            p.status != ProcessStatus::Ready,
            p.id.clone(),
        )
    });
    idle_ones.truncate(n as usize);
    idle_ones
}

fn record(
    input: &ScaleInput,
    action: ScalingAction,
    desired: u32,
    per_host: u32,
    stop: &[(ProcessId, String)],
    reason: String,
) -> ScalingDecision {
    ScalingDecision {
        at: input.now,
        action,
        desired_processes: desired,
        desired_hosts: desired.div_ceil(per_host.max(1)),
        stopped: u32::try_from(stop.len()).unwrap_or(u32::MAX),
        reason,
    }
}

#[cfg(test)]
mod tests;
