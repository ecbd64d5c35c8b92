//! Transition tests of the autoscaler's commands.

use crate::test_fixture::*;
use crate::*;
use respawn_types::scaling::{ScalingAction, ScalingDecision};
use respawn_types::*;
use std::collections::BTreeMap;

fn decision(at: UnixMillis) -> ScalingDecision {
    ScalingDecision {
        at,
        action: ScalingAction::ScaleIn,
        desired_processes: 1,
        desired_hosts: 1,
        stopped: 2,
        reason: "test".into(),
    }
}

fn autoscale(targets: &[(HostId, u32)], stop: &[u32], at: UnixMillis) -> Command {
    Command::Autoscale {
        fleet_id: fleet_id(),
        targets: targets.iter().cloned().collect(),
        stop: stop.iter().map(|n| (pid(*n), "scale-in".into())).collect(),
        decision: decision(at),
    }
}

#[test]
fn processes_carry_the_fleet_version_they_were_launched_with() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    assert_eq!(h.process(1).fleet_version, 1);
    h.ok(Command::ProcessStarted {
        process_id: pid(2),
        host_id: host_id(),
        pid: 5,
        fleet_version: 7,
    });
    assert_eq!(h.process(2).fleet_version, 7);
}

#[test]
fn scale_in_stops_idle_processes_and_never_a_busy_one() {
    let mut mode = fleet(ServerMode::Simple);
    mode.runtime.processes_per_host = 4;
    let mut h = H::new(ServerMode::Simple);
    h.ok(Command::PutFleet(mode));
    for n in 1..=3 {
        h.ready_process(n);
    }
    h.active_session(1, 1);
    let ev = h.ok(autoscale(&[(host_id(), 2)], &[1, 2], h.at));
    assert!(ev.contains(&Event::ProcessTargetsChanged {
        fleet_id: fleet_id()
    }));
    assert_eq!(h.process(1).status, ProcessStatus::Ready, "busy: kept");
    assert_eq!(h.process(2).status, ProcessStatus::Terminating);
    assert_eq!(h.process(3).status, ProcessStatus::Ready);
    assert_eq!(h.session(1).status, BattleSessionStatus::Active);
    let rec = &h.s.scaling[&fleet_id()];
    assert_eq!(rec.targets, BTreeMap::from([(host_id(), 2)]));
    assert_eq!(rec.decisions, 1);
    assert_eq!(rec.last.as_ref().map(|d| d.reason.as_str()), Some("test"));
    // The same targets again: no event.
    let ev = h.ok(autoscale(&[(host_id(), 2)], &[], h.at));
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(h.s.scaling[&fleet_id()].decisions, 2);
}

#[test]
fn bad_targets_are_refused_and_change_nothing() {
    let mut h = H::new(ServerMode::Simple);
    h.refused(autoscale(&[(host_id(), 1000)], &[], h.at)); // above processes_per_host
    h.refused(autoscale(&[(HostId::new_unchecked("other"), 1)], &[], h.at));
    h.refused(Command::Autoscale {
        fleet_id: FleetId::new_unchecked("nope"),
        targets: BTreeMap::new(),
        stop: vec![],
        decision: decision(h.at),
    });
}

#[test]
fn manual_desired_stays_within_min_and_max_and_goes_with_the_fleet() {
    let mut h = H::new(ServerMode::Simple);
    let mut f = fleet(ServerMode::Simple);
    f.scaling.min_processes = 2;
    f.scaling.max_processes = 10;
    h.ok(Command::PutFleet(f));
    let set = |d| Command::SetFleetDesired {
        fleet_id: fleet_id(),
        desired: Some(d),
    };
    let r = h.refused(set(11));
    assert!(r.to_string().contains("desired"), "{r}");
    h.refused(set(1));
    h.ok(set(4));
    assert_eq!(h.s.scaling[&fleet_id()].manual_desired, Some(4));
    let (r, _) = h.run(set(4));
    assert_eq!(r, Ok(Applied::Unchanged));
    h.ok(Command::SetFleetDesired {
        fleet_id: fleet_id(),
        desired: None,
    });
    assert_eq!(h.s.scaling[&fleet_id()].manual_desired, None);
    h.ok(Command::DeleteFleet {
        fleet_id: fleet_id(),
        force: false,
    });
    assert!(!h.s.scaling.contains_key(&fleet_id()));
}

#[test]
fn a_draining_host_is_told_to_launch_nothing_and_undrain_gives_its_target_back() {
    let drain = |d| Command::SetHostDraining {
        host_id: host_id(),
        draining: d,
    };
    let target = |h: &H| {
        h.s.fleet_for_host(&fleet_id(), &host_id())
            .map(|f| f.host_target)
    };
    // Fill policy: no target (processes_per_host), 0 while draining.
    let mut h = H::new(ServerMode::Simple);
    assert_eq!(target(&h), Some(None));
    h.ok(drain(true));
    assert_eq!(target(&h), Some(Some(0)));
    h.ok(drain(false));
    assert_eq!(target(&h), Some(None));
    // Autoscaled: the committed target, 0 while draining, back after.
    let mut f = fleet(ServerMode::Simple);
    f.runtime.processes_per_host = 4;
    f.scaling.max_processes = 10;
    f.scaling.buffer = 1;
    h.ok(Command::PutFleet(f));
    h.ok(autoscale(&[(host_id(), 3)], &[], h.at));
    assert_eq!(target(&h), Some(Some(3)));
    h.ok(drain(true));
    assert_eq!(target(&h), Some(Some(0)));
    h.ok(drain(false));
    assert_eq!(target(&h), Some(Some(3)));
    // Forking: one parent (no target), none while draining.
    let mut h = H::new(ServerMode::Forking);
    assert_eq!(target(&h), Some(None));
    h.ok(drain(true));
    assert_eq!(target(&h), Some(Some(0)));
}

#[test]
fn the_scale_in_clock_is_committed_and_cleared() {
    let mut h = H::new(ServerMode::Simple);
    let clock = |since| Command::SetScaleInClock {
        fleet_id: fleet_id(),
        surplus_since: since,
    };
    // No surplus on a fleet without a record: nothing to change, no record.
    assert_eq!(h.run(clock(None)).0, Ok(Applied::Unchanged));
    assert!(!h.s.scaling.contains_key(&fleet_id()));
    h.ok(clock(Some(T0)));
    assert_eq!(h.s.scaling[&fleet_id()].surplus_since, Some(T0));
    // The same again is no change (a new leader re-proposing it).
    assert_eq!(h.run(clock(Some(T0))).0, Ok(Applied::Unchanged));
    // A decision leaves the clock alone; clearing it ends the surplus.
    h.ok(autoscale(&[(host_id(), 1)], &[], h.at));
    assert_eq!(h.s.scaling[&fleet_id()].surplus_since, Some(T0));
    h.ok(clock(None));
    assert_eq!(h.s.scaling[&fleet_id()].surplus_since, None);
    assert_eq!(h.s.scaling[&fleet_id()].decisions, 1);
    assert!(matches!(
        h.refused(Command::SetScaleInClock {
            fleet_id: FleetId::new_unchecked("nope"),
            surplus_since: Some(T0),
        }),
        Rejection::NotFound { .. }
    ));
}
