//! Where a title region's VS instances go and which ones leave
//! ([`plan_region`]), how many instances a load needs ([`autoscale`],
//! [`rescale`]), and when a host that went away is written off.

use respawn_state::{ClusterState, Command};
use respawn_types::*;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A host away this long has its instances written off.
pub const HOST_LOST_AFTER: Duration = Duration::from_secs(15);

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

impl VsAction {
    /// The command that carries the action out in title region `tr`; a
    /// placed instance gets the id `new_instance` makes.
    pub fn into_command(
        self,
        tr: &TitleRegionId,
        new_instance: impl FnOnce() -> VsInstanceId,
    ) -> Command {
        match self {
            VsAction::Place { vs, version, host } => Command::PlaceVsInstance {
                instance_id: new_instance(),
                title_region_id: tr.clone(),
                name: vs,
                version,
                host_id: host,
            },
            VsAction::Retire { instance, reason } => Command::RetireVsInstance {
                instance_id: instance,
                reason,
            },
        }
    }
}

/// What [`plan_region`] reads: the cluster's hosts, every VS instance (the
/// load per host counts all regions) and the region's virtual servers.
#[derive(Clone, Copy)]
pub struct RegionView<'a> {
    pub tr: &'a TitleRegionId,
    pub hosts: &'a BTreeMap<HostId, Host>,
    pub instances: &'a BTreeMap<VsInstanceId, VsInstance>,
    pub servers: Option<&'a BTreeMap<VsName, VirtualServer>>,
}

impl<'a> RegionView<'a> {
    pub fn of(s: &'a ClusterState, tr: &'a TitleRegionId) -> Self {
        RegionView {
            tr,
            hosts: &s.hosts,
            instances: &s.vs_instances,
            servers: s.virtual_servers.get(tr),
        }
    }
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
    s: RegionView<'_>,
    connected: impl Fn(&HostId) -> bool,
    lost: impl Fn(&HostId) -> bool,
) -> Vec<VsAction> {
    let tr = s.tr;
    let mut actions = Vec::new();
    // Instances per connected host, across all virtual servers (spread load).
    let mut load: BTreeMap<&HostId, usize> = s
        .hosts
        .keys()
        .filter(|h| connected(h))
        .map(|h| (h, 0))
        .collect();
    for i in s.instances.values() {
        if i.status != VsInstanceStatus::Stopping {
            if let Some(n) = load.get_mut(&i.host_id) {
                *n += 1;
            }
        }
    }
    let servers = s.servers;
    // Instances whose server is gone or stopped.
    for i in s.instances.values() {
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
            .instances
            .values()
            .filter(|i| &i.title_region_id == tr && i.vs == vs.name)
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

/// One scale change the autoscaler decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rescale {
    pub vs: VsName,
    pub from: u32,
    pub to: u32,
    /// The load that made it.
    pub peak: u32,
}

impl Rescale {
    /// The command that commits the new scale in title region `tr`.
    pub fn command(&self, tr: &TitleRegionId) -> Command {
        Command::ScaleVirtualServer {
            title_region_id: tr.clone(),
            name: self.vs.clone(),
            scale: self.to,
        }
    }
}

/// Runs [`autoscale`] over the running servers of a region: `peak(vs)` is
/// the load the edges report, `last_needed` remembers per VS when its
/// current scale was last needed (updated here).
pub fn rescale<'a>(
    servers: impl IntoIterator<Item = &'a VirtualServer>,
    peak: impl Fn(&VsName) -> u32,
    last_needed: &mut HashMap<VsName, UnixMillis>,
    now: UnixMillis,
) -> Vec<Rescale> {
    let mut out = Vec::new();
    for vs in servers
        .into_iter()
        .filter(|v| v.desired == VsDesired::Running)
    {
        let peak = peak(&vs.name);
        let last = *last_needed.entry(vs.name.clone()).or_insert(now);
        let (scale, last) = autoscale(vs, peak, last, now);
        last_needed.insert(vs.name.clone(), last);
        if let Some(to) = scale {
            out.push(Rescale {
                vs: vs.name.clone(),
                from: vs.scale,
                to,
                peak,
            });
        }
    }
    out
}

/// Keeps `away` (hosts seen disconnected, and since when) up to date with
/// the hosts' links at `now`.
pub fn track_away<'a>(
    away: &mut HashMap<HostId, Instant>,
    hosts: impl IntoIterator<Item = &'a HostId>,
    connected: impl Fn(&HostId) -> bool,
    now: Instant,
) {
    for h in hosts {
        if connected(h) {
            away.remove(h);
        } else {
            away.entry(h.clone()).or_insert(now);
        }
    }
}

/// Whether a host away since `away_since` is written off at `now`.
pub fn host_lost(away_since: Option<Instant>, now: Instant) -> bool {
    away_since.is_some_and(|t| now.saturating_duration_since(t) >= HOST_LOST_AFTER)
}

#[cfg(test)]
mod tests;
