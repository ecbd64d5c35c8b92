//! Transition tests of virtual servers and their instances.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

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
