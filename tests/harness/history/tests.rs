//! Unit tests of the history checker.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use respawn_types::{BattleSessionId, PlacementId, PlacementStatus, ProcessId, ServerMode};
use std::collections::BTreeSet;
use std::time::Duration;
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
        events_subscribed: true,
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
    // proc-b holds bs-3 (bs-2 ended); max 2: bs-5 fits, bs-6 does not,
    // from its delivery on (ACTIVATING holds a slot).
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
                matches!(x, Violation::ParallelOverCapacity { max_sessions: 2, held, seq: 27, .. }
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
    let (obs, mut f) = clean();
    let obs: Vec<_> = obs
        .into_iter()
        .filter(|o| *o != event("pl-2", Fulfilled, "ev-2"))
        .collect();
    let v = check(&history(obs.clone()), &f);
    only(&v, |x| {
        matches!(x, Violation::EventMissing { placement, status: Fulfilled }
            if placement.as_str() == "pl-2")
    });
    // A cancelled placement has no event: none is required.
    let no_cancel: Vec<_> = obs
        .iter()
        .filter(|o| **o != event("pl-4", Cancelled, "ev-4"))
        .cloned()
        .collect();
    let v = check(&history(no_cancel), &f);
    assert_eq!(v.len(), 1, "{}", summary(&v));
    // Without a subscriber, no event is required (and the test says so).
    f.events_subscribed = false;
    let v = check(&history(obs), &f);
    assert!(v.is_empty(), "{}", summary(&v));
}

#[test]
fn refused_placement() {
    let (mut obs, f) = clean();
    obs.push(Observation::PlacementRefused {
        battle_session: Some(bs("bs-9")),
        status: 409,
        error: "conflict".into(),
    });
    let v = check(&history(obs), &f);
    only(&v, |x| {
        matches!(
            x,
            Violation::PlacementRefused {
                status: 409,
                seq: 22,
                ..
            }
        )
    });
    assert!(summary(&v).contains("placement of bs-9 refused at #22: 409 conflict"));
}

#[test]
fn activating_sessions_count_toward_the_parallel_limit() {
    // Two deliveries, neither activated yet, on a process of max 1.
    let (mut obs, mut f) = clean();
    f.process_modes
        .insert(pr("proc-p"), ServerMode::Parallel { max_sessions: 1 });
    obs.push(delivered("proc-p", "bs-7"));
    obs.push(delivered("proc-p", "bs-8"));
    let v = check(&history(obs.clone()), &f);
    only(&v, |x| {
        matches!(
            x,
            Violation::ParallelOverCapacity {
                seq: 23,
                max_sessions: 1,
                ..
            }
        )
    });
    // Ended (revoked) before the next delivery: within the limit.
    obs.insert(23, session_ended("proc-p", "bs-7"));
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

mod faults;
mod sim;

/// Retention: an accepted placement the final state no longer holds is
/// fine when the watermark says it was pruned, lost otherwise; a Describe
/// that answered `expired` is fine, unless the placement shows up again.
#[test]
fn pruned_placements_are_not_lost_and_expired_ones_stay_gone() {
    let id = PlacementId::generate();
    let p = id.as_str();
    let obs = vec![
        accepted(p, "bs-1"),
        delivered("proc-a", "bs-1"),
        activated("proc-a", "bs-1"),
        seen(p, Fulfilled),
        Observation::PlacementExpiredSeen {
            placement: id.clone(),
        },
    ];
    let mut f = fin(&[]);
    f.pruned.placement = id.generated_at().unwrap();
    assert!(f.was_pruned(&id));
    let v = check(&history(obs.clone()), &f);
    assert!(v.is_empty(), "{}", summary(&v));

    // Without the watermark the same final state means it was lost.
    let v = check(&history(obs.clone()), &fin(&[]));
    assert!(
        matches!(
            v[..],
            [Violation::NotTerminal {
                final_status: None,
                ..
            }]
        ),
        "{v:?}"
    );

    // Seen again after it answered expired: by a later read, or in the final state.
    let mut again = obs.clone();
    again.push(seen(p, Fulfilled));
    let v = check(&history(again), &f);
    assert!(
        matches!(
            v[..],
            [Violation::SeenAfterExpired {
                seen: Seen::Entry(5),
                ..
            }]
        ),
        "{v:?}"
    );
    let mut kept = fin(&[(p, Fulfilled, "bs-1")]);
    kept.events_subscribed = false; // this history records no events

    let v = check(&history(obs), &kept);
    assert!(
        matches!(
            v[..],
            [Violation::SeenAfterExpired {
                seen: Seen::Final,
                ..
            }]
        ),
        "{v:?}"
    );
}

#[test]
fn stopping_a_busy_process_breaks_invariant_2_and_an_idle_one_does_not() {
    let (mut obs, f) = clean();
    let f = f.with_no_busy_stops();
    // An idle process, then one whose session ended with it: fine.
    obs.push(Observation::TerminateRequested {
        process: pr("proc-idle"),
    });
    assert!(check(&history(obs.clone()), &f).is_empty());
    // A process holding an activated session: reported.
    obs.push(accepted("pl-7", "bs-7"));
    obs.push(delivered("proc-busy", "bs-7"));
    obs.push(activated("proc-busy", "bs-7"));
    obs.push(Observation::TerminateRequested {
        process: pr("proc-busy"),
    });
    let mut f2 = f.clone();
    f2.placements.insert(pl("pl-7"), (Fulfilled, bs("bs-7")));
    obs.push(event("pl-7", Fulfilled, "ev-7"));
    let v = check(&history(obs.clone()), &f2);
    only(
        &v,
        |x| matches!(x, Violation::BusyProcessStopped { process, .. } if process.as_str() == "proc-busy"),
    );
    // Without the flag (fault scenarios), not checked.
    let mut f3 = f2.clone();
    f3.no_busy_stops = false;
    assert!(check(&history(obs), &f3).is_empty());
}
