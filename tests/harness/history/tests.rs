//! Unit tests of the history checker.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use respawn_state::ClusterState;
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
            pruned: Default::default(),
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
            Observation::SessionActivated { battle_session, .. } => Some(battle_session.clone()),
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
    let kept = fin(&[(p, Fulfilled, "bs-1")]);
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
