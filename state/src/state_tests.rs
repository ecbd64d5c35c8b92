//! Transition tests for [`ClusterState::apply`]: every legal step of each
//! life cycle, and the illegal ones, which must be rejected without change.

use super::*;
use respawn_types::agent::LiveProcess;
use std::collections::{BTreeMap, BTreeSet};

const T0: UnixMillis = 1_000_000;

fn tr() -> TitleRegionId {
    TitleRegionId::new_unchecked("tr-1")
}
fn fleet_id() -> FleetId {
    FleetId::new_unchecked("fleet-1")
}
fn host_id() -> HostId {
    HostId::new_unchecked("host-1")
}
fn pid(n: u32) -> ProcessId {
    ProcessId::new_unchecked(format!("proc-{n}"))
}
fn bs(n: u32) -> BattleSessionId {
    BattleSessionId::new_unchecked(format!("bs-{n}"))
}
fn pl(n: u32) -> PlacementId {
    PlacementId::new_unchecked(format!("pl-{n}"))
}
fn pbs(n: u32) -> PlayerBattleSessionId {
    PlayerBattleSessionId::new_unchecked(format!("pbs-{n}"))
}
fn player(n: u32) -> PlayerSpec {
    PlayerSpec {
        player_id: PlayerId::new_unchecked(format!("player-{n}")),
        player_data: String::new(),
    }
}

fn fleet(mode: ServerMode) -> Fleet {
    Fleet {
        id: fleet_id(),
        title_region_id: tr(),
        name: "f".into(),
        mode,
        runtime: RuntimeConfig {
            launch_path: "/bin/ds".into(),
            args: vec![],
            env: Default::default(),
            processes_per_host: 2,
        },
        activation_timeout_ms: 60_000,
        placement_timeout_ms: 120_000,
        health_check_interval_ms: 5_000,
        process_ending_grace_ms: 120_000,
        max_placement_attempts: 2,
    }
}

struct H {
    s: ClusterState,
    at: UnixMillis,
}

impl H {
    fn new(mode: ServerMode) -> Self {
        let mut h = H {
            s: ClusterState::default(),
            at: T0,
        };
        h.ok(Command::PutTitleRegion(TitleRegion {
            id: tr(),
            title_id: TitleId::new_unchecked("title-1"),
            name: "dev".into(),
            title_name: "Game".into(),
            secret_id: SecretId::new_unchecked("sid-1"),
            secret_key: "0123456789abcdef0123".into(),
        }));
        h.ok(Command::PutFleet(fleet(mode)));
        h.ok(Command::RegisterHost {
            host: Host {
                id: host_id(),
                fleet_id: fleet_id(),
                ip: "10.0.0.1".into(),
                registered_at: 0,
            },
            live: vec![],
            live_vs: vec![],
        });
        h
    }
    fn run(&mut self, c: Command) -> (Response, Vec<Event>) {
        let out = self.s.apply(&Request {
            at: self.at,
            command: c,
        });
        // The placeable index always equals what it indexes.
        let mut expected: BTreeMap<FleetId, BTreeSet<ProcessId>> = BTreeMap::new();
        for p in self.s.processes.values().filter(|p| self.s.is_placeable(p)) {
            expected
                .entry(p.fleet_id.clone())
                .or_default()
                .insert(p.id.clone());
        }
        assert_eq!(
            self.s.placeable_by_fleet, expected,
            "placeable index out of date"
        );
        out
    }
    fn ok(&mut self, c: Command) -> Vec<Event> {
        let (r, e) = self.run(c.clone());
        assert!(r.is_ok(), "{c:?} rejected: {r:?}");
        e
    }
    /// The command is refused and the state is exactly as before.
    fn refused(&mut self, c: Command) -> Rejection {
        let before = self.s.clone();
        let (r, e) = self.run(c.clone());
        assert!(e.is_empty());
        assert_eq!(self.s, before, "{c:?} changed state although rejected");
        r.expect_err(&format!("{c:?} should be rejected"))
    }
    fn ready_process(&mut self, n: u32) {
        self.ok(Command::ProcessStarted {
            process_id: pid(n),
            host_id: host_id(),
            pid: 100 + n,
        });
        self.ok(Command::ProcessReady {
            process_id: pid(n),
            port: 7000 + n as u16,
            log_paths: vec![],
        });
    }
    fn start(&mut self, n: u32, players: Vec<(PlayerBattleSessionId, PlayerSpec)>) -> Vec<Event> {
        self.ok(Command::IssueBattleSessionId {
            title_region_id: tr(),
            battle_session_id: bs(n),
        });
        self.ok(Command::StartPlacement(StartPlacement {
            placement_id: pl(n),
            title_region_id: tr(),
            fleet_id: fleet_id(),
            battle_session_id: bs(n),
            max_players: 4,
            properties: Default::default(),
            players,
            timeout_ms: None,
        }))
    }
    fn session(&self, n: u32) -> &BattleSession {
        &self.s.battle_sessions[&bs(n)]
    }
    fn placement(&self, n: u32) -> &Placement {
        &self.s.placements[&pl(n)]
    }
    fn process(&self, n: u32) -> &DsProcess {
        &self.s.processes[&pid(n)]
    }
    fn player_status(&self, n: u32) -> PlayerBattleSessionStatus {
        self.s.player_battle_sessions[&pbs(n)].status
    }
    fn active_session(&mut self, n: u32, process: u32) {
        self.start(n, vec![(pbs(n * 10), player(n * 10))]);
        self.ok(Command::AssignPlacement {
            placement_id: pl(n),
            process_id: pid(process),
        });
        self.ok(Command::ActivateBattleSession {
            process_id: pid(process),
            battle_session_id: bs(n),
        });
    }
}

#[test]
fn full_simple_mode_lifecycle() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    assert_eq!(h.process(1).status, ProcessStatus::Ready);
    let ev = h.start(1, vec![(pbs(1), player(1))]);
    assert!(ev.contains(&Event::PlacementNeedsProcess {
        placement_id: pl(1),
        fleet_id: fleet_id()
    }));
    assert_eq!(h.session(1).status, BattleSessionStatus::Pending);
    assert_eq!(h.placement(1).status, PlacementStatus::Pending);
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Reserved);
    assert_eq!(h.s.waiting_placements(&fleet_id()).count(), 1);

    let ev = h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    assert_eq!(
        ev,
        vec![Event::SessionAssigned {
            battle_session_id: bs(1),
            process_id: pid(1)
        }]
    );
    assert_eq!(h.session(1).status, BattleSessionStatus::Activating);
    assert_eq!(h.session(1).activation_deadline, Some(T0 + 60_000));
    assert_eq!(h.s.waiting_placements(&fleet_id()).count(), 0);
    assert_eq!(
        h.s.placeable_processes(&fleet_id()).count(),
        0,
        "simple mode: one session per process"
    );

    let ev = h.ok(Command::ActivateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert!(ev.contains(&Event::PlacementFinished {
        placement_id: pl(1),
        status: PlacementStatus::Fulfilled
    }));
    assert_eq!(h.session(1).status, BattleSessionStatus::Active);
    assert_eq!(h.placement(1).status, PlacementStatus::Fulfilled);
    assert_eq!(h.session(1).ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(h.session(1).port, Some(7001));

    let upd = |a| Command::PlayerUpdate {
        process_id: pid(1),
        battle_session_id: bs(1),
        player_battle_session_id: pbs(1),
        action: a,
    };
    h.ok(upd(PlayerAction::Accept));
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Active);
    h.ok(upd(PlayerAction::Disconnect));
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Disconnected);
    h.ok(upd(PlayerAction::Accept));
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Active);
    h.ok(upd(PlayerAction::Remove));
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Completed);
    assert!(h.s.sessions_by_player.is_empty());
    assert!(matches!(
        h.refused(upd(PlayerAction::Accept)),
        Rejection::InvalidState(_)
    ));

    h.ok(Command::ProcessEnding { process_id: pid(1) });
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    assert_eq!(h.process(1).status, ProcessStatus::Ending);
    assert_eq!(
        h.placement(1).status,
        PlacementStatus::Fulfilled,
        "a fulfilled placement stays fulfilled"
    );
    h.ok(Command::ProcessExited {
        process_id: pid(1),
        reason: ExitReason::Exited {
            code: Some(0),
            signal: None,
        },
    });
    assert_eq!(h.process(1).status, ProcessStatus::Exited);
    assert!(h.s.live_processes_by_fleet[&fleet_id()].is_empty());
    assert_eq!(
        h.run(Command::ProcessExited {
            process_id: pid(1),
            reason: ExitReason::Killed
        })
        .0,
        Ok(Applied::Unchanged)
    );
}

#[test]
fn process_transitions_illegal() {
    let mut h = H::new(ServerMode::Simple);
    assert!(matches!(
        h.refused(Command::ProcessReady {
            process_id: pid(9),
            port: 1,
            log_paths: vec![]
        }),
        Rejection::NotFound { .. }
    ));
    assert!(matches!(
        h.refused(Command::ProcessStarted {
            process_id: pid(1),
            host_id: HostId::new_unchecked("nope"),
            pid: 1
        }),
        Rejection::NotFound { .. }
    ));
    h.ready_process(1);
    assert!(matches!(
        h.refused(Command::ProcessReady {
            process_id: pid(1),
            port: 9,
            log_paths: vec![]
        }),
        Rejection::InvalidState(_)
    ));
    assert!(matches!(
        h.refused(Command::ProcessReady {
            process_id: pid(1),
            port: 0,
            log_paths: vec![]
        }),
        Rejection::BadRequest(_)
    ));
    h.ok(Command::ProcessExited {
        process_id: pid(1),
        reason: ExitReason::Killed,
    });
    assert!(matches!(
        h.refused(Command::ProcessEnding { process_id: pid(1) }),
        Rejection::InvalidState(_)
    ));
    assert!(matches!(
        h.refused(Command::ProcessReady {
            process_id: pid(1),
            port: 7001,
            log_paths: vec![]
        }),
        Rejection::InvalidState(_)
    ));
}

#[test]
fn placement_waits_without_process_then_times_out() {
    let mut h = H::new(ServerMode::Simple);
    h.start(1, vec![(pbs(1), player(1))]);
    // Before the deadline: unchanged.
    h.at = T0 + 1_000;
    assert_eq!(
        h.run(Command::PlacementTimedOut {
            placement_id: pl(1)
        })
        .0,
        Ok(Applied::Unchanged)
    );
    h.at = T0 + 120_000;
    assert!(matches!(
        h.refused(Command::AssignPlacement {
            placement_id: pl(1),
            process_id: pid(1)
        }),
        Rejection::InvalidState(_) | Rejection::NotFound { .. }
    ));
    let ev = h.ok(Command::PlacementTimedOut {
        placement_id: pl(1),
    });
    assert!(ev.contains(&Event::PlacementFinished {
        placement_id: pl(1),
        status: PlacementStatus::TimedOut
    }));
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Completed);
    assert_eq!(h.s.waiting_placements(&fleet_id()).count(), 0);
    // Exactly one terminal state: later commands do not change it.
    assert!(matches!(
        h.refused(Command::CancelPlacement {
            title_region_id: tr(),
            placement_id: pl(1)
        }),
        Rejection::InvalidState(_)
    ));
    assert_eq!(
        h.run(Command::PlacementTimedOut {
            placement_id: pl(1)
        })
        .0,
        Ok(Applied::Unchanged)
    );
}

#[test]
fn activation_timeout_retries_on_another_process_then_fails() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.ready_process(3);
    h.start(1, vec![]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    h.at += 60_000;
    let ev = h.ok(Command::ActivationTimedOut {
        battle_session_id: bs(1),
        process_id: pid(1),
    });
    assert!(ev.contains(&Event::SessionRevoked {
        battle_session_id: bs(1),
        process_id: pid(1)
    }));
    assert!(ev.contains(&Event::PlacementNeedsProcess {
        placement_id: pl(1),
        fleet_id: fleet_id()
    }));
    assert_eq!(
        h.process(1).status,
        ProcessStatus::Terminating,
        "a simple-mode process is spent"
    );
    assert_eq!(h.session(1).status, BattleSessionStatus::Pending);
    // The spent process cannot be chosen again.
    assert!(matches!(
        h.refused(Command::AssignPlacement {
            placement_id: pl(1),
            process_id: pid(1)
        }),
        Rejection::Conflict(_)
    ));
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(2),
    });
    // A stale timer for the first attempt changes nothing.
    assert_eq!(
        h.run(Command::ActivationTimedOut {
            battle_session_id: bs(1),
            process_id: pid(1)
        })
        .0,
        Ok(Applied::Unchanged)
    );
    h.at += 60_000;
    let ev = h.ok(Command::ActivationTimedOut {
        battle_session_id: bs(1),
        process_id: pid(2),
    });
    assert!(ev.contains(&Event::PlacementFinished {
        placement_id: pl(1),
        status: PlacementStatus::Failed
    }));
    assert_eq!(h.placement(1).status, PlacementStatus::Failed);
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    assert!(h
        .placement(1)
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("activation timed out"));
}

#[test]
fn activation_failure_after_deadline_times_out() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.start(1, vec![]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    h.at += 119_000;
    // The attempt in flight decides.
    assert_eq!(
        h.run(Command::PlacementTimedOut {
            placement_id: pl(1)
        })
        .0,
        Ok(Applied::Unchanged)
    );
    h.at += 2_000;
    assert_eq!(
        h.run(Command::PlacementTimedOut {
            placement_id: pl(1)
        })
        .0,
        Ok(Applied::Unchanged)
    );
    h.ok(Command::ActivationTimedOut {
        battle_session_id: bs(1),
        process_id: pid(1),
    });
    assert_eq!(h.placement(1).status, PlacementStatus::TimedOut);
}

#[test]
fn ds_killed_mid_session_terminates_and_is_not_reused() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.active_session(1, 1);
    h.ok(Command::ProcessExited {
        process_id: pid(1),
        reason: ExitReason::Exited {
            code: None,
            signal: Some(9),
        },
    });
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    assert_eq!(h.placement(1).status, PlacementStatus::Fulfilled);
    assert_eq!(h.player_status(10), PlayerBattleSessionStatus::Completed);
    assert!(h.s.sessions_by_process.is_empty());
    // A new placement cannot land on the dead process.
    h.start(2, vec![]);
    assert!(matches!(
        h.refused(Command::AssignPlacement {
            placement_id: pl(2),
            process_id: pid(1)
        }),
        Rejection::Conflict(_)
    ));
}

#[test]
fn ds_dying_while_activating_sends_placement_elsewhere() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.start(1, vec![]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    let ev = h.ok(Command::ProcessExited {
        process_id: pid(1),
        reason: ExitReason::Unhealthy,
    });
    assert!(ev.contains(&Event::PlacementNeedsProcess {
        placement_id: pl(1),
        fleet_id: fleet_id()
    }));
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(2),
    });
    h.ok(Command::ActivateBattleSession {
        process_id: pid(2),
        battle_session_id: bs(1),
    });
    assert_eq!(h.placement(1).status, PlacementStatus::Fulfilled);
}

#[test]
fn activate_illegal() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.start(1, vec![]);
    // Not yet assigned.
    assert!(matches!(
        h.refused(Command::ActivateBattleSession {
            process_id: pid(1),
            battle_session_id: bs(1)
        }),
        Rejection::InvalidState(_)
    ));
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    // Another process cannot activate it.
    assert!(matches!(
        h.refused(Command::ActivateBattleSession {
            process_id: pid(2),
            battle_session_id: bs(1)
        }),
        Rejection::InvalidState(_)
    ));
    assert!(matches!(
        h.refused(Command::ActivateBattleSession {
            process_id: pid(1),
            battle_session_id: bs(7)
        }),
        Rejection::NotFound { .. }
    ));
    // Double assignment of the same placement.
    assert!(matches!(
        h.refused(Command::AssignPlacement {
            placement_id: pl(1),
            process_id: pid(2)
        }),
        Rejection::Conflict(_)
    ));
    h.ok(Command::ActivateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert_eq!(
        h.run(Command::ActivateBattleSession {
            process_id: pid(1),
            battle_session_id: bs(1)
        })
        .0,
        Ok(Applied::Unchanged)
    );
}

#[test]
fn cancel_while_activating_spends_the_process() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.start(1, vec![(pbs(1), player(1))]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    assert!(matches!(
        h.refused(Command::CancelPlacement {
            title_region_id: TitleRegionId::new_unchecked("tr-other"),
            placement_id: pl(1)
        }),
        Rejection::NotFound { .. }
    ));
    let ev = h.ok(Command::CancelPlacement {
        title_region_id: tr(),
        placement_id: pl(1),
    });
    assert!(ev.contains(&Event::SessionRevoked {
        battle_session_id: bs(1),
        process_id: pid(1)
    }));
    assert_eq!(h.placement(1).status, PlacementStatus::Cancelled);
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    assert_eq!(h.process(1).status, ProcessStatus::Terminating);
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Completed);
    assert_eq!(h.process(1).sessions_current, 0);
}

#[test]
fn start_placement_validation() {
    let mut h = H::new(ServerMode::Simple);
    let sp =
        |n: u32, fleet: FleetId, max: u32, players: Vec<(PlayerBattleSessionId, PlayerSpec)>| {
            Command::StartPlacement(StartPlacement {
                placement_id: pl(n),
                title_region_id: tr(),
                fleet_id: fleet,
                battle_session_id: bs(n),
                max_players: max,
                properties: Default::default(),
                players,
                timeout_ms: None,
            })
        };
    // Not issued.
    assert!(matches!(
        h.refused(sp(1, fleet_id(), 2, vec![])),
        Rejection::NotFound { .. }
    ));
    h.ok(Command::IssueBattleSessionId {
        title_region_id: tr(),
        battle_session_id: bs(1),
    });
    assert!(matches!(
        h.refused(Command::IssueBattleSessionId {
            title_region_id: tr(),
            battle_session_id: bs(1)
        }),
        Rejection::Conflict(_)
    ));
    assert!(matches!(
        h.refused(sp(1, FleetId::new_unchecked("x"), 2, vec![])),
        Rejection::NotFound { .. }
    ));
    assert!(matches!(
        h.refused(sp(1, fleet_id(), 0, vec![])),
        Rejection::BadRequest(_)
    ));
    assert!(matches!(
        h.refused(sp(
            1,
            fleet_id(),
            1,
            vec![(pbs(1), player(1)), (pbs(2), player(2))]
        )),
        Rejection::BadRequest(_)
    ));
    assert!(matches!(
        h.refused(sp(
            1,
            fleet_id(),
            3,
            vec![(pbs(1), player(1)), (pbs(2), player(1))]
        )),
        Rejection::Conflict(_)
    ));
    h.ok(sp(1, fleet_id(), 2, vec![]));
    // The id is used now.
    assert!(matches!(
        h.refused(sp(1, fleet_id(), 2, vec![])),
        Rejection::Conflict(_)
    ));
    // Foreign title region: an id issued to another region cannot be used here.
    h.ok(Command::PutTitleRegion(TitleRegion {
        id: TitleRegionId::new_unchecked("tr-2"),
        title_id: TitleId::new_unchecked("title-1"),
        name: "other".into(),
        title_name: "Game".into(),
        secret_id: SecretId::new_unchecked("sid-2"),
        secret_key: "0123456789abcdef0123".into(),
    }));
    h.ok(Command::IssueBattleSessionId {
        title_region_id: TitleRegionId::new_unchecked("tr-2"),
        battle_session_id: bs(5),
    });
    assert!(matches!(
        h.refused(sp(5, fleet_id(), 2, vec![])),
        Rejection::NotFound { .. }
    ));
}

#[test]
fn add_players_and_capacity() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.active_session(1, 1);
    let add = |players| Command::AddPlayers {
        title_region_id: tr(),
        battle_session_id: bs(1),
        players,
    };
    h.ok(add(vec![(pbs(1), player(1)), (pbs(2), player(2))]));
    assert_eq!(h.placement(1).player_battle_sessions.len(), 3);
    assert!(
        matches!(
            h.refused(add(vec![(pbs(3), player(1))])),
            Rejection::Conflict(_)
        ),
        "duplicate player"
    );
    assert!(
        matches!(
            h.refused(add(vec![(pbs(1), player(5))])),
            Rejection::Conflict(_)
        ),
        "duplicate pbs id"
    );
    assert!(
        matches!(
            h.refused(add(vec![(pbs(4), player(4)), (pbs(5), player(5))])),
            Rejection::Conflict(_)
        ),
        "max_players 4"
    );
    assert!(matches!(h.refused(add(vec![])), Rejection::BadRequest(_)));
    // Backend terminates one; its slot frees.
    h.ok(Command::TerminatePlayerBattleSession {
        title_region_id: tr(),
        battle_session_id: bs(1),
        player_battle_session_id: pbs(1),
    });
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Completed);
    h.ok(add(vec![(pbs(4), player(4)), (pbs(5), player(5))]));
    // Foreign region cannot add.
    assert!(matches!(
        h.refused(Command::AddPlayers {
            title_region_id: TitleRegionId::new_unchecked("tr-x"),
            battle_session_id: bs(1),
            players: vec![(pbs(9), player(9))]
        }),
        Rejection::NotFound { .. }
    ));
}

#[test]
fn player_updates_need_the_hosting_process_and_an_active_session() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.start(1, vec![(pbs(1), player(1))]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    let upd = |p, a| Command::PlayerUpdate {
        process_id: pid(p),
        battle_session_id: bs(1),
        player_battle_session_id: pbs(1),
        action: a,
    };
    assert!(
        matches!(
            h.refused(upd(1, PlayerAction::Accept)),
            Rejection::InvalidState(_)
        ),
        "not active yet"
    );
    h.ok(Command::ActivateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert!(
        matches!(
            h.refused(upd(2, PlayerAction::Accept)),
            Rejection::InvalidState(_)
        ),
        "foreign process"
    );
    assert!(
        matches!(
            h.refused(upd(1, PlayerAction::Disconnect)),
            Rejection::InvalidState(_)
        ),
        "reserved → disconnected"
    );
    assert!(matches!(
        h.refused(Command::PlayerUpdate {
            process_id: pid(1),
            battle_session_id: bs(1),
            player_battle_session_id: pbs(99),
            action: PlayerAction::Accept
        }),
        Rejection::NotFound { .. }
    ));
    h.ok(upd(1, PlayerAction::Remove));
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Completed);
}

#[test]
fn parallel_mode_admits_up_to_n_at_once() {
    let mut h = H::new(ServerMode::Parallel { max_sessions: 2 });
    h.ready_process(1);
    h.active_session(1, 1);
    h.active_session(2, 1);
    assert_eq!(h.s.placeable_processes(&fleet_id()).count(), 0);
    h.start(3, vec![]);
    assert!(matches!(
        h.refused(Command::AssignPlacement {
            placement_id: pl(3),
            process_id: pid(1)
        }),
        Rejection::Conflict(_)
    ));
    h.ok(Command::TerminateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert_eq!(h.process(1).sessions_current, 1);
    h.ok(Command::AssignPlacement {
        placement_id: pl(3),
        process_id: pid(1),
    });
    assert_eq!(h.process(1).sessions_hosted, 3);
}

#[test]
fn register_host_reconciles_lost_and_adopts_live() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.active_session(1, 1);
    let host = Host {
        id: host_id(),
        fleet_id: fleet_id(),
        ip: "10.0.0.1".into(),
        registered_at: 0,
    };
    let live = vec![
        LiveProcess {
            process_id: pid(2),
            pid: 102,
            port: Some(7002),
            log_paths: vec![],
            ending: false,
        },
        LiveProcess {
            process_id: pid(3),
            pid: 103,
            port: Some(7003),
            log_paths: vec![],
            ending: false,
        },
    ];
    h.ok(Command::RegisterHost {
        host: host.clone(),
        live,
        live_vs: vec![],
    });
    assert_eq!(h.process(1).status, ProcessStatus::Exited);
    assert_eq!(h.process(1).exit, Some(ExitReason::Lost));
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    assert_eq!(h.process(2).status, ProcessStatus::Ready);
    assert_eq!(h.process(3).status, ProcessStatus::Ready);
    assert_eq!(h.process(3).port, Some(7003));
    // Registering for a fleet that does not exist, or switching fleets, is refused.
    let mut other = host.clone();
    other.fleet_id = FleetId::new_unchecked("fleet-x");
    assert!(matches!(
        h.refused(Command::RegisterHost {
            host: other,
            live: vec![],
            live_vs: vec![],
        }),
        Rejection::NotFound { .. }
    ));
}

#[test]
fn fleet_validation() {
    let mut h = H::new(ServerMode::Simple);
    let mut f = fleet(ServerMode::Simple);
    f.activation_timeout_ms = 0;
    assert!(matches!(
        h.refused(Command::PutFleet(f)),
        Rejection::BadRequest(_)
    ));
    let mut f = fleet(ServerMode::Simple);
    f.health_check_interval_ms = 500;
    assert!(matches!(
        h.refused(Command::PutFleet(f)),
        Rejection::BadRequest(_)
    ));
    let mut f = fleet(ServerMode::Simple);
    f.runtime.processes_per_host = 0;
    assert!(matches!(
        h.refused(Command::PutFleet(f)),
        Rejection::BadRequest(_)
    ));
    let f = fleet(ServerMode::Parallel { max_sessions: 3 });
    assert!(
        matches!(h.refused(Command::PutFleet(f)), Rejection::BadRequest(_)),
        "mode is fixed"
    );
    let mut f = fleet(ServerMode::Simple);
    f.title_region_id = TitleRegionId::new_unchecked("nope");
    assert!(matches!(
        h.refused(Command::PutFleet(f)),
        Rejection::NotFound { .. }
    ));
}

#[test]
fn terminate_battle_session_by_ds() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.start(1, vec![]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    assert!(matches!(
        h.refused(Command::TerminateBattleSession {
            process_id: pid(1),
            battle_session_id: bs(1)
        }),
        Rejection::InvalidState(_)
    ));
    h.ok(Command::ActivateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert!(matches!(
        h.refused(Command::TerminateBattleSession {
            process_id: pid(2),
            battle_session_id: bs(1)
        }),
        Rejection::InvalidState(_)
    ));
    h.ok(Command::TerminateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
}

#[test]
fn apply_is_deterministic() {
    let run = || {
        let mut h = H::new(ServerMode::Simple);
        h.ready_process(1);
        h.ready_process(2);
        h.active_session(1, 1);
        h.start(2, vec![]);
        h.ok(Command::AssignPlacement {
            placement_id: pl(2),
            process_id: pid(2),
        });
        h.s
    };
    assert_eq!(run(), run());
}

#[test]
fn host_links_follow_the_latest_registration() {
    let mut h = H::new(ServerMode::Simple);
    assert!(matches!(
        h.refused(Command::HostLinked {
            host_id: HostId::new_unchecked("nope"),
            node_id: 2
        }),
        Rejection::NotFound { .. }
    ));
    h.ok(Command::HostLinked {
        host_id: host_id(),
        node_id: 2,
    });
    assert_eq!(h.s.host_links[&host_id()], 2);
    assert_eq!(
        h.run(Command::HostLinked {
            host_id: host_id(),
            node_id: 2
        })
        .0,
        Ok(Applied::Unchanged)
    );
    h.ok(Command::HostLinked {
        host_id: host_id(),
        node_id: 3,
    });
    assert_eq!(h.s.host_links[&host_id()], 3);
}

// ---------------------------------------------------------- virtual servers

fn vs_name(s: &str) -> VsName {
    VsName::parse(s).unwrap()
}
fn vsi(n: u32) -> VsInstanceId {
    VsInstanceId::new_unchecked(format!("vsi-{n}"))
}
fn vs_spec() -> VsSpec {
    VsSpec {
        source: VsSource::Process {
            command: "python3".into(),
        },
        args: vec![],
        env: Default::default(),
        listen_port: 8080,
        cpu_millicores: 500,
        memory_mb: 128,
        max_instances: 3,
        block_client_requests: false,
        access_log: false,
        metric_urls: vec![],
        target_concurrency: 10,
        scale_down_delay_secs: 60,
    }
}

impl H {
    fn put_vs(&mut self, spec: VsSpec) -> Vec<Event> {
        self.ok(Command::PutVirtualServer {
            title_region_id: tr(),
            name: vs_name("vs-a"),
            spec,
        })
    }
    fn place_vs(&mut self, n: u32, version: u64) -> Vec<Event> {
        self.ok(Command::PlaceVsInstance {
            instance_id: vsi(n),
            title_region_id: tr(),
            name: vs_name("vs-a"),
            version,
            host_id: host_id(),
        })
    }
    fn report(&mut self, n: u32, report: VsInstanceReport) -> (Response, Vec<Event>) {
        self.run(Command::ReportVsInstance {
            instance_id: vsi(n),
            host_id: host_id(),
            report,
        })
    }
    fn vs(&self) -> &VirtualServer {
        self.s.virtual_server(&tr(), &vs_name("vs-a")).unwrap()
    }
}

#[test]
fn virtual_server_versions_and_validation() {
    let mut h = H::new(ServerMode::Simple);
    h.put_vs(vs_spec());
    assert_eq!(h.vs().version, 1);
    assert_eq!(h.vs().desired, VsDesired::Running);
    // The same spec again changes nothing; a new one makes version 2.
    assert_eq!(
        h.run(Command::PutVirtualServer {
            title_region_id: tr(),
            name: vs_name("vs-a"),
            spec: vs_spec(),
        })
        .0,
        Ok(Applied::Unchanged)
    );
    let mut s2 = vs_spec();
    s2.max_instances = 1;
    h.ok(Command::ScaleVirtualServer {
        title_region_id: tr(),
        name: vs_name("vs-a"),
        scale: 3,
    });
    h.put_vs(s2);
    assert_eq!(h.vs().version, 2);
    assert_eq!(h.vs().versions.len(), 2);
    assert_eq!(h.vs().scale, 1, "scale clamped to the new max");
    // Bad specs and unknown title regions are refused without change.
    let before = h.s.clone();
    for spec in [
        VsSpec {
            listen_port: 0,
            ..vs_spec()
        },
        VsSpec {
            max_instances: 101,
            ..vs_spec()
        },
        VsSpec {
            env: [("PGOS_Title_ID".to_string(), "x".to_string())].into(),
            ..vs_spec()
        },
        VsSpec {
            source: VsSource::DockerImage { image: " ".into() },
            ..vs_spec()
        },
    ] {
        assert!(matches!(
            h.refused(Command::PutVirtualServer {
                title_region_id: tr(),
                name: vs_name("vs-a"),
                spec,
            }),
            Rejection::BadRequest(_)
        ));
    }
    assert!(matches!(
        h.refused(Command::PutVirtualServer {
            title_region_id: TitleRegionId::new_unchecked("tr-x"),
            name: vs_name("vs-a"),
            spec: vs_spec(),
        }),
        Rejection::NotFound { .. }
    ));
    assert_eq!(h.s, before);
    assert!(VsName::parse("bad_name").is_err());
    assert!(VsName::parse("Good-Name-1").is_ok());
}

#[test]
fn virtual_server_instance_life_cycle() {
    let mut h = H::new(ServerMode::Simple);
    h.put_vs(vs_spec());
    let ev = h.place_vs(1, 1);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::VsInstanceChanged {
            status: VsInstanceStatus::Deploying,
            removed: false,
            ..
        }
    )));
    // Only the current version may be placed.
    assert!(matches!(
        h.refused(Command::PlaceVsInstance {
            instance_id: vsi(2),
            title_region_id: tr(),
            name: vs_name("vs-a"),
            version: 7,
            host_id: host_id(),
        }),
        Rejection::InvalidState(_)
    ));
    // Reports from another host are refused.
    assert!(matches!(
        h.refused(Command::ReportVsInstance {
            instance_id: vsi(1),
            host_id: HostId::new_unchecked("host-9"),
            report: VsInstanceReport::Deploying,
        }),
        Rejection::BadRequest(_)
    ));
    let (r, _) = h.report(
        1,
        VsInstanceReport::Running {
            port: 4000,
            limits: "cgroup1".into(),
        },
    );
    assert_eq!(r, Ok(Applied::Done));
    assert_eq!(h.s.vs_instances[&vsi(1)].port, Some(4000));
    h.report(
        1,
        VsInstanceReport::Abnormal {
            reason: "crashed".into(),
            detail: "exited with status 3".into(),
        },
    )
    .0
    .unwrap();
    let i = &h.s.vs_instances[&vsi(1)];
    assert_eq!(i.status, VsInstanceStatus::Abnormal);
    assert_eq!(i.port, None, "an abnormal instance gets no traffic");
    h.report(1, VsInstanceReport::Deploying).0.unwrap();
    assert_eq!(h.s.vs_instances[&vsi(1)].restarts, 1);
    // Stop retires it; late news is ignored; Stopped removes it.
    h.ok(Command::SetVirtualServerDesired {
        title_region_id: tr(),
        name: vs_name("vs-a"),
        desired: VsDesired::Stopped,
    });
    assert_eq!(h.s.vs_instances[&vsi(1)].status, VsInstanceStatus::Stopping);
    assert_eq!(
        h.report(
            1,
            VsInstanceReport::Running {
                port: 1,
                limits: "none".into()
            }
        )
        .0,
        Ok(Applied::Unchanged)
    );
    assert!(matches!(
        h.refused(Command::PlaceVsInstance {
            instance_id: vsi(3),
            title_region_id: tr(),
            name: vs_name("vs-a"),
            version: 1,
            host_id: host_id(),
        }),
        Rejection::InvalidState(_)
    ));
    let (_, ev) = h.report(1, VsInstanceReport::Stopped);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::VsInstanceChanged { removed: true, .. })));
    assert!(h.s.vs_instances.is_empty());
}

#[test]
fn agent_reregistration_reconciles_vs_instances() {
    let mut h = H::new(ServerMode::Simple);
    h.put_vs(vs_spec());
    h.place_vs(1, 1);
    h.place_vs(2, 1);
    let host = h.s.hosts[&host_id()].clone();
    let ev = h.ok(Command::RegisterHost {
        host,
        live: vec![],
        live_vs: vec![vsi(2), vsi(9)],
    });
    assert!(
        !h.s.vs_instances.contains_key(&vsi(1)),
        "gone from the agent"
    );
    assert!(h.s.vs_instances.contains_key(&vsi(2)));
    assert!(ev.iter().any(
        |e| matches!(e, Event::VsInstanceOrphaned { instance_id, .. } if *instance_id == vsi(9))
    ));
}

#[test]
fn battle_session_events_fill_the_outbox_in_order_and_are_popped_once() {
    let mut h = H::new(ServerMode::Simple);
    // No handler: nothing is queued.
    h.ready_process(1);
    h.start(1, vec![]);
    assert!(h.s.outbox.is_empty());
    // A handler must name an existing virtual server.
    assert!(matches!(
        h.refused(Command::PutEventHandler(EventHandler {
            title_region_id: tr(),
            name: vs_name("h1"),
            vs: vs_name("vs-a"),
            events: vec![],
            args: "{}".into(),
        })),
        Rejection::NotFound { .. }
    ));
    h.put_vs(vs_spec());
    h.ok(Command::PutEventHandler(EventHandler {
        title_region_id: tr(),
        name: vs_name("h1"),
        vs: vs_name("vs-a"),
        events: vec!["event_battle_session_started".into()],
        args: r#"{"a":1}"#.into(),
    }));
    assert!(matches!(
        h.refused(Command::PutEventHandler(EventHandler {
            title_region_id: tr(),
            name: vs_name("h2"),
            vs: vs_name("vs-a"),
            events: vec!["nope".into()],
            args: "{}".into(),
        })),
        Rejection::BadRequest(_)
    ));
    h.ready_process(2);
    h.start(2, vec![]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(2),
        process_id: pid(2),
    });
    let ev = h.ok(Command::ActivateBattleSession {
        process_id: pid(2),
        battle_session_id: bs(2),
    });
    assert!(ev.iter().any(|e| matches!(e, Event::OutboxAppended { .. })));
    let q = &h.s.outbox[&tr()];
    assert_eq!(q.len(), 1, "only the subscribed event");
    let head = q[0].clone();
    assert_eq!(head.event_name, "event_battle_session_started");
    assert_eq!(head.seq, 1);
    assert_eq!(
        head.trigger_id,
        crate::vs_state::trigger_id(&tr(), head.event_time, 1)
    );
    assert!(head.event_data.contains(bs(2).as_str()));
    let record = |outcome| TriggerRecord {
        trigger_id: head.trigger_id.clone(),
        kind: TriggerKind::Event,
        name: head.event_name.clone(),
        vs: vs_name("vs-a"),
        at: T0,
        attempt: 1,
        status_code: Some(500),
        response: "x".repeat(5000),
        latency_ms: 3,
        outcome,
    };
    // A failed attempt is logged; the event stays at the head.
    h.ok(Command::RecordTrigger {
        title_region_id: tr(),
        record: record(TriggerOutcome::Retrying),
        pop_seq: None,
        task: None,
    });
    assert_eq!(h.s.outbox[&tr()].len(), 1);
    assert!(h.s.trigger_log[&tr()][0].response.len() < 1100, "clipped");
    // Delivery pops it, once: a repeat of the same command changes nothing.
    for expect in [Applied::Done, Applied::Unchanged] {
        assert_eq!(
            h.run(Command::RecordTrigger {
                title_region_id: tr(),
                record: record(TriggerOutcome::Delivered),
                pop_seq: Some(1),
                task: None,
            })
            .0,
            Ok(expect)
        );
    }
    assert!(h.s.outbox.is_empty());
    assert_eq!(h.s.trigger_log[&tr()].len(), 2);
}

#[test]
fn tasks_validate_schedules_and_remember_their_last_firing() {
    let mut h = H::new(ServerMode::Simple);
    h.put_vs(vs_spec());
    let task = |schedule| Command::PutTask {
        title_region_id: tr(),
        name: vs_name("t1"),
        vs: vs_name("vs-a"),
        schedule,
        args: "{}".into(),
        enabled: true,
    };
    for bad in [
        TaskSchedule::Interval { secs: 0 },
        TaskSchedule::Cron {
            expr: "61 * * * *".into(),
        },
        TaskSchedule::Cron {
            expr: "0 0 30 2 *".into(),
        },
    ] {
        assert!(matches!(h.refused(task(bad)), Rejection::BadRequest(_)));
    }
    h.ok(task(TaskSchedule::Cron {
        expr: "*/5 * * * *".into(),
    }));
    h.ok(Command::RecordTrigger {
        title_region_id: tr(),
        record: TriggerRecord {
            trigger_id: "t".into(),
            kind: TriggerKind::Task,
            name: "t1".into(),
            vs: vs_name("vs-a"),
            at: T0 + 5,
            attempt: 1,
            status_code: Some(200),
            response: String::new(),
            latency_ms: 1,
            outcome: TriggerOutcome::Delivered,
        },
        pop_seq: None,
        task: Some(vs_name("t1")),
    });
    assert_eq!(h.s.tasks[&tr()][&vs_name("t1")].last_fired_at, Some(T0 + 5));
    // Replacing the task keeps its history.
    h.ok(task(TaskSchedule::Interval { secs: 60 }));
    assert_eq!(h.s.tasks[&tr()][&vs_name("t1")].last_fired_at, Some(T0 + 5));
}
