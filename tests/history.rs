//! A history of what outside observers saw during a (fault) test, and a
//! pure, deterministic checker of the design's invariants over it.
//!
//! Tests [`History::record`] an [`Observation`] each time a backend, a
//! (simulated) DS process or an event subscriber sees something, read a
//! [`FinalState`] from the cluster once it has converged, and assert that
//! [`check`] finds no [`Violation`]:
//!
//! ```ignore
//! let h = History::new();
//! // … from many tasks: h.record(Observation::PlacementAccepted { .. }); …
//! let fin = cluster.read(|s| FinalState::from_state(s, true));
//! let v = check(&h.snapshot(), &fin);
//! assert!(v.is_empty(), "{}", summary(&v));
//! ```
//!
//! Invariants checked (DESIGN.md "Invariants" 1 and 3, and what they imply):
//!
//! 1. every accepted placement ends in exactly one terminal state, and no
//!    observer sees it change terminal state or go back to PENDING;
//! 2. a DS process never holds more sessions than its mode allows;
//! 3. no battle session is activated on two processes;
//! 4. a FULFILLED placement's battle session was activated by a DS
//!    (only when [`FinalState::agents_observed`]);
//! 5. placement-finished events arrive at least once and their ids
//!    de-duplicate (one id, one placement and status).

use respawn_state::ClusterState;
use respawn_types::{BattleSessionId, PlacementId, PlacementStatus, ProcessId, ServerMode};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One thing an outside observer saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A backend's StartBattleSessionPlacement was answered 200 (accepted).
    PlacementAccepted {
        placement: PlacementId,
        battle_session: BattleSessionId,
    },
    /// StartBattleSessionPlacement got an error or no answer (it may or may
    /// not have been accepted). Not counted as accepted.
    PlacementIndeterminate { battle_session: BattleSessionId },
    /// A Describe answered this status for the placement.
    PlacementStatusSeen {
        placement: PlacementId,
        status: PlacementStatus,
    },
    /// A (simulated) DS process received OnStartBattleSession.
    SessionDelivered {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// A DS process's ActivateBattleSession was answered OK.
    SessionActivated {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// A battle session certainly ended on a process: the DS received
    /// OnTerminateBattleSession, or its TerminateBattleSession was answered
    /// OK. Frees a slot in parallel mode (a process's sessions also end with
    /// [`Observation::ProcessEnded`]). Record it only when certain.
    SessionEnded {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// A DS process ended (ProcessEnding or exit).
    ProcessEnded { process: ProcessId },
    /// A placement-finished event was delivered to a subscriber (with its
    /// de-duplication id).
    EventDelivered {
        placement: PlacementId,
        status: PlacementStatus,
        event_id: String,
    },
}

/// A recorded observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the history (0, 1, 2, … in recording order).
    pub seq: u64,
    /// When the observed operation started (time since the history was
    /// created); equal to `at` for [`History::record`].
    pub invoked: Duration,
    /// When it was recorded (time since the history was created); monotonic
    /// in `seq`.
    pub at: Duration,
    pub obs: Observation,
}

/// A thread-safe, append-only history. Cheap to clone (clones share it).
#[derive(Clone, Debug)]
pub struct History {
    start: Instant,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            start: Instant::now(),
            entries: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The history's clock: time since it was created. Take it before an
    /// operation and pass it to [`History::record_since`].
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records an observation that happened now.
    pub fn record(&self, o: Observation) {
        self.push(None, o);
    }

    /// Records the result of an operation started at `invoked` (from
    /// [`History::now`]). Only matters for reads (Describe): a PENDING read
    /// is a regression only if it started after a terminal read ended, so
    /// concurrent reads recorded out of order are not flagged.
    pub fn record_since(&self, invoked: Duration, o: Observation) {
        self.push(Some(invoked), o);
    }

    fn push(&self, invoked: Option<Duration>, obs: Observation) {
        let mut v = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // The clock is read under the lock, so `at` is monotonic in `seq`.
        let at = self.start.elapsed();
        let invoked = invoked.map_or(at, |i| i.min(at));
        let seq = v.len() as u64;
        v.push(Entry {
            seq,
            invoked,
            at,
            obs,
        });
    }

    /// A copy of all entries so far, in `seq` order.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
}

impl Default for FinalState {
    fn default() -> Self {
        FinalState {
            placements: BTreeMap::new(),
            process_modes: BTreeMap::new(),
            default_mode: ServerMode::Simple,
            agents_observed: false,
        }
    }
}

impl FinalState {
    /// Reads the placements and each process's mode (its fleet's) from the
    /// replicated state, e.g. `cluster.read(|s| FinalState::from_state(s, true))`.
    ///
    /// Every terminal placement of the state must then have its event
    /// delivered if the history has any event: when the subscriber sees only
    /// part of the state, filter `placements` to that part.
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
        }
    }

    fn mode(&self, p: &ProcessId) -> ServerMode {
        self.process_modes
            .get(p)
            .copied()
            .unwrap_or(self.default_mode)
    }
}

/// Where a placement status was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seen {
    /// In the history entry with this `seq` (a Describe or an event).
    Entry(u64),
    /// In the final state.
    Final,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Entry(s) => write!(f, "#{s}"),
            Seen::Final => f.write_str("final state"),
        }
    }
}

/// A placement status and where it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub status: PlacementStatus,
    pub seen: Seen,
}

impl fmt::Display for Sighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", status_name(self.status), self.seen)
    }
}

/// A broken invariant, with the ids and history positions (`seq`) involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// (1) An accepted placement is not terminal in the final state
    /// (`final_status` PENDING, or `None`: missing).
    NotTerminal {
        placement: PlacementId,
        accepted_seq: u64,
        final_status: Option<PlacementStatus>,
    },
    /// (1) An accepted placement's battle session is another one in the
    /// final state (`other_seq: None`) or in another acceptance.
    SessionMismatch {
        placement: PlacementId,
        accepted: BattleSessionId,
        accepted_seq: u64,
        other: BattleSessionId,
        other_seq: Option<u64>,
    },
    /// (1) Two different terminal statuses were seen for one placement.
    ConflictingTerminal {
        placement: PlacementId,
        first: Sighting,
        second: Sighting,
    },
    /// (1) PENDING was seen (by a read started after) a terminal status was seen.
    TerminalRegressed {
        placement: PlacementId,
        terminal: Sighting,
        pending: Seen,
    },
    /// (2) A simple-mode process got more than one battle session in its
    /// lifetime (each with the `seq` of its first delivery or activation).
    SimpleModeReused {
        process: ProcessId,
        sessions: Vec<(BattleSessionId, u64)>,
    },
    /// (2) A parallel-mode process held more activated, not ended sessions
    /// than `max_sessions` after entry `seq`.
    ParallelOverCapacity {
        process: ProcessId,
        max_sessions: u32,
        held: Vec<BattleSessionId>,
        seq: u64,
    },
    /// (3) A battle session was activated on two processes.
    ActiveOnTwoProcesses {
        battle_session: BattleSessionId,
        first: (ProcessId, u64),
        second: (ProcessId, u64),
    },
    /// (4) A placement was seen FULFILLED but no DS activated its session.
    FulfilledNotActivated {
        placement: PlacementId,
        battle_session: BattleSessionId,
        seen: Seen,
    },
    /// (5) Events were delivered, but none for this terminal placement with
    /// its final status.
    EventMissing {
        placement: PlacementId,
        status: PlacementStatus,
    },
    /// (5) One event id carried two different (placement, status) pairs.
    EventIdConflict {
        event_id: String,
        first: (PlacementId, PlacementStatus, u64),
        second: (PlacementId, PlacementStatus, u64),
    },
    /// (5) A placement-finished event carried PENDING.
    EventNotTerminal {
        placement: PlacementId,
        event_id: String,
        seq: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        match self {
            NotTerminal {
                placement,
                accepted_seq,
                final_status,
            } => write!(
                f,
                "placement {placement} accepted at #{accepted_seq} is {} in the final state",
                final_status.map_or("missing", status_name)
            ),
            SessionMismatch {
                placement,
                accepted,
                accepted_seq,
                other,
                other_seq,
            } => write!(
                f,
                "placement {placement} accepted at #{accepted_seq} for {accepted} has battle session {other} in {}",
                other_seq.map_or(Seen::Final, Seen::Entry)
            ),
            ConflictingTerminal {
                placement,
                first,
                second,
            } => write!(
                f,
                "placement {placement} seen {first} then {second}"
            ),
            TerminalRegressed {
                placement,
                terminal,
                pending,
            } => write!(
                f,
                "placement {placement} seen {terminal}, then PENDING at {pending}"
            ),
            SimpleModeReused { process, sessions } => {
                write!(f, "simple-mode process {process} got sessions")?;
                for (bs, seq) in sessions {
                    write!(f, " {bs} (#{seq})")?;
                }
                Ok(())
            }
            ParallelOverCapacity {
                process,
                max_sessions,
                held,
                seq,
            } => {
                write!(
                    f,
                    "parallel process {process} (max {max_sessions}) held {} sessions after #{seq}:",
                    held.len()
                )?;
                for bs in held {
                    write!(f, " {bs}")?;
                }
                Ok(())
            }
            ActiveOnTwoProcesses {
                battle_session,
                first,
                second,
            } => write!(
                f,
                "battle session {battle_session} activated on {} (#{}) and on {} (#{})",
                first.0, first.1, second.0, second.1
            ),
            FulfilledNotActivated {
                placement,
                battle_session,
                seen,
            } => write!(
                f,
                "placement {placement} FULFILLED at {seen} but its battle session {battle_session} was never activated"
            ),
            EventMissing { placement, status } => write!(
                f,
                "no event delivered for placement {placement} {}",
                status_name(*status)
            ),
            EventIdConflict {
                event_id,
                first,
                second,
            } => write!(
                f,
                "event id {event_id:?} carried {} {} (#{}) and {} {} (#{})",
                first.0,
                status_name(first.1),
                first.2,
                second.0,
                status_name(second.1),
                second.2
            ),
            EventNotTerminal {
                placement,
                event_id,
                seq,
            } => write!(
                f,
                "event {event_id:?} at #{seq} says placement {placement} finished PENDING"
            ),
        }
    }
}

/// The status as PGOS spells it.
pub fn status_name(s: PlacementStatus) -> &'static str {
    match s {
        PlacementStatus::Pending => "PENDING",
        PlacementStatus::Fulfilled => "FULFILLED",
        PlacementStatus::Cancelled => "CANCELLED",
        PlacementStatus::TimedOut => "TIMED_OUT",
        PlacementStatus::Failed => "FAILED",
    }
}

/// One line per violation, for assertion messages.
pub fn summary(v: &[Violation]) -> String {
    if v.is_empty() {
        return "no violations".to_string();
    }
    let mut s = format!("{} violation(s):", v.len());
    for x in v {
        s.push_str("\n  - ");
        s.push_str(&x.to_string());
    }
    s
}

/// Checks every invariant over `history` (any order: entries are taken in
/// `seq` order) and the final state. Deterministic: the same input gives the
/// same violations in the same order.
pub fn check(history: &[Entry], final_state: &FinalState) -> Vec<Violation> {
    let mut h: Vec<&Entry> = history.iter().collect();
    h.sort_by_key(|e| e.seq);
    let mut out = Vec::new();
    check_placements(&h, final_state, &mut out);
    check_processes(&h, final_state, &mut out);
    check_activations(&h, &mut out);
    if final_state.agents_observed {
        check_fulfilled_activated(&h, final_state, &mut out);
    }
    check_events(&h, final_state, &mut out);
    out
}

/// Invariant 1.
fn check_placements(h: &[&Entry], fin: &FinalState, out: &mut Vec<Violation>) {
    // Accepted placements: first acceptance, and any acceptance for another session.
    let mut accepted: BTreeMap<&PlacementId, (&BattleSessionId, u64)> = BTreeMap::new();
    for e in h {
        if let Observation::PlacementAccepted {
            placement,
            battle_session,
        } = &e.obs
        {
            match accepted.get(placement) {
                None => {
                    accepted.insert(placement, (battle_session, e.seq));
                }
                Some((bs, seq)) if *bs != battle_session => {
                    out.push(Violation::SessionMismatch {
                        placement: placement.clone(),
                        accepted: (*bs).clone(),
                        accepted_seq: *seq,
                        other: battle_session.clone(),
                        other_seq: Some(e.seq),
                    });
                }
                Some(_) => {}
            }
        }
    }
    for (pl, (bs, seq)) in &accepted {
        match fin.placements.get(*pl) {
            Some((status, _)) if status.is_terminal() => {}
            other => out.push(Violation::NotTerminal {
                placement: (*pl).clone(),
                accepted_seq: *seq,
                final_status: other.map(|(s, _)| *s),
            }),
        }
        if let Some((_, fbs)) = fin.placements.get(*pl) {
            if fbs != *bs {
                out.push(Violation::SessionMismatch {
                    placement: (*pl).clone(),
                    accepted: (*bs).clone(),
                    accepted_seq: *seq,
                    other: fbs.clone(),
                    other_seq: None,
                });
            }
        }
    }

    // Status sightings per placement: (status, seen, invoked, at).
    type Sight = (PlacementStatus, Seen, Duration, Duration);
    let mut sights: BTreeMap<&PlacementId, Vec<Sight>> = BTreeMap::new();
    for e in h {
        match &e.obs {
            Observation::PlacementStatusSeen { placement, status } => {
                sights.entry(placement).or_default().push((
                    *status,
                    Seen::Entry(e.seq),
                    e.invoked,
                    e.at,
                ));
            }
            Observation::EventDelivered {
                placement, status, ..
            } if status.is_terminal() => {
                sights.entry(placement).or_default().push((
                    *status,
                    Seen::Entry(e.seq),
                    e.invoked,
                    e.at,
                ));
            }
            _ => {}
        }
    }
    for (pl, (status, _)) in &fin.placements {
        sights
            .entry(pl)
            .or_default()
            .push((*status, Seen::Final, Duration::MAX, Duration::MAX));
    }
    for (pl, v) in &sights {
        // Exactly one terminal status.
        let terminals: Vec<&Sight> = v.iter().filter(|s| s.0.is_terminal()).collect();
        if let Some(first) = terminals.first() {
            if let Some(second) = terminals.iter().find(|s| s.0 != first.0) {
                out.push(Violation::ConflictingTerminal {
                    placement: (*pl).clone(),
                    first: Sighting {
                        status: first.0,
                        seen: first.1,
                    },
                    second: Sighting {
                        status: second.0,
                        seen: second.1,
                    },
                });
            }
        }
        // Never PENDING once terminal: the earliest-completed terminal
        // sighting against each PENDING read that started after it.
        if let Some(t) = terminals.iter().min_by_key(|s| (s.3, s.1)) {
            // Ties (same clock reading) go by recording order.
            if let Some(p) = v
                .iter()
                .find(|s| s.0 == PlacementStatus::Pending && (s.2, s.1) > (t.3, t.1))
            {
                out.push(Violation::TerminalRegressed {
                    placement: (*pl).clone(),
                    terminal: Sighting {
                        status: t.0,
                        seen: t.1,
                    },
                    pending: p.1,
                });
            }
        }
    }
}

/// Invariant 2.
fn check_processes(h: &[&Entry], fin: &FinalState, out: &mut Vec<Violation>) {
    #[derive(Default)]
    struct P<'a> {
        /// Distinct sessions ever delivered or activated, with first seq.
        lifetime: Vec<(&'a BattleSessionId, u64)>,
        /// Activated and not ended.
        held: BTreeSet<&'a BattleSessionId>,
        ended: bool,
        over: bool,
    }
    let mut procs: BTreeMap<&ProcessId, P> = BTreeMap::new();
    for e in h {
        match &e.obs {
            Observation::SessionDelivered {
                process,
                battle_session,
            } => {
                let p = procs.entry(process).or_default();
                if !p.lifetime.iter().any(|(b, _)| *b == battle_session) {
                    p.lifetime.push((battle_session, e.seq));
                }
            }
            Observation::SessionActivated {
                process,
                battle_session,
            } => {
                let p = procs.entry(process).or_default();
                if !p.lifetime.iter().any(|(b, _)| *b == battle_session) {
                    p.lifetime.push((battle_session, e.seq));
                }
                if p.ended {
                    // Recorded after the end (observers race): the session
                    // ended with the process, it holds no slot.
                    continue;
                }
                p.held.insert(battle_session);
                if let ServerMode::Parallel { max_sessions } = fin.mode(process) {
                    if !p.over && p.held.len() > max_sessions as usize {
                        p.over = true;
                        out.push(Violation::ParallelOverCapacity {
                            process: process.clone(),
                            max_sessions,
                            held: p.held.iter().map(|b| (*b).clone()).collect(),
                            seq: e.seq,
                        });
                    }
                }
            }
            Observation::SessionEnded {
                process,
                battle_session,
            } => {
                procs
                    .entry(process)
                    .or_default()
                    .held
                    .remove(battle_session);
            }
            Observation::ProcessEnded { process } => {
                let p = procs.entry(process).or_default();
                p.ended = true;
                p.held.clear();
            }
            _ => {}
        }
    }
    for (id, p) in &procs {
        if fin.mode(id) == ServerMode::Simple && p.lifetime.len() > 1 {
            out.push(Violation::SimpleModeReused {
                process: (*id).clone(),
                sessions: p.lifetime.iter().map(|(b, s)| ((*b).clone(), *s)).collect(),
            });
        }
    }
}

/// Invariant 3.
fn check_activations(h: &[&Entry], out: &mut Vec<Violation>) {
    let mut first: BTreeMap<&BattleSessionId, (&ProcessId, u64)> = BTreeMap::new();
    let mut reported: BTreeSet<&BattleSessionId> = BTreeSet::new();
    for e in h {
        if let Observation::SessionActivated {
            process,
            battle_session,
        } = &e.obs
        {
            match first.get(battle_session) {
                None => {
                    first.insert(battle_session, (process, e.seq));
                }
                Some((p, seq)) if *p != process && reported.insert(battle_session) => {
                    out.push(Violation::ActiveOnTwoProcesses {
                        battle_session: battle_session.clone(),
                        first: ((*p).clone(), *seq),
                        second: (process.clone(), e.seq),
                    });
                }
                Some(_) => {}
            }
        }
    }
}

/// Invariant 4.
fn check_fulfilled_activated(h: &[&Entry], fin: &FinalState, out: &mut Vec<Violation>) {
    let activated: BTreeSet<&BattleSessionId> = h
        .iter()
        .filter_map(|e| match &e.obs {
            Observation::SessionActivated { battle_session, .. } => Some(battle_session),
            _ => None,
        })
        .collect();
    // A placement's battle session: the final state's, else its acceptance's.
    let mut session_of: BTreeMap<&PlacementId, &BattleSessionId> = BTreeMap::new();
    for e in h {
        if let Observation::PlacementAccepted {
            placement,
            battle_session,
        } = &e.obs
        {
            session_of.entry(placement).or_insert(battle_session);
        }
    }
    for (pl, (_, bs)) in &fin.placements {
        session_of.insert(pl, bs);
    }
    // First FULFILLED sighting per placement.
    let mut fulfilled: BTreeMap<&PlacementId, Seen> = BTreeMap::new();
    for e in h {
        match &e.obs {
            Observation::PlacementStatusSeen {
                placement,
                status: PlacementStatus::Fulfilled,
            }
            | Observation::EventDelivered {
                placement,
                status: PlacementStatus::Fulfilled,
                ..
            } => {
                fulfilled.entry(placement).or_insert(Seen::Entry(e.seq));
            }
            _ => {}
        }
    }
    for (pl, (status, _)) in &fin.placements {
        if *status == PlacementStatus::Fulfilled {
            fulfilled.entry(pl).or_insert(Seen::Final);
        }
    }
    for (pl, seen) in fulfilled {
        let Some(bs) = session_of.get(pl) else {
            continue; // unknown session: nothing to match against
        };
        if !activated.contains(*bs) {
            out.push(Violation::FulfilledNotActivated {
                placement: pl.clone(),
                battle_session: (*bs).clone(),
                seen,
            });
        }
    }
}

/// Invariant 5.
fn check_events(h: &[&Entry], fin: &FinalState, out: &mut Vec<Violation>) {
    let mut by_id: BTreeMap<&str, (&PlacementId, PlacementStatus, u64)> = BTreeMap::new();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    // (placement, status name): PlacementStatus is not Ord.
    let mut delivered: BTreeSet<(&PlacementId, &str)> = BTreeSet::new();
    let mut any = false;
    for e in h {
        if let Observation::EventDelivered {
            placement,
            status,
            event_id,
        } = &e.obs
        {
            any = true;
            delivered.insert((placement, status_name(*status)));
            if !status.is_terminal() {
                out.push(Violation::EventNotTerminal {
                    placement: placement.clone(),
                    event_id: event_id.clone(),
                    seq: e.seq,
                });
            }
            match by_id.get(event_id.as_str()) {
                None => {
                    by_id.insert(event_id, (placement, *status, e.seq));
                }
                Some((p, s, seq))
                    if (*p != placement || *s != *status) && reported.insert(event_id) =>
                {
                    out.push(Violation::EventIdConflict {
                        event_id: event_id.clone(),
                        first: ((*p).clone(), *s, *seq),
                        second: (placement.clone(), *status, e.seq),
                    });
                }
                Some(_) => {}
            }
        }
    }
    if !any {
        return;
    }
    for (pl, (status, _)) in &fin.placements {
        if status.is_terminal() && !delivered.contains(&(pl, status_name(*status))) {
            out.push(Violation::EventMissing {
                placement: pl.clone(),
                status: *status,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use PlacementStatus::*;

    fn pl(s: &str) -> PlacementId {
        PlacementId::new_unchecked(s)
    }
    fn bs(s: &str) -> BattleSessionId {
        BattleSessionId::new_unchecked(s)
    }
    fn pr(s: &str) -> ProcessId {
        ProcessId::new_unchecked(s)
    }

    fn accepted(p: &str, b: &str) -> Observation {
        Observation::PlacementAccepted {
            placement: pl(p),
            battle_session: bs(b),
        }
    }
    fn seen(p: &str, s: PlacementStatus) -> Observation {
        Observation::PlacementStatusSeen {
            placement: pl(p),
            status: s,
        }
    }
    fn delivered(p: &str, b: &str) -> Observation {
        Observation::SessionDelivered {
            process: pr(p),
            battle_session: bs(b),
        }
    }
    fn activated(p: &str, b: &str) -> Observation {
        Observation::SessionActivated {
            process: pr(p),
            battle_session: bs(b),
        }
    }
    fn session_ended(p: &str, b: &str) -> Observation {
        Observation::SessionEnded {
            process: pr(p),
            battle_session: bs(b),
        }
    }
    fn ended(p: &str) -> Observation {
        Observation::ProcessEnded { process: pr(p) }
    }
    fn event(p: &str, s: PlacementStatus, id: &str) -> Observation {
        Observation::EventDelivered {
            placement: pl(p),
            status: s,
            event_id: id.to_string(),
        }
    }

    fn history(obs: Vec<Observation>) -> Vec<Entry> {
        let h = History::new();
        for o in obs {
            h.record(o);
        }
        h.snapshot()
    }

    fn fin(placements: &[(&str, PlacementStatus, &str)]) -> FinalState {
        FinalState {
            placements: placements
                .iter()
                .map(|(p, s, b)| (pl(p), (*s, bs(b))))
                .collect(),
            agents_observed: true,
            ..FinalState::default()
        }
    }

    /// A clean run: two placements on a simple process and one on a parallel
    /// process, one cancelled, events (one twice, same id).
    fn clean() -> (Vec<Observation>, FinalState) {
        let obs = vec![
            accepted("pl-1", "bs-1"),
            accepted("pl-2", "bs-2"),
            Observation::PlacementIndeterminate {
                battle_session: bs("bs-3"),
            },
            accepted("pl-4", "bs-4"),
            seen("pl-1", Pending),
            delivered("proc-a", "bs-1"),
            activated("proc-a", "bs-1"),
            seen("pl-1", Fulfilled),
            event("pl-1", Fulfilled, "ev-1"),
            event("pl-1", Fulfilled, "ev-1"),
            delivered("proc-b", "bs-2"),
            activated("proc-b", "bs-2"),
            delivered("proc-b", "bs-3"),
            activated("proc-b", "bs-3"),
            event("pl-2", Fulfilled, "ev-2"),
            event("pl-3", Fulfilled, "ev-3"),
            seen("pl-4", Pending),
            event("pl-4", Cancelled, "ev-4"),
            seen("pl-4", Cancelled),
            session_ended("proc-b", "bs-2"),
            ended("proc-a"),
            seen("pl-1", Fulfilled),
        ];
        let mut f = fin(&[
            ("pl-1", Fulfilled, "bs-1"),
            ("pl-2", Fulfilled, "bs-2"),
            ("pl-3", Fulfilled, "bs-3"),
            ("pl-4", Cancelled, "bs-4"),
        ]);
        f.process_modes
            .insert(pr("proc-b"), ServerMode::Parallel { max_sessions: 2 });
        (obs, f)
    }

    fn only(v: &[Violation], pred: impl Fn(&Violation) -> bool) {
        assert_eq!(v.len(), 1, "{}", summary(v));
        assert!(pred(&v[0]), "{}", summary(v));
    }

    #[test]
    fn clean_history_passes() {
        let (obs, f) = clean();
        let v = check(&history(obs), &f);
        assert!(v.is_empty(), "{}", summary(&v));
        assert_eq!(summary(&v), "no violations");
    }

    #[test]
    fn indeterminate_may_be_missing() {
        let (obs, mut f) = clean();
        f.placements.remove(&pl("pl-3"));
        let obs: Vec<_> = obs
            .into_iter()
            .filter(|o| {
                !matches!(o, Observation::EventDelivered { placement, .. } if placement.as_str() == "pl-3")
            })
            .collect();
        let v = check(&history(obs), &f);
        assert!(v.is_empty(), "{}", summary(&v));
    }

    #[test]
    fn accepted_but_pending_or_missing() {
        let (mut obs, mut f) = clean();
        obs.push(accepted("pl-5", "bs-5"));
        f.placements.insert(pl("pl-5"), (Pending, bs("bs-5")));
        let v = check(&history(obs.clone()), &f);
        only(
            &v,
            |x| matches!(x, Violation::NotTerminal { placement, final_status: Some(Pending), .. } if placement.as_str() == "pl-5"),
        );
        f.placements.remove(&pl("pl-5"));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(
                x,
                Violation::NotTerminal {
                    final_status: None,
                    accepted_seq: 22,
                    ..
                }
            )
        });
    }

    #[test]
    fn accepted_session_differs_in_final_state() {
        let (obs, mut f) = clean();
        f.placements.insert(pl("pl-4"), (Cancelled, bs("bs-9")));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(
                x,
                Violation::SessionMismatch {
                    other_seq: None,
                    accepted_seq: 3,
                    ..
                }
            )
        });
    }

    #[test]
    fn two_terminal_states() {
        let (mut obs, f) = clean();
        obs.push(seen("pl-4", TimedOut));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(x, Violation::ConflictingTerminal { placement, first, second }
                if placement.as_str() == "pl-4"
                && first.status == Cancelled && first.seen == Seen::Entry(17)
                && second.status == TimedOut && second.seen == Seen::Entry(22))
        });
    }

    #[test]
    fn terminal_back_to_pending() {
        let (mut obs, f) = clean();
        obs.push(seen("pl-1", Pending));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(x, Violation::TerminalRegressed { terminal, pending: Seen::Entry(22), .. }
                if terminal.status == Fulfilled && terminal.seen == Seen::Entry(7))
        });
    }

    #[test]
    fn concurrent_stale_read_is_not_a_regression() {
        // A PENDING read started before the FULFILLED read completed, but was
        // recorded after it: not a regression.
        let (obs, f) = clean();
        let h = History::new();
        let t = h.now();
        for o in obs {
            h.record(o);
        }
        h.record_since(t, seen("pl-1", Pending));
        let v = check(&h.snapshot(), &f);
        assert!(v.is_empty(), "{}", summary(&v));
        // The same read started afterwards is one.
        h.record(seen("pl-1", Pending));
        let v = check(&h.snapshot(), &f);
        only(&v, |x| matches!(x, Violation::TerminalRegressed { .. }));
    }

    #[test]
    fn simple_process_gets_two_sessions() {
        let (mut obs, mut f) = clean();
        obs.push(accepted("pl-5", "bs-5"));
        obs.push(delivered("proc-a", "bs-5"));
        f.placements.insert(pl("pl-5"), (TimedOut, bs("bs-5")));
        obs.push(event("pl-5", TimedOut, "ev-5"));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(x, Violation::SimpleModeReused { process, sessions }
                if process.as_str() == "proc-a"
                && sessions == &vec![(bs("bs-1"), 5), (bs("bs-5"), 23)])
        });
    }

    #[test]
    fn parallel_process_over_capacity() {
        let (mut obs, mut f) = clean();
        // proc-b holds bs-3 (bs-2 ended); max 2: bs-5 fits, bs-6 does not.
        for (i, n) in ["5", "6"].iter().enumerate() {
            obs.push(accepted(&format!("pl-{n}"), &format!("bs-{n}")));
            obs.push(delivered("proc-b", &format!("bs-{n}")));
            obs.push(activated("proc-b", &format!("bs-{n}")));
            obs.push(event(&format!("pl-{n}"), Fulfilled, &format!("ev-{n}")));
            f.placements
                .insert(pl(&format!("pl-{n}")), (Fulfilled, bs(&format!("bs-{n}"))));
            let v = check(&history(obs.clone()), &f);
            if i == 0 {
                assert!(v.is_empty(), "{}", summary(&v));
            } else {
                only(&v, |x| {
                    matches!(x, Violation::ParallelOverCapacity { max_sessions: 2, held, seq: 28, .. }
                        if held == &vec![bs("bs-3"), bs("bs-5"), bs("bs-6")])
                });
            }
        }
        // Once the process ended, its slots are free (the violation stays).
        obs.push(ended("proc-b"));
        let v = check(&history(obs), &f);
        assert_eq!(v.len(), 1, "{}", summary(&v));
    }

    #[test]
    fn session_activated_on_two_processes() {
        let (mut obs, f) = clean();
        obs.push(activated("proc-c", "bs-1"));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(x, Violation::ActiveOnTwoProcesses { battle_session, first, second }
                if battle_session.as_str() == "bs-1"
                && first == &(pr("proc-a"), 6) && second == &(pr("proc-c"), 22))
        });
    }

    #[test]
    fn fulfilled_without_activation() {
        let (obs, mut f) = clean();
        // Drop the DS's activation of bs-2.
        let obs: Vec<_> = obs
            .into_iter()
            .filter(|o| *o != activated("proc-b", "bs-2"))
            .collect();
        let v = check(&history(obs.clone()), &f);
        only(&v, |x| {
            matches!(x, Violation::FulfilledNotActivated { placement, seen: Seen::Entry(13), .. }
                if placement.as_str() == "pl-2")
        });
        // Not checked without agent observations.
        f.agents_observed = false;
        let v = check(&history(obs), &f);
        assert!(v.is_empty(), "{}", summary(&v));
    }

    #[test]
    fn missing_event() {
        let (obs, f) = clean();
        let obs: Vec<_> = obs
            .into_iter()
            .filter(|o| *o != event("pl-4", Cancelled, "ev-4"))
            .collect();
        let v = check(&history(obs.clone()), &f);
        only(&v, |x| {
            matches!(x, Violation::EventMissing { placement, status: Cancelled }
                if placement.as_str() == "pl-4")
        });
        // No events at all: not checked.
        let obs: Vec<_> = obs
            .into_iter()
            .filter(|o| !matches!(o, Observation::EventDelivered { .. }))
            .collect();
        let v = check(&history(obs), &f);
        assert!(v.is_empty(), "{}", summary(&v));
    }

    #[test]
    fn event_id_reused() {
        let (mut obs, f) = clean();
        obs.push(event("pl-2", Fulfilled, "ev-1"));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(x, Violation::EventIdConflict { event_id, first, second }
                if event_id == "ev-1" && first.2 == 8 && second.0.as_str() == "pl-2" && second.2 == 22)
        });
    }

    #[test]
    fn pending_event() {
        let (mut obs, f) = clean();
        obs.push(event("pl-1", Pending, "ev-x"));
        let v = check(&history(obs), &f);
        only(&v, |x| {
            matches!(x, Violation::EventNotTerminal { seq: 22, .. })
        });
    }

    #[test]
    fn summary_lists_each_violation() {
        let (mut obs, f) = clean();
        obs.push(activated("proc-c", "bs-1"));
        obs.push(seen("pl-1", Pending));
        let v = check(&history(obs), &f);
        let s = summary(&v);
        assert!(s.starts_with("2 violation(s):"), "{s}");
        assert!(
            s.contains("bs-1 activated on proc-a (#6) and on proc-c (#22)"),
            "{s}"
        );
        assert!(
            s.contains("pl-1 seen FULFILLED at #7, then PENDING at #23"),
            "{s}"
        );
    }

    #[test]
    fn from_state_reads_placements_and_modes() {
        let s = ClusterState::default();
        let f = FinalState::from_state(&s, true);
        assert!(f.placements.is_empty() && f.agents_observed);
    }

    // ----- a random but valid run -----

    struct SimProc {
        id: ProcessId,
        mode: ServerMode,
        lifetime: u32,
        /// Assigned (activating or active) sessions.
        current: BTreeSet<usize>,
        alive: bool,
    }

    struct SimPl {
        id: PlacementId,
        bs: BattleSessionId,
        status: PlacementStatus,
        /// Process index while assigned.
        on: Option<usize>,
        activated: bool,
        attempts: u32,
        /// Known to the backend (accepted): it may Describe it.
        known: bool,
        ended: bool,
    }

    struct Sim {
        rng: StdRng,
        h: History,
        procs: Vec<SimProc>,
        pls: Vec<SimPl>,
    }

    impl Sim {
        fn spawn(&mut self) {
            let n = self.procs.len();
            let mode = if self.rng.gen_bool(0.5) {
                ServerMode::Simple
            } else {
                ServerMode::Parallel {
                    max_sessions: self.rng.gen_range(1..4),
                }
            };
            self.procs.push(SimProc {
                id: pr(&format!("proc-{n}")),
                mode,
                lifetime: 0,
                current: BTreeSet::new(),
                alive: true,
            });
        }

        fn finish(&mut self, i: usize, status: PlacementStatus) {
            self.pls[i].status = status;
            let o = event(self.pls[i].id.as_str(), status, &format!("ev-{i}"));
            self.h.record(o.clone());
            if self.rng.gen_bool(0.2) {
                self.h.record(o); // redelivered, same id
            }
        }

        fn end_process(&mut self, p: usize) {
            self.procs[p].alive = false;
            self.h.record(Observation::ProcessEnded {
                process: self.procs[p].id.clone(),
            });
            for i in std::mem::take(&mut self.procs[p].current) {
                let pl = &mut self.pls[i];
                pl.on = None;
                if pl.status == Pending {
                    pl.attempts += 1;
                }
                if pl.activated {
                    pl.ended = true;
                }
            }
            self.spawn();
        }

        /// Takes a pending assigned session off its process.
        fn withdraw(&mut self, i: usize) {
            let Some(p) = self.pls[i].on.take() else {
                return;
            };
            self.procs[p].current.remove(&i);
            self.pls[i].attempts += 1;
            if self.procs[p].mode == ServerMode::Simple {
                self.end_process(p);
            }
        }

        fn pick(&mut self, f: impl Fn(&SimPl) -> bool) -> Option<usize> {
            let c: Vec<usize> = (0..self.pls.len()).filter(|&i| f(&self.pls[i])).collect();
            (!c.is_empty()).then(|| c[self.rng.gen_range(0..c.len())])
        }

        fn step(&mut self) {
            match self.rng.gen_range(0..10) {
                0 | 1 => {
                    let n = self.pls.len();
                    let (id, b) = (pl(&format!("pl-{n}")), bs(&format!("bs-{n}")));
                    let known = self.rng.gen_bool(0.85);
                    if known {
                        self.h.record(Observation::PlacementAccepted {
                            placement: id.clone(),
                            battle_session: b.clone(),
                        });
                    } else {
                        self.h.record(Observation::PlacementIndeterminate {
                            battle_session: b.clone(),
                        });
                        if self.rng.gen_bool(0.5) {
                            return; // never reached the cluster
                        }
                    }
                    self.pls.push(SimPl {
                        id,
                        bs: b,
                        status: Pending,
                        on: None,
                        activated: false,
                        attempts: 0,
                        known,
                        ended: false,
                    });
                }
                2 => {
                    // Assign a waiting placement to a process that admits it.
                    let Some(i) = self.pick(|p| p.status == Pending && p.on.is_none()) else {
                        return;
                    };
                    let free: Vec<usize> = (0..self.procs.len())
                        .filter(|&j| {
                            let p = &self.procs[j];
                            p.alive && p.mode.admits(p.lifetime, p.current.len() as u32)
                        })
                        .collect();
                    if free.is_empty() {
                        return;
                    }
                    let p = free[self.rng.gen_range(0..free.len())];
                    self.procs[p].lifetime += 1;
                    self.procs[p].current.insert(i);
                    self.pls[i].on = Some(p);
                    self.h.record(Observation::SessionDelivered {
                        process: self.procs[p].id.clone(),
                        battle_session: self.pls[i].bs.clone(),
                    });
                }
                3 | 4 => {
                    let Some(i) = self.pick(|p| p.status == Pending && p.on.is_some()) else {
                        return;
                    };
                    let p = self.pls[i].on.unwrap_or_default();
                    self.pls[i].activated = true;
                    self.h.record(Observation::SessionActivated {
                        process: self.procs[p].id.clone(),
                        battle_session: self.pls[i].bs.clone(),
                    });
                    self.finish(i, Fulfilled);
                }
                5 => {
                    // Activation timeout: try another process, or FAIL.
                    let Some(i) = self.pick(|p| p.status == Pending && p.on.is_some()) else {
                        return;
                    };
                    self.withdraw(i);
                    if self.pls[i].attempts >= 3 {
                        self.finish(i, Failed);
                    }
                }
                6 => {
                    // Cancel or placement timeout.
                    let Some(i) = self.pick(|p| p.status == Pending) else {
                        return;
                    };
                    self.withdraw(i);
                    let s = if self.rng.gen_bool(0.5) {
                        Cancelled
                    } else {
                        TimedOut
                    };
                    self.finish(i, s);
                }
                7 => {
                    // An active session ends.
                    let Some(i) = self.pick(|p| p.activated && !p.ended && p.on.is_some()) else {
                        return;
                    };
                    let p = self.pls[i].on.unwrap_or_default();
                    if self.procs[p].mode == ServerMode::Simple {
                        self.end_process(p);
                    } else {
                        self.procs[p].current.remove(&i);
                        self.pls[i].on = None;
                        self.pls[i].ended = true;
                        self.h.record(Observation::SessionEnded {
                            process: self.procs[p].id.clone(),
                            battle_session: self.pls[i].bs.clone(),
                        });
                    }
                }
                8 => {
                    // A process crashes or is killed.
                    let alive: Vec<usize> = (0..self.procs.len())
                        .filter(|&j| self.procs[j].alive)
                        .collect();
                    if self.rng.gen_bool(0.3) && !alive.is_empty() {
                        let p = alive[self.rng.gen_range(0..alive.len())];
                        self.end_process(p);
                        // Its PENDING sessions that ran out of attempts FAIL.
                        for i in 0..self.pls.len() {
                            if self.pls[i].status == Pending
                                && self.pls[i].on.is_none()
                                && self.pls[i].attempts >= 3
                            {
                                self.finish(i, Failed);
                            }
                        }
                    }
                }
                _ => {
                    // Describe, sometimes concurrent with the next change.
                    let Some(i) = self.pick(|p| p.known) else {
                        return;
                    };
                    let t = self.h.now();
                    let s = self.pls[i].status;
                    self.h.record_since(t, seen(self.pls[i].id.as_str(), s));
                }
            }
        }

        fn run(seed: u64, steps: usize) -> (Vec<Entry>, FinalState) {
            let mut s = Sim {
                rng: StdRng::seed_from_u64(seed),
                h: History::new(),
                procs: Vec::new(),
                pls: Vec::new(),
            };
            for _ in 0..4 {
                s.spawn();
            }
            for _ in 0..steps {
                s.step();
            }
            // Converge: whatever is still PENDING times out.
            for i in 0..s.pls.len() {
                if s.pls[i].status == Pending {
                    s.withdraw(i);
                    s.finish(i, TimedOut);
                }
            }
            let f = FinalState {
                placements: s
                    .pls
                    .iter()
                    .map(|p| (p.id.clone(), (p.status, p.bs.clone())))
                    .collect(),
                process_modes: s.procs.iter().map(|p| (p.id.clone(), p.mode)).collect(),
                default_mode: ServerMode::Simple,
                agents_observed: true,
            };
            (s.h.snapshot(), f)
        }
    }

    #[test]
    fn random_valid_runs_pass() {
        // Over all seeds, the runs must exercise every kind of observation
        // and every terminal status, or passing proves little.
        let mut kinds = BTreeSet::new();
        for seed in 0..64 {
            let (h, f) = Sim::run(seed, 400);
            for e in &h {
                let k = format!("{:?}", e.obs);
                kinds.insert(k.split([' ', '{']).next().unwrap_or("").to_string());
                if let Observation::PlacementStatusSeen { status, .. }
                | Observation::EventDelivered { status, .. } = &e.obs
                {
                    kinds.insert(status_name(*status).to_string());
                }
            }
            assert!(
                h.iter()
                    .any(|e| matches!(e.obs, Observation::SessionActivated { .. })),
                "seed {seed}: a run should activate something"
            );
            let v = check(&h, &f);
            assert!(v.is_empty(), "seed {seed}: {}", summary(&v));
            // Deterministic.
            assert_eq!(check(&h, &f), v);
        }
        let want = [
            "PlacementAccepted",
            "PlacementIndeterminate",
            "PlacementStatusSeen",
            "SessionDelivered",
            "SessionActivated",
            "SessionEnded",
            "ProcessEnded",
            "EventDelivered",
            "PENDING",
            "FULFILLED",
            "CANCELLED",
            "TIMED_OUT",
            "FAILED",
        ];
        for k in want {
            assert!(kinds.contains(k), "no {k} in any run: {kinds:?}");
        }
    }

    #[test]
    fn random_runs_with_an_injected_fault_fail() {
        for seed in 0..16 {
            let (mut h, f) = Sim::run(seed, 400);
            let Some(b) = h.iter().find_map(|e| match &e.obs {
                Observation::SessionActivated { battle_session, .. } => {
                    Some(battle_session.clone())
                }
                _ => None,
            }) else {
                continue;
            };
            let last = h.last().map_or(Duration::ZERO, |e| e.at);
            h.push(Entry {
                seq: h.len() as u64,
                invoked: last,
                at: last,
                obs: Observation::SessionActivated {
                    process: pr("proc-intruder"),
                    battle_session: b,
                },
            });
            let v = check(&h, &f);
            only(&v, |x| matches!(x, Violation::ActiveOnTwoProcesses { .. }));
        }
    }
}
