//! The checker: a pure, deterministic pass over a history and the final
//! state that reports every broken invariant.

use super::final_state::FinalState;
use super::record::{Entry, Observation};
use super::violation::{status_name, Seen, Sighting, Violation};
use respawn_types::{BattleSessionId, PlacementId, PlacementStatus, ProcessId, ServerMode};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Checks every invariant over `history` (any order: entries are taken in
/// `seq` order) and the final state. Deterministic: the same input gives the
/// same violations in the same order.
pub fn check(history: &[Entry], final_state: &FinalState) -> Vec<Violation> {
    let mut h: Vec<&Entry> = history.iter().collect();
    h.sort_by_key(|e| e.seq);
    let mut out = Vec::new();
    check_refusals(&h, &mut out);
    check_placements(&h, final_state, &mut out);
    check_processes(&h, final_state, &mut out);
    check_activations(&h, &mut out);
    if final_state.agents_observed {
        check_fulfilled_activated(&h, final_state, &mut out);
    }
    check_events(&h, final_state, &mut out);
    out
}

/// A valid placement request is never refused, faults or not.
fn check_refusals(h: &[&Entry], out: &mut Vec<Violation>) {
    for e in h {
        if let Observation::PlacementRefused {
            battle_session,
            status,
            error,
        } = &e.obs
        {
            out.push(Violation::PlacementRefused {
                battle_session: battle_session.clone(),
                status: *status,
                error: error.clone(),
                seq: e.seq,
            });
        }
    }
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
            // Retention removed it after it ended: not lost.
            None if fin.was_pruned(pl) => {}
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

    check_expired(h, fin, out);

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

/// Invariant 1 under retention: once a Describe answered `expired`, the
/// placement is never seen again (no later read, not in the final state).
fn check_expired(h: &[&Entry], fin: &FinalState, out: &mut Vec<Violation>) {
    let mut expired: BTreeMap<&PlacementId, (u64, Duration)> = BTreeMap::new();
    for e in h {
        match &e.obs {
            Observation::PlacementExpiredSeen { placement } => {
                expired.entry(placement).or_insert((e.seq, e.at));
            }
            Observation::PlacementStatusSeen { placement, .. } => {
                if let Some((seq, at)) = expired.get(placement) {
                    // Ties (same clock reading) go by recording order.
                    if (e.invoked, e.seq) > (*at, *seq) {
                        out.push(Violation::SeenAfterExpired {
                            placement: placement.clone(),
                            expired_seq: *seq,
                            seen: Seen::Entry(e.seq),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    for (pl, (seq, _)) in expired {
        if fin.placements.contains_key(pl) {
            out.push(Violation::SeenAfterExpired {
                placement: pl.clone(),
                expired_seq: seq,
                seen: Seen::Final,
            });
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
            // A delivered session holds its slot from then on (ACTIVATING
            // counts toward the limit as ACTIVE does) until it ends.
            Observation::SessionDelivered {
                process,
                battle_session,
            }
            | Observation::SessionActivated {
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
            Observation::TerminateRequested { process } => {
                let p = procs.entry(process).or_default();
                if fin.no_busy_stops && !p.ended && !p.held.is_empty() {
                    out.push(Violation::BusyProcessStopped {
                        process: process.clone(),
                        held: p.held.iter().map(|b| (*b).clone()).collect(),
                        seq: e.seq,
                    });
                }
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

/// The final statuses that have a placement event
/// (`event_battle_session_placement_*`): a cancelled placement has none.
pub const EVENTED: [PlacementStatus; 3] = [
    PlacementStatus::Fulfilled,
    PlacementStatus::TimedOut,
    PlacementStatus::Failed,
];

/// Invariant 5.
fn check_events(h: &[&Entry], fin: &FinalState, out: &mut Vec<Violation>) {
    let mut by_id: BTreeMap<&str, (&PlacementId, PlacementStatus, u64)> = BTreeMap::new();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    // (placement, status name): PlacementStatus is not Ord.
    let mut delivered: BTreeSet<(&PlacementId, &str)> = BTreeSet::new();
    for e in h {
        if let Observation::EventDelivered {
            placement,
            status,
            event_id,
        } = &e.obs
        {
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
    if !fin.events_subscribed {
        return;
    }
    for (pl, (status, _)) in &fin.placements {
        if EVENTED.contains(status) && !delivered.contains(&(pl, status_name(*status))) {
            out.push(Violation::EventMissing {
                placement: pl.clone(),
                status: *status,
            });
        }
    }
}
