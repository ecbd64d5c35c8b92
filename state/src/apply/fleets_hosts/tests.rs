//! Transition tests of fleets and hosts.

use crate::test_fixture::*;
use crate::*;
use respawn_types::agent::LiveProcess;
use respawn_types::*;

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
            role: Default::default(),
        },
        LiveProcess {
            process_id: pid(3),
            pid: 103,
            port: Some(7003),
            log_paths: vec![],
            ending: false,
            role: Default::default(),
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
