//! Transition tests of DS processes.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

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
            pid: 1,
            fleet_version: 0
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
