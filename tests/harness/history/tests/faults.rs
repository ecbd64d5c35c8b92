//! The fault generator: random valid runs ([`Sim`]) with one violation of a
//! given kind injected. One test per kind the checker claims to catch; each
//! asserts the clean run passes and the faulty one is reported with that
//! kind, and only that kind.

use super::sim::Sim;
use super::*;

/// Appends `obs` after the last entry of `h`.
fn push(h: &mut Vec<Entry>, obs: Observation) {
    let last = h.last().map_or(Duration::ZERO, |e| e.at);
    h.push(Entry {
        seq: h.len() as u64,
        invoked: last,
        at: last,
        obs,
    });
}

/// Final placements with `pred`, in id order.
fn placements(f: &FinalState, pred: impl Fn(PlacementStatus) -> bool) -> Vec<PlacementId> {
    f.placements
        .iter()
        .filter(|(_, (s, _))| pred(*s))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Accepted placements of the history, in recording order.
fn accepted_placements(h: &[Entry]) -> Vec<(PlacementId, BattleSessionId)> {
    h.iter()
        .filter_map(|e| match &e.obs {
            Observation::PlacementAccepted {
                placement,
                battle_session,
            } => Some((placement.clone(), battle_session.clone())),
            _ => None,
        })
        .collect()
}

/// An injector: changes a valid run so it holds one violation; `false`
/// if this run offers nothing to break that way.
type Inject = fn(&mut Vec<Entry>, &mut FinalState) -> bool;

/// Runs 16 seeds: each clean run passes, each injected one is reported
/// with violations all matching `kind` (at least one).
fn caught(name: &str, inject: Inject, kind: fn(&Violation) -> bool) {
    let mut injected = 0;
    for seed in 0..16 {
        let (mut h, mut f) = Sim::run(seed, 400);
        let v = check(&h, &f);
        assert!(v.is_empty(), "seed {seed} clean: {}", summary(&v));
        if !inject(&mut h, &mut f) {
            continue;
        }
        injected += 1;
        let v = check(&h, &f);
        assert!(!v.is_empty(), "seed {seed}: {name} injected, not reported");
        assert!(
            v.iter().all(kind),
            "seed {seed}: {name} injected, reported as: {}",
            summary(&v)
        );
    }
    assert!(injected >= 8, "{name}: injected in only {injected} runs");
}

#[test]
fn injected_refusal_is_caught() {
    caught(
        "a refused placement",
        |h, _| {
            push(
                h,
                Observation::PlacementRefused {
                    battle_session: None,
                    status: 400,
                    error: "bad request".into(),
                },
            );
            true
        },
        |v| matches!(v, Violation::PlacementRefused { status: 400, .. }),
    );
}

#[test]
fn injected_lost_placement_is_caught() {
    caught(
        "an accepted placement missing from the final state",
        |h, f| {
            let Some((pl, _)) = accepted_placements(h).pop() else {
                return false;
            };
            f.placements.remove(&pl).is_some()
        },
        |v| {
            matches!(
                v,
                Violation::NotTerminal {
                    final_status: None,
                    ..
                }
            )
        },
    );
}

#[test]
fn injected_pending_placement_is_caught() {
    caught(
        "an accepted placement never answered",
        |h, f| {
            push(
                h,
                Observation::PlacementAccepted {
                    placement: pl("pl-stuck"),
                    battle_session: bs("bs-stuck"),
                },
            );
            f.placements
                .insert(pl("pl-stuck"), (Pending, bs("bs-stuck")));
            true
        },
        |v| {
            matches!(v, Violation::NotTerminal { placement, final_status: Some(Pending), .. }
                if placement.as_str() == "pl-stuck")
        },
    );
}

#[test]
fn injected_session_mismatch_is_caught() {
    caught(
        "one placement accepted for two battle sessions",
        |h, _| {
            let Some((pl, _)) = accepted_placements(h).first().cloned() else {
                return false;
            };
            push(
                h,
                Observation::PlacementAccepted {
                    placement: pl,
                    battle_session: bs("bs-other"),
                },
            );
            true
        },
        |v| {
            matches!(
                v,
                Violation::SessionMismatch {
                    other_seq: Some(_),
                    ..
                }
            )
        },
    );
}

#[test]
fn injected_conflicting_terminal_is_caught() {
    caught(
        "a placement seen in two terminal states",
        |h, f| {
            let Some(p) = placements(f, |s| s.is_terminal()).pop() else {
                return false;
            };
            let now = f.placements[&p].0;
            let other = [Cancelled, TimedOut, Failed]
                .into_iter()
                .find(|s| *s != now)
                .unwrap_or(Cancelled);
            push(
                h,
                Observation::PlacementStatusSeen {
                    placement: p,
                    status: other,
                },
            );
            true
        },
        |v| matches!(v, Violation::ConflictingTerminal { .. }),
    );
}

#[test]
fn injected_regression_to_pending_is_caught() {
    caught(
        "a terminal placement read PENDING afterwards",
        |h, f| {
            let Some(p) = placements(f, |s| s.is_terminal()).pop() else {
                return false;
            };
            push(
                h,
                Observation::PlacementStatusSeen {
                    placement: p,
                    status: Pending,
                },
            );
            true
        },
        |v| matches!(v, Violation::TerminalRegressed { .. }),
    );
}

#[test]
fn injected_simple_mode_reuse_is_caught() {
    caught(
        "a second session delivered to a simple-mode process",
        |h, f| {
            let used = h.iter().find_map(|e| match &e.obs {
                Observation::SessionDelivered { process, .. }
                    if f.mode(process) == ServerMode::Simple =>
                {
                    Some(process.clone())
                }
                _ => None,
            });
            let Some(process) = used else { return false };
            push(
                h,
                Observation::SessionDelivered {
                    process,
                    battle_session: bs("bs-intruder"),
                },
            );
            true
        },
        |v| matches!(v, Violation::SimpleModeReused { .. }),
    );
}

#[test]
fn injected_parallel_overload_is_caught() {
    caught(
        "a parallel process given one ACTIVATING session too many",
        |h, f| {
            // A process of the run still alive, in parallel mode: fill its
            // free slots and one more, deliveries only (ACTIVATING).
            let ended: BTreeSet<&ProcessId> = h
                .iter()
                .filter_map(|e| match &e.obs {
                    Observation::ProcessEnded { process } => Some(process),
                    _ => None,
                })
                .collect();
            let target = f.process_modes.iter().find_map(|(p, m)| match m {
                ServerMode::Parallel { max_sessions } if !ended.contains(p) => {
                    Some((p.clone(), *max_sessions))
                }
                _ => None,
            });
            let Some((process, max)) = target else {
                return false;
            };
            for i in 0..=max {
                push(
                    h,
                    Observation::SessionDelivered {
                        process: process.clone(),
                        battle_session: bs(&format!("bs-extra-{i}")),
                    },
                );
            }
            true
        },
        |v| matches!(v, Violation::ParallelOverCapacity { .. }),
    );
}

#[test]
fn injected_double_activation_is_caught() {
    caught(
        "a battle session activated on a second process",
        |h, _| {
            let Some(b) = h.iter().find_map(|e| match &e.obs {
                Observation::SessionActivated { battle_session, .. } => {
                    Some(battle_session.clone())
                }
                _ => None,
            }) else {
                return false;
            };
            push(
                h,
                Observation::SessionActivated {
                    process: pr("proc-intruder"),
                    battle_session: b,
                },
            );
            true
        },
        |v| matches!(v, Violation::ActiveOnTwoProcesses { .. }),
    );
}

#[test]
fn injected_fulfilled_without_activation_is_caught() {
    caught(
        "a FULFILLED placement whose session no DS activated",
        |h, f| {
            let Some(p) = placements(f, |s| s == Fulfilled).pop() else {
                return false;
            };
            let b = f.placements[&p].1.clone();
            h.retain(|e| {
                !matches!(&e.obs, Observation::SessionActivated { battle_session, .. }
                    if *battle_session == b)
            });
            true
        },
        |v| matches!(v, Violation::FulfilledNotActivated { .. }),
    );
}

#[test]
fn injected_lost_event_is_caught() {
    caught(
        "a placement event never delivered",
        |h, f| {
            let Some(p) = placements(f, |s| EVENTED.contains(&s)).pop() else {
                return false;
            };
            h.retain(|e| {
                !matches!(&e.obs, Observation::EventDelivered { placement, .. } if *placement == p)
            });
            true
        },
        |v| matches!(v, Violation::EventMissing { .. }),
    );
}

#[test]
fn injected_event_id_reuse_is_caught() {
    caught(
        "one event id for two placements",
        |h, f| {
            let events: Vec<(PlacementId, String)> = h
                .iter()
                .filter_map(|e| match &e.obs {
                    Observation::EventDelivered {
                        placement,
                        event_id,
                        ..
                    } => Some((placement.clone(), event_id.clone())),
                    _ => None,
                })
                .collect();
            let Some((first, id)) = events.first().cloned() else {
                return false;
            };
            let Some((other, _)) = events.iter().find(|(p, _)| *p != first) else {
                return false;
            };
            let status = f.placements[other].0;
            push(
                h,
                Observation::EventDelivered {
                    placement: other.clone(),
                    status,
                    event_id: id,
                },
            );
            true
        },
        |v| matches!(v, Violation::EventIdConflict { .. }),
    );
}

#[test]
fn injected_pending_event_is_caught() {
    caught(
        "a placement event saying PENDING",
        |h, f| {
            let Some(p) = placements(f, |s| s.is_terminal()).pop() else {
                return false;
            };
            push(
                h,
                Observation::EventDelivered {
                    placement: p,
                    status: Pending,
                    event_id: "ev-pending".into(),
                },
            );
            true
        },
        |v| matches!(v, Violation::EventNotTerminal { .. }),
    );
}

#[test]
fn injected_return_after_expiry_is_caught() {
    caught(
        "a placement answered expired, then still in the final state",
        |h, f| {
            let Some(pl) = placements(f, |s| s != Pending).pop() else {
                return false;
            };
            push(h, Observation::PlacementExpiredSeen { placement: pl });
            true
        },
        |v| {
            matches!(
                v,
                Violation::SeenAfterExpired {
                    seen: Seen::Final,
                    ..
                }
            )
        },
    );
}
