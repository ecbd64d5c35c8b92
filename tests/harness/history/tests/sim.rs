//! A small simulator of valid runs (random but legal placements, DS
//! processes in both modes, crashes, timeouts, reads and events), for the
//! checker's tests: nothing may be reported on its runs.

use super::*;

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

pub(super) struct Sim {
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
        } else {
            // The DS is told (OnTerminateBattleSession): the slot is free.
            self.h.record(Observation::SessionEnded {
                process: self.procs[p].id.clone(),
                battle_session: self.pls[i].bs.clone(),
            });
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

    pub(super) fn run(seed: u64, steps: usize) -> (Vec<Entry>, FinalState) {
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
            events_subscribed: true,
            pruned: Default::default(),
            no_busy_stops: true,
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
