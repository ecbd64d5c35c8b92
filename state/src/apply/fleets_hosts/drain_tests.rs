//! Transition tests of fleet versions, fleet deletion and host drains.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

#[test]
fn a_changed_definition_is_a_new_version_and_the_same_one_is_not() {
    let mut h = H::new(ServerMode::Simple);
    assert_eq!(h.s.fleets[&fleet_id()].version, 1);
    assert_eq!(h.s.fleets[&fleet_id()].updated_at, T0);
    let (r, e) = h.run(Command::PutFleet(fleet(ServerMode::Simple)));
    assert_eq!(r, Ok(Applied::Unchanged));
    assert!(e.is_empty());
    let mut f = fleet(ServerMode::Simple);
    f.runtime.args = vec!["--v2".into()];
    h.at += 5;
    h.ok(Command::PutFleet(f));
    let now = &h.s.fleets[&fleet_id()];
    assert_eq!((now.version, now.updated_at), (2, T0 + 5));
    assert_eq!(now.runtime.args, vec!["--v2".to_string()]);
}

#[test]
fn bad_scaling_is_refused_and_changes_nothing() {
    let mut h = H::new(ServerMode::Simple);
    let mut f = fleet(ServerMode::Simple);
    f.scaling = ScalingPolicy {
        min_processes: 5,
        max_processes: 2,
        ..Default::default()
    };
    let r = h.refused(Command::PutFleet(f));
    assert!(r.to_string().contains("scaling.min_processes"), "{r}");
}

#[test]
fn delete_is_refused_while_a_session_runs_unless_forced() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.active_session(1, 1);
    let r = h.refused(Command::DeleteFleet {
        fleet_id: fleet_id(),
        force: false,
    });
    assert!(matches!(r, Rejection::Conflict(_)), "{r:?}");
    h.ok(Command::DeleteFleet {
        fleet_id: fleet_id(),
        force: true,
    });
    assert!(!h.s.fleets.contains_key(&fleet_id()));
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    assert_eq!(h.process(1).status, ProcessStatus::Terminating);
    assert_eq!(h.process(2).status, ProcessStatus::Terminating);
    assert!(matches!(
        h.refused(Command::DeleteFleet {
            fleet_id: fleet_id(),
            force: true
        }),
        Rejection::NotFound { .. }
    ));
}

#[test]
fn delete_without_sessions_needs_no_force() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ok(Command::DeleteFleet {
        fleet_id: fleet_id(),
        force: false,
    });
    assert_eq!(h.process(1).status, ProcessStatus::Terminating);
}

#[test]
fn a_draining_host_takes_no_session_and_its_processes_end_when_idle() {
    let mut h = H::new(ServerMode::Parallel { max_sessions: 2 });
    h.ready_process(1);
    h.ready_process(2);
    h.active_session(1, 1);
    let drain = |d| Command::SetHostDraining {
        host_id: host_id(),
        draining: d,
    };
    h.ok(drain(true));
    // The idle process is asked to terminate; the busy one keeps its session.
    assert_eq!(h.process(2).status, ProcessStatus::Terminating);
    assert_eq!(h.process(1).status, ProcessStatus::Ready);
    assert_eq!(h.session(1).status, BattleSessionStatus::Active);
    assert_eq!(h.s.drain_progress(&host_id()), Some(1));
    // Process 1 has a free slot but is not placeable any more.
    assert!(h.s.placeable_processes(&fleet_id()).next().is_none());
    h.start(2, vec![]);
    assert_eq!(h.placement(2).status, PlacementStatus::Pending);
    let (r, _) = h.run(Command::AssignPlacement {
        placement_id: pl(2),
        process_id: pid(1),
    });
    assert!(r.is_err(), "a draining host was given a session");
    // A process that becomes ready on the draining host is ended at once.
    h.ready_process(3);
    assert_eq!(h.process(3).status, ProcessStatus::Terminating);
    // The session ends: the host is drained and its last process asked to end.
    h.ok(Command::TerminateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert_eq!(h.process(1).status, ProcessStatus::Terminating);
    assert_eq!(h.s.drain_progress(&host_id()), Some(0));
    // Repeating is no change; undrain makes new processes placeable again.
    assert_eq!(h.run(drain(true)).0, Ok(Applied::Unchanged));
    h.ok(drain(false));
    assert_eq!(h.s.drain_progress(&host_id()), None);
    h.ready_process(4);
    assert_eq!(h.process(4).status, ProcessStatus::Ready);
    assert!(h.s.placeable_processes(&fleet_id()).any(|p| p.id == pid(4)));
    assert!(matches!(
        h.refused(Command::SetHostDraining {
            host_id: HostId::new_unchecked("nope"),
            draining: true
        }),
        Rejection::NotFound { .. }
    ));
}
