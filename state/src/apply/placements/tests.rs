//! Transition tests of placements and battle sessions.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

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
    // Every end other than FULFILLED has a reason (the OpenAPI says so).
    let reason = h
        .placement(1)
        .reason
        .clone()
        .expect("a TIMED_OUT placement has a reason");
    assert!(reason.contains("placement timeout"), "{reason}");
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
    // Another process cannot activate it: forbidden (docs/sdk-protocol.md §4).
    assert!(matches!(
        h.refused(Command::ActivateBattleSession {
            process_id: pid(2),
            battle_session_id: bs(1)
        }),
        Rejection::Forbidden(_)
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
        Ok(Applied::Unchanged),
        "a repeated ActivateBattleSession on an ACTIVE session is answered 200 (retry-safe)"
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
        max_outstanding: None,
    });
    // Issued again for the same title region: a repeated command, not a
    // conflict (see retention's tests for when it is one).
    h.ok(Command::IssueBattleSessionId {
        title_region_id: tr(),
        battle_session_id: bs(1),
        max_outstanding: None,
    });
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
    // The id is used now: the same request again is answered as done
    // (`repeated_start_placement_is_idempotent`), another one refused.
    assert_eq!(
        h.run(sp(1, fleet_id(), 2, vec![])).0,
        Ok(Applied::Unchanged)
    );
    assert!(matches!(
        h.refused(sp(1, fleet_id(), 3, vec![])),
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
        max_outstanding: None,
    });
    assert!(matches!(
        h.refused(sp(5, fleet_id(), 2, vec![])),
        Rejection::NotFound { .. }
    ));
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
        Rejection::Forbidden(_)
    ));
    h.ok(Command::TerminateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
}

/// A repeated StartPlacement (same placement id, battle session and
/// parameters; new player battle session ids minted) is answered
/// `Unchanged` and changes nothing, whatever the placement's status since;
/// any difference is still a conflict.
#[test]
fn repeated_start_placement_is_idempotent() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.start(1, vec![(pbs(1), player(1))]);
    let repeat = |players: Vec<(PlayerBattleSessionId, PlayerSpec)>, max: u32| {
        Command::StartPlacement(StartPlacement {
            placement_id: pl(1),
            title_region_id: tr(),
            fleet_id: fleet_id(),
            battle_session_id: bs(1),
            max_players: max,
            properties: Default::default(),
            players,
            timeout_ms: None,
        })
    };
    let same = repeat(vec![(pbs(9), player(1))], 4);
    let before = h.s.clone();
    let (r, ev) = h.run(same.clone());
    assert_eq!(r, Ok(Applied::Unchanged));
    assert!(ev.is_empty());
    assert_eq!(h.s, before, "a repeat changes nothing");
    assert!(!h.s.player_battle_sessions.contains_key(&pbs(9)));

    // Different players, maximum, timeout, or another placement id for the
    // same battle session: conflicts.
    assert!(matches!(
        h.refused(repeat(vec![(pbs(9), player(2))], 4)),
        Rejection::Conflict(_)
    ));
    assert!(matches!(
        h.refused(repeat(vec![], 4)),
        Rejection::Conflict(_)
    ));
    assert!(matches!(
        h.refused(repeat(vec![(pbs(9), player(1))], 3)),
        Rejection::Conflict(_)
    ));
    let Command::StartPlacement(mut sp) = same.clone() else {
        unreachable!()
    };
    sp.timeout_ms = Some(12_345);
    assert!(matches!(
        h.refused(Command::StartPlacement(sp.clone())),
        Rejection::Conflict(_)
    ));
    sp.timeout_ms = None;
    sp.placement_id = pl(2);
    assert!(matches!(
        h.refused(Command::StartPlacement(sp)),
        Rejection::Conflict(_)
    ));

    // Still answered the same once the placement has moved on.
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    h.ok(Command::ActivateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    let before = h.s.clone();
    let (r, ev) = h.run(same);
    assert_eq!(r, Ok(Applied::Unchanged));
    assert!(ev.is_empty());
    assert_eq!(h.s, before);
    assert_eq!(h.placement(1).status, PlacementStatus::Fulfilled);
}
