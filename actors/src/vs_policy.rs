//! Pure decisions for virtual servers: where instances go and which ones
//! leave ([`plan_region`]), how many instances a load needs ([`autoscale`]),
//! when a failed delivery is tried again ([`retry_delay`]) and when a task
//! fires next ([`next_task_fire`]). The VS actor only carries them out.

use respawn_state::ClusterState;
use respawn_types::cron::CronSchedule;
use respawn_types::*;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VsAction {
    /// Start a new instance of `vs` at `version` on `host`.
    Place {
        vs: VsName,
        version: u64,
        host: HostId,
    },
    /// Stop an instance.
    Retire {
        instance: VsInstanceId,
        reason: String,
    },
}

/// Brings every virtual server of a title region towards its desired
/// instance count at its current version.
///
/// - `connected(h)`: the host's agent holds a link now (new instances go only there);
/// - `lost(h)`: the host has been gone long enough that its instances are
///   written off (retired, so the edge stops sending them traffic, and replaced).
///
/// Instances of an older version are retired once the current version has
/// as many instances running as wanted (a rolling update), or at once when
/// they are not serving anyway. Hosts are chosen by fewest instances, then id.
pub fn plan_region(
    s: &ClusterState,
    tr: &TitleRegionId,
    connected: impl Fn(&HostId) -> bool,
    lost: impl Fn(&HostId) -> bool,
) -> Vec<VsAction> {
    let mut actions = Vec::new();
    // Instances per connected host, across all virtual servers (spread load).
    let mut load: BTreeMap<&HostId, usize> = s
        .hosts
        .keys()
        .filter(|h| connected(h))
        .map(|h| (h, 0))
        .collect();
    for i in s.vs_instances.values() {
        if i.status != VsInstanceStatus::Stopping {
            if let Some(n) = load.get_mut(&i.host_id) {
                *n += 1;
            }
        }
    }
    let servers = s.virtual_servers.get(tr);
    // Instances whose server is gone or stopped.
    for i in s.vs_instances.values() {
        if &i.title_region_id != tr || i.status == VsInstanceStatus::Stopping {
            continue;
        }
        let vs = servers.and_then(|m| m.get(&i.vs));
        if vs.is_none_or(|v| v.desired == VsDesired::Stopped) {
            actions.push(VsAction::Retire {
                instance: i.id.clone(),
                reason: "virtual server stopped".into(),
            });
        }
    }
    let Some(servers) = servers else {
        return actions;
    };
    for vs in servers.values() {
        if vs.desired != VsDesired::Running {
            continue;
        }
        let want = vs.scale.clamp(1, vs.spec.max_instances) as usize;
        let live: Vec<&VsInstance> = s
            .vs_instances_of(tr, &vs.name)
            .filter(|i| i.status != VsInstanceStatus::Stopping)
            .collect();
        let mut current = Vec::new();
        for i in &live {
            if lost(&i.host_id) {
                actions.push(VsAction::Retire {
                    instance: i.id.clone(),
                    reason: format!("host {} is gone", i.host_id),
                });
            } else if i.version == vs.version {
                current.push(*i);
            }
        }
        if current.len() < want {
            for _ in current.len()..want {
                let Some((host, n)) = load.iter_mut().min_by_key(|(h, n)| (**n, **h)) else {
                    break;
                };
                *n += 1;
                actions.push(VsAction::Place {
                    vs: vs.name.clone(),
                    version: vs.version,
                    host: (*host).clone(),
                });
            }
        } else if current.len() > want {
            let rank = |i: &VsInstance| match i.status {
                VsInstanceStatus::Abnormal => 0,
                VsInstanceStatus::Deploying => 1,
                _ => 2,
            };
            let mut surplus = current.clone();
            // Worst first; among equals the newest first.
            surplus.sort_by(|a, b| {
                rank(a)
                    .cmp(&rank(b))
                    .then(b.created_at.cmp(&a.created_at))
                    .then(b.id.cmp(&a.id))
            });
            for i in surplus.into_iter().take(current.len() - want) {
                actions.push(VsAction::Retire {
                    instance: i.id.clone(),
                    reason: "scaled down".into(),
                });
            }
        }
        let running = current
            .iter()
            .filter(|i| i.status == VsInstanceStatus::Running)
            .count();
        for i in &live {
            if i.version != vs.version
                && !lost(&i.host_id)
                && (running >= want || i.status != VsInstanceStatus::Running)
            {
                actions.push(VsAction::Retire {
                    instance: i.id.clone(),
                    reason: format!("replaced by version {}", vs.version),
                });
            }
        }
    }
    actions
}

/// The autoscaler: instances needed for `peak` in-flight requests at the
/// VS's target concurrency, within 1..=max_instances. Scaling up is
/// immediate; scaling down waits until fewer instances have sufficed for
/// the VS's scale-down delay. `last_needed` is when the current scale was
/// last needed; returns the new scale (if it changes) and the new `last_needed`.
pub fn autoscale(
    vs: &VirtualServer,
    peak: u32,
    last_needed: UnixMillis,
    now: UnixMillis,
) -> (Option<u32>, UnixMillis) {
    let target = vs.spec.target_concurrency.max(1);
    let want = peak.div_ceil(target).clamp(1, vs.spec.max_instances);
    let current = vs.scale.clamp(1, vs.spec.max_instances);
    let last_needed = if want >= current { now } else { last_needed };
    if want > current {
        return (Some(want), now);
    }
    let delay = u64::from(vs.spec.scale_down_delay_secs) * 1000;
    if want < current && now.saturating_sub(last_needed) >= delay {
        return (Some(want), now);
    }
    (None, last_needed)
}

/// Attempts of one event before it is given up (logged as such).
pub const EVENT_MAX_ATTEMPTS: u32 = 8;

/// Wait before attempt `attempt + 1` after `attempt` failed: 500 ms doubling, at most 30 s.
pub fn retry_delay(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(30_000))
}

/// When a task fires next: an interval counts from its last firing (or its
/// creation); a cron schedule gives the first match after that. A task that
/// missed firings while no leader ran fires once, not once per miss.
pub fn next_task_fire(task: &VsTask) -> Option<UnixMillis> {
    if !task.enabled {
        return None;
    }
    let from = task.last_fired_at.unwrap_or(task.created_at);
    match &task.schedule {
        TaskSchedule::Interval { secs } => Some(from.saturating_add(secs.saturating_mul(1000))),
        TaskSchedule::Cron { expr } => CronSchedule::parse(expr).ok()?.next_after(from),
    }
}

#[cfg(test)]
mod tests {
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
            plan_region(&self.s, &tr(), |h| c.contains(h.as_str()), |_| false)
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
        assert!(
            matches!(&plan[0], VsAction::Place { host, version: 1, .. } if host.as_str() == "h1")
        );
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
        let plan = plan_region(&w.s, &tr(), |h| h.as_str() == "h2", lost);
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
    fn retry_delays_double_and_cap() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_millis(1000));
        assert_eq!(retry_delay(4), Duration::from_millis(4000));
        assert_eq!(retry_delay(30), Duration::from_secs(30));
    }

    #[test]
    fn task_fire_times() {
        let mut t = VsTask {
            title_region_id: tr(),
            name: name(),
            vs: name(),
            schedule: TaskSchedule::Interval { secs: 5 },
            args: "{}".into(),
            enabled: true,
            last_fired_at: None,
            created_at: 1_000,
        };
        assert_eq!(next_task_fire(&t), Some(6_000));
        t.last_fired_at = Some(10_000);
        assert_eq!(next_task_fire(&t), Some(15_000));
        t.schedule = TaskSchedule::Cron {
            expr: "*/2 * * * *".into(),
        };
        assert_eq!(next_task_fire(&t), Some(120_000));
        t.enabled = false;
        assert_eq!(next_task_fire(&t), None);
    }
}
