//! Tests of the region planner and the autoscaler.

use super::*;
use respawn_state::{Command, Request};
use std::collections::BTreeSet;

fn spec(max: u32) -> VsSpec {
    VsSpec {
        source: VsSource::Process {
            command: "/bin/true".into(),
        },
        args: vec![],
        env: Default::default(),
        listen_port: 8080,
        cpu_millicores: 500,
        memory_mb: 128,
        max_instances: max,
        block_client_requests: false,
        access_log: false,
        metric_urls: vec![],
        target_concurrency: 4,
        scale_down_delay_secs: 60,
        storages: Vec::new(),
    }
}

fn tr() -> TitleRegionId {
    TitleRegionId::new_unchecked("tr-1")
}
fn name() -> VsName {
    VsName::parse("vs-a").unwrap()
}

struct W {
    s: ClusterState,
    at: u64,
}

impl W {
    fn new(hosts: &[&str]) -> W {
        let mut w = W {
            s: ClusterState::default(),
            at: 1_000,
        };
        w.ok(Command::PutTitleRegion(TitleRegion {
            id: tr(),
            title_id: TitleId::new_unchecked("t"),
            name: "r".into(),
            title_name: "t".into(),
            secret_id: SecretId::new_unchecked("sid-1"),
            secret_key: "0123456789abcdef0123".into(),
        }));
        w.ok(Command::PutFleet(Fleet {
            id: FleetId::new_unchecked("f"),
            title_region_id: tr(),
            name: "f".into(),
            mode: ServerMode::Simple,
            runtime: RuntimeConfig {
                launch_path: "/x".into(),
                args: vec![],
                env: Default::default(),
                processes_per_host: 1,
            },
            activation_timeout_ms: 60_000,
            placement_timeout_ms: 60_000,
            health_check_interval_ms: 5_000,
            process_ending_grace_ms: 60_000,
            max_placement_attempts: 3,
            scaling: Default::default(),
            labels: Default::default(),
            version: 0,
            updated_at: 0,
            host_target: None,
        }));
        for h in hosts {
            w.ok(Command::RegisterHost {
                host: Host {
                    id: HostId::new_unchecked(*h),
                    fleet_id: FleetId::new_unchecked("f"),
                    ip: "10.0.0.1".into(),
                    registered_at: 0,
                },
                live: vec![],
                live_vs: vec![],
            });
        }
        w
    }
    fn ok(&mut self, c: Command) {
        self.at += 1;
        let (r, _) = self.s.apply(&Request {
            at: self.at,
            command: c,
        });
        r.unwrap();
    }
    fn plan(&self, connected: &[&str]) -> Vec<VsAction> {
        let c: BTreeSet<String> = connected.iter().map(|s| s.to_string()).collect();
        plan_region(
            RegionView::of(&self.s, &tr()),
            |h| c.contains(h.as_str()),
            |_| false,
        )
    }
    /// Carries out a plan, reporting new instances in `status`.
    fn carry(&mut self, plan: Vec<VsAction>, n: &mut u32) {
        for a in plan {
            match a {
                VsAction::Place { vs, version, host } => {
                    *n += 1;
                    let id = VsInstanceId::new_unchecked(format!("vsi-{n:03}"));
                    self.ok(Command::PlaceVsInstance {
                        instance_id: id.clone(),
                        title_region_id: tr(),
                        name: vs,
                        version,
                        host_id: host.clone(),
                    });
                    self.ok(Command::ReportVsInstance {
                        instance_id: id,
                        host_id: host,
                        report: VsInstanceReport::Running {
                            port: 9000,
                            limits: "none".into(),
                        },
                    });
                }
                VsAction::Retire { instance, reason } => {
                    self.ok(Command::RetireVsInstance {
                        instance_id: instance,
                        reason,
                    });
                }
            }
        }
    }
    fn live(&self) -> Vec<&VsInstance> {
        self.s
            .vs_instances
            .values()
            .filter(|i| i.status != VsInstanceStatus::Stopping)
            .collect()
    }
}

#[test]
fn places_one_instance_then_nothing_more() {
    let mut w = W::new(&["h1", "h2"]);
    w.ok(Command::PutVirtualServer {
        title_region_id: tr(),
        name: name(),
        spec: spec(3),
    });
    let plan = w.plan(&["h1", "h2"]);
    assert_eq!(plan.len(), 1);
    assert!(matches!(&plan[0], VsAction::Place { host, version: 1, .. } if host.as_str() == "h1"));
    let mut n = 0;
    w.carry(plan, &mut n);
    assert!(w.plan(&["h1", "h2"]).is_empty());
}

#[test]
fn no_connected_host_places_nothing() {
    let mut w = W::new(&["h1"]);
    w.ok(Command::PutVirtualServer {
        title_region_id: tr(),
        name: name(),
        spec: spec(3),
    });
    assert!(w.plan(&[]).is_empty());
}

#[test]
fn scale_up_spreads_and_scale_down_retires_newest() {
    let mut w = W::new(&["h1", "h2"]);
    w.ok(Command::PutVirtualServer {
        title_region_id: tr(),
        name: name(),
        spec: spec(3),
    });
    let mut n = 0;
    let p = w.plan(&["h1", "h2"]);
    w.carry(p, &mut n);
    w.ok(Command::ScaleVirtualServer {
        title_region_id: tr(),
        name: name(),
        scale: 3,
    });
    let plan = w.plan(&["h1", "h2"]);
    let hosts: Vec<&str> = plan
        .iter()
        .map(|a| match a {
            VsAction::Place { host, .. } => host.as_str(),
            _ => panic!("{a:?}"),
        })
        .collect();
    assert_eq!(hosts, ["h2", "h1"]);
    w.carry(plan, &mut n);
    assert_eq!(w.live().len(), 3);
    w.ok(Command::ScaleVirtualServer {
        title_region_id: tr(),
        name: name(),
        scale: 1,
    });
    let plan = w.plan(&["h1", "h2"]);
    assert_eq!(plan.len(), 2);
    let retired: BTreeSet<String> = plan
        .iter()
        .map(|a| match a {
            VsAction::Retire { instance, .. } => instance.to_string(),
            _ => panic!("{a:?}"),
        })
        .collect();
    assert_eq!(retired, ["vsi-002", "vsi-003"].map(String::from).into());
    w.carry(plan, &mut n);
    assert_eq!(w.live().len(), 1);
}

#[test]
fn scale_is_clamped_to_max_instances() {
    let mut w = W::new(&["h1"]);
    w.ok(Command::PutVirtualServer {
        title_region_id: tr(),
        name: name(),
        spec: spec(2),
    });
    w.ok(Command::ScaleVirtualServer {
        title_region_id: tr(),
        name: name(),
        scale: 50,
    });
    assert_eq!(w.s.virtual_server(&tr(), &name()).unwrap().scale, 2);
    assert_eq!(w.plan(&["h1"]).len(), 2);
}

#[test]
fn rolling_update_retires_old_version_once_new_runs() {
    let mut w = W::new(&["h1"]);
    w.ok(Command::PutVirtualServer {
        title_region_id: tr(),
        name: name(),
        spec: spec(3),
    });
    let mut n = 0;
    let p = w.plan(&["h1"]);
    w.carry(p, &mut n);
    let mut s2 = spec(3);
    s2.env.insert("V".into(), "2".into());
    w.ok(Command::PutVirtualServer {
        title_region_id: tr(),
        name: name(),
        spec: s2,
    });
    // The new version is placed; the old one keeps serving meanwhile.
    let plan = w.plan(&["h1"]);
    assert_eq!(plan.len(), 1);
    assert!(matches!(&plan[0], VsAction::Place { version: 2, .. }));
    w.ok(Command::PlaceVsInstance {
        instance_id: VsInstanceId::new_unchecked("vsi-new"),
        title_region_id: tr(),
        name: name(),
        version: 2,
        host_id: HostId::new_unchecked("h1"),
    });
    assert!(
        w.plan(&["h1"]).is_empty(),
        "old instance kept while v2 deploys"
    );
    w.ok(Command::ReportVsInstance {
        instance_id: VsInstanceId::new_unchecked("vsi-new"),
        host_id: HostId::new_unchecked("h1"),
        report: VsInstanceReport::Running {
            port: 1,
            limits: "none".into(),
        },
    });
    let plan = w.plan(&["h1"]);
    assert_eq!(
        plan,
        vec![VsAction::Retire {
            instance: VsInstanceId::new_unchecked("vsi-001"),
            reason: "replaced by version 2".into()
        }]
    );
}

#[test]
fn stopped_server_places_nothing_and_lost_hosts_are_replaced() {
    let mut w = W::new(&["h1", "h2"]);
    w.ok(Command::PutVirtualServer {
        title_region_id: tr(),
        name: name(),
        spec: spec(3),
    });
    let mut n = 0;
    let p = w.plan(&["h1", "h2"]);
    w.carry(p, &mut n);
    let lost = |h: &HostId| h.as_str() == "h1";
    let t = tr();
    let plan = plan_region(RegionView::of(&w.s, &t), |h| h.as_str() == "h2", lost);
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(matches!(&plan[0], VsAction::Retire { .. }));
    assert!(matches!(&plan[1], VsAction::Place { host, .. } if host.as_str() == "h2"));
    w.ok(Command::SetVirtualServerDesired {
        title_region_id: tr(),
        name: name(),
        desired: VsDesired::Stopped,
    });
    assert!(w.live().is_empty(), "stop retires every instance");
    assert!(w.plan(&["h1", "h2"]).is_empty());
}

fn vs(scale: u32, max: u32) -> VirtualServer {
    VirtualServer {
        title_region_id: tr(),
        name: name(),
        version: 1,
        spec: spec(max),
        desired: VsDesired::Running,
        scale,
        created_at: 0,
        updated_at: 0,
        versions: vec![],
    }
}

#[test]
fn autoscale_up_at_once_down_after_the_delay() {
    // target 4 per instance, max 3.
    assert_eq!(autoscale(&vs(1, 3), 0, 0, 10), (None, 10));
    assert_eq!(autoscale(&vs(1, 3), 4, 0, 10), (None, 10));
    assert_eq!(autoscale(&vs(1, 3), 5, 0, 10), (Some(2), 10));
    assert_eq!(autoscale(&vs(1, 3), 100, 0, 10), (Some(3), 10));
    // Quiet, but not for long enough.
    assert_eq!(autoscale(&vs(3, 3), 0, 10, 59_000), (None, 10));
    assert_eq!(autoscale(&vs(3, 3), 0, 10, 60_010), (Some(1), 60_010));
    // Busy enough for the current scale resets the clock.
    assert_eq!(autoscale(&vs(2, 3), 6, 10, 59_000), (None, 59_000));
}

#[test]
fn actions_become_commands() {
    let place = VsAction::Place {
        vs: name(),
        version: 2,
        host: HostId::new_unchecked("h1"),
    };
    assert_eq!(
        place.into_command(&tr(), || VsInstanceId::new_unchecked("vsi-9")),
        Command::PlaceVsInstance {
            instance_id: VsInstanceId::new_unchecked("vsi-9"),
            title_region_id: tr(),
            name: name(),
            version: 2,
            host_id: HostId::new_unchecked("h1"),
        }
    );
    let retire = VsAction::Retire {
        instance: VsInstanceId::new_unchecked("vsi-1"),
        reason: "scaled down".into(),
    };
    assert_eq!(
        retire.into_command(&tr(), || unreachable!("no new instance")),
        Command::RetireVsInstance {
            instance_id: VsInstanceId::new_unchecked("vsi-1"),
            reason: "scaled down".into(),
        }
    );
}

#[test]
fn rescale_runs_the_autoscaler_over_running_servers() {
    let mut stopped = vs(1, 3);
    stopped.name = VsName::parse("vs-b").unwrap();
    stopped.desired = VsDesired::Stopped;
    let servers = [vs(1, 3), stopped];
    let mut last = HashMap::new();
    // 9 in flight at 4 per instance: 3 instances; the stopped one is left alone.
    let got = rescale(&servers, |_| 9, &mut last, 10);
    assert_eq!(
        got,
        vec![Rescale {
            vs: name(),
            from: 1,
            to: 3,
            peak: 9
        }]
    );
    assert_eq!(last, HashMap::from([(name(), 10)]));
    assert_eq!(
        got[0].command(&tr()),
        Command::ScaleVirtualServer {
            title_region_id: tr(),
            name: name(),
            scale: 3
        }
    );
    // Quiet at scale 3: nothing until the scale-down delay has passed.
    let servers = [vs(3, 3)];
    assert!(rescale(&servers, |_| 0, &mut last, 59_000).is_empty());
    assert_eq!(last[&name()], 10);
    let got = rescale(&servers, |_| 0, &mut last, 60_010);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].from, got[0].to), (3, 1));
}

#[test]
fn hosts_away_long_enough_are_lost() {
    let t0 = Instant::now();
    let (h1, h2) = (HostId::new_unchecked("h1"), HostId::new_unchecked("h2"));
    let mut away = HashMap::new();
    track_away(&mut away, [&h1, &h2], |h| h == &h1, t0);
    assert_eq!(away, HashMap::from([(h2.clone(), t0)]));
    // Still away later: the first time seen away is kept.
    track_away(&mut away, [&h2], |_| false, t0 + HOST_LOST_AFTER);
    assert_eq!(away[&h2], t0);
    assert!(!host_lost(
        away.get(&h2).copied(),
        t0 + Duration::from_secs(14)
    ));
    assert!(host_lost(away.get(&h2).copied(), t0 + HOST_LOST_AFTER));
    assert!(!host_lost(away.get(&h1).copied(), t0 + HOST_LOST_AFTER));
    // Back: no longer away.
    track_away(&mut away, [&h2], |_| true, t0 + HOST_LOST_AFTER);
    assert!(away.is_empty());
}
