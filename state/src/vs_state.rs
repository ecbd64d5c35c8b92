//! The virtual-server half of [`ClusterState::apply`]: definitions and
//! their versions, instances as agents report them, event handlers, tasks,
//! the per-title-region event outbox and the trigger log.
//!
//! Like the rest of `apply`, everything here is a pure function of the state
//! and the committed command: every check comes before any change.

use crate::command::*;
use crate::state::ClusterState;
use respawn_types::*;
use std::collections::BTreeSet;

type Step = Result<Applied, Rejection>;

fn bad(msg: impl Into<String>) -> Rejection {
    Rejection::BadRequest(msg.into())
}

/// Longest reason/detail/response text kept in replicated state.
const TEXT_LIMIT: usize = 1024;

fn clip(s: &str) -> String {
    if s.len() <= TEXT_LIMIT {
        return s.to_string();
    }
    let mut end = TEXT_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn check_json_object(what: &str, s: &str) -> Result<(), Rejection> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(bad(format!("{what} must be a JSON object"))),
    }
}

/// The trigger id of a title region's `seq`-th event, committed at `at`: a
/// UUID (version 8) made of a hash of the title region and the commit time,
/// then the sequence number. Every node computes the same id; no two events
/// of a title region share one; and another cluster (or a fresh data
/// directory) does not reuse the ids of this one, since its events are
/// committed at other times.
pub fn trigger_id(tr: &TitleRegionId, at: UnixMillis, seq: u64) -> String {
    let h = fnv1a64(tr.as_str().bytes().chain(at.to_be_bytes()));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&h.to_be_bytes());
    bytes[8..].copy_from_slice(&seq.to_be_bytes());
    uuid::Uuid::new_v8(bytes).to_string()
}

impl ClusterState {
    pub fn virtual_server(&self, tr: &TitleRegionId, name: &VsName) -> Option<&VirtualServer> {
        self.virtual_servers.get(tr).and_then(|m| m.get(name))
    }

    /// Instances of a virtual server, any version, in id order.
    pub fn vs_instances_of<'a>(
        &'a self,
        tr: &'a TitleRegionId,
        name: &'a VsName,
    ) -> impl Iterator<Item = &'a VsInstance> + 'a {
        self.vs_instances
            .values()
            .filter(move |i| &i.title_region_id == tr && &i.vs == name)
    }

    fn vs_mut(
        &mut self,
        tr: &TitleRegionId,
        name: &VsName,
    ) -> Result<&mut VirtualServer, Rejection> {
        self.virtual_servers
            .get_mut(tr)
            .and_then(|m| m.get_mut(name))
            .ok_or_else(|| Rejection::not_found("virtual server", name))
    }

    fn retire_instance(
        &mut self,
        at: UnixMillis,
        id: &VsInstanceId,
        reason: &str,
        ev: &mut Vec<Event>,
    ) {
        if let Some(i) = self.vs_instances.get_mut(id) {
            if i.status == VsInstanceStatus::Stopping {
                return;
            }
            i.status = VsInstanceStatus::Stopping;
            i.detail = Some(clip(reason));
            i.updated_at = at;
            ev.push(Event::VsInstanceChanged {
                instance_id: id.clone(),
                host_id: i.host_id.clone(),
                status: VsInstanceStatus::Stopping,
                removed: false,
            });
        }
    }

    fn retire_all(
        &mut self,
        at: UnixMillis,
        tr: &TitleRegionId,
        name: &VsName,
        reason: &str,
        ev: &mut Vec<Event>,
    ) {
        let ids: Vec<VsInstanceId> = self
            .vs_instances_of(tr, name)
            .map(|i| i.id.clone())
            .collect();
        for id in ids {
            self.retire_instance(at, &id, reason, ev);
        }
    }

    pub(crate) fn apply_vs(&mut self, at: UnixMillis, cmd: &Command, ev: &mut Vec<Event>) -> Step {
        match cmd {
            Command::PutVirtualServer {
                title_region_id,
                name,
                spec,
            } => {
                self.title_region(title_region_id)?;
                spec.validate().map_err(bad)?;
                let changed = Event::VsChanged {
                    title_region_id: title_region_id.clone(),
                    name: name.clone(),
                };
                let map = self
                    .virtual_servers
                    .entry(title_region_id.clone())
                    .or_default();
                match map.get_mut(name) {
                    Some(vs) => {
                        if &vs.spec == spec {
                            return Ok(Applied::Unchanged);
                        }
                        vs.version += 1;
                        vs.spec = spec.clone();
                        vs.scale = vs.scale.clamp(1, spec.max_instances);
                        vs.updated_at = at;
                        vs.versions.push(VsVersion {
                            version: vs.version,
                            spec: spec.clone(),
                            created_at: at,
                        });
                        if vs.versions.len() > VS_VERSIONS_KEPT {
                            let extra = vs.versions.len() - VS_VERSIONS_KEPT;
                            vs.versions.drain(..extra);
                        }
                    }
                    None => {
                        map.insert(
                            name.clone(),
                            VirtualServer {
                                title_region_id: title_region_id.clone(),
                                name: name.clone(),
                                version: 1,
                                spec: spec.clone(),
                                desired: VsDesired::Running,
                                scale: 1,
                                created_at: at,
                                updated_at: at,
                                versions: vec![VsVersion {
                                    version: 1,
                                    spec: spec.clone(),
                                    created_at: at,
                                }],
                            },
                        );
                    }
                }
                ev.push(changed);
                Ok(Applied::Done)
            }
            Command::SetVirtualServerDesired {
                title_region_id,
                name,
                desired,
            } => {
                let vs = self.vs_mut(title_region_id, name)?;
                if vs.desired == *desired {
                    return Ok(Applied::Unchanged);
                }
                vs.desired = *desired;
                vs.scale = 1;
                vs.updated_at = at;
                if *desired == VsDesired::Stopped {
                    self.retire_all(at, title_region_id, name, "virtual server stopped", ev);
                }
                ev.push(Event::VsChanged {
                    title_region_id: title_region_id.clone(),
                    name: name.clone(),
                });
                Ok(Applied::Done)
            }
            Command::DeleteVirtualServer {
                title_region_id,
                name,
            } => {
                self.vs_mut(title_region_id, name)?;
                if let Some(m) = self.virtual_servers.get_mut(title_region_id) {
                    m.remove(name);
                    if m.is_empty() {
                        self.virtual_servers.remove(title_region_id);
                    }
                }
                self.retire_all(at, title_region_id, name, "virtual server deleted", ev);
                ev.push(Event::VsChanged {
                    title_region_id: title_region_id.clone(),
                    name: name.clone(),
                });
                Ok(Applied::Done)
            }
            Command::ScaleVirtualServer {
                title_region_id,
                name,
                scale,
            } => {
                let vs = self.vs_mut(title_region_id, name)?;
                let scale = (*scale).clamp(1, vs.spec.max_instances);
                if vs.scale == scale {
                    return Ok(Applied::Unchanged);
                }
                vs.scale = scale;
                ev.push(Event::VsChanged {
                    title_region_id: title_region_id.clone(),
                    name: name.clone(),
                });
                Ok(Applied::Done)
            }
            Command::PlaceVsInstance {
                instance_id,
                title_region_id,
                name,
                version,
                host_id,
            } => {
                if self.vs_instances.contains_key(instance_id) {
                    return Ok(Applied::Unchanged);
                }
                let vs = self
                    .virtual_server(title_region_id, name)
                    .ok_or_else(|| Rejection::not_found("virtual server", name))?;
                if vs.desired != VsDesired::Running {
                    return Err(Rejection::InvalidState(format!(
                        "virtual server {name} is stopped"
                    )));
                }
                if vs.version != *version {
                    return Err(Rejection::InvalidState(format!(
                        "virtual server {name} is at version {}, not {version}",
                        vs.version
                    )));
                }
                let host = self
                    .hosts
                    .get(host_id)
                    .ok_or_else(|| Rejection::not_found("host", host_id))?;
                let inst = VsInstance {
                    id: instance_id.clone(),
                    title_region_id: title_region_id.clone(),
                    vs: name.clone(),
                    version: *version,
                    host_id: host_id.clone(),
                    status: VsInstanceStatus::Deploying,
                    reason: None,
                    detail: None,
                    ip: host.ip.clone(),
                    port: None,
                    limits: None,
                    restarts: 0,
                    created_at: at,
                    updated_at: at,
                };
                self.vs_instances.insert(instance_id.clone(), inst);
                ev.push(Event::VsInstanceChanged {
                    instance_id: instance_id.clone(),
                    host_id: host_id.clone(),
                    status: VsInstanceStatus::Deploying,
                    removed: false,
                });
                Ok(Applied::Done)
            }
            Command::RetireVsInstance {
                instance_id,
                reason,
            } => {
                let i = self
                    .vs_instances
                    .get(instance_id)
                    .ok_or_else(|| Rejection::not_found("virtual server instance", instance_id))?;
                if i.status == VsInstanceStatus::Stopping {
                    return Ok(Applied::Unchanged);
                }
                self.retire_instance(at, instance_id, reason, ev);
                Ok(Applied::Done)
            }
            Command::ReportVsInstance {
                instance_id,
                host_id,
                report,
            } => self.report_instance(at, instance_id, host_id, report, ev),
            Command::PutEventHandler(h) => {
                self.title_region(&h.title_region_id)?;
                if self.virtual_server(&h.title_region_id, &h.vs).is_none() {
                    return Err(Rejection::not_found("virtual server", &h.vs));
                }
                check_json_object("args", &h.args)?;
                for e in &h.events {
                    if !VS_EVENT_NAMES.contains(&e.as_str()) {
                        return Err(bad(format!(
                            "unknown event '{e}'; known events: {}",
                            VS_EVENT_NAMES.join(", ")
                        )));
                    }
                }
                let m = self
                    .event_handlers
                    .entry(h.title_region_id.clone())
                    .or_default();
                if m.get(&h.name) == Some(h) {
                    return Ok(Applied::Unchanged);
                }
                m.insert(h.name.clone(), h.clone());
                ev.push(Event::TriggersChanged {
                    title_region_id: h.title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::DeleteEventHandler {
                title_region_id,
                name,
            } => {
                let removed = self
                    .event_handlers
                    .get_mut(title_region_id)
                    .and_then(|m| m.remove(name));
                if removed.is_none() {
                    return Err(Rejection::not_found("event handler", name));
                }
                ev.push(Event::TriggersChanged {
                    title_region_id: title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::PutTask {
                title_region_id,
                name,
                vs,
                schedule,
                args,
                enabled,
            } => {
                self.title_region(title_region_id)?;
                if self.virtual_server(title_region_id, vs).is_none() {
                    return Err(Rejection::not_found("virtual server", vs));
                }
                check_json_object("args", args)?;
                match schedule {
                    TaskSchedule::Interval { secs } if *secs == 0 || *secs > 31_536_000 => {
                        return Err(bad("interval secs must be between 1 and 31536000"))
                    }
                    TaskSchedule::Cron { expr } => {
                        let c = respawn_types::cron::CronSchedule::parse(expr)
                            .map_err(|e| bad(format!("cron: {e}")))?;
                        if c.next_after(at).is_none() {
                            return Err(bad(format!("cron '{expr}' never fires")));
                        }
                    }
                    _ => {}
                }
                let m = self.tasks.entry(title_region_id.clone()).or_default();
                let (created_at, last_fired_at) = m
                    .get(name)
                    .map(|t| (t.created_at, t.last_fired_at))
                    .unwrap_or((at, None));
                m.insert(
                    name.clone(),
                    VsTask {
                        title_region_id: title_region_id.clone(),
                        name: name.clone(),
                        vs: vs.clone(),
                        schedule: schedule.clone(),
                        args: args.clone(),
                        enabled: *enabled,
                        last_fired_at,
                        created_at,
                    },
                );
                ev.push(Event::TriggersChanged {
                    title_region_id: title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::DeleteTask {
                title_region_id,
                name,
            } => {
                let removed = self
                    .tasks
                    .get_mut(title_region_id)
                    .and_then(|m| m.remove(name));
                if removed.is_none() {
                    return Err(Rejection::not_found("task", name));
                }
                ev.push(Event::TriggersChanged {
                    title_region_id: title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::RecordTrigger {
                title_region_id,
                record,
                pop_seq,
                task,
            } => {
                self.title_region(title_region_id)?;
                if let Some(seq) = pop_seq {
                    let q = self.outbox.get_mut(title_region_id);
                    match q {
                        Some(q) if q.front().map(|e| e.seq) == Some(*seq) => {
                            q.pop_front();
                            if q.is_empty() {
                                self.outbox.remove(title_region_id);
                            }
                        }
                        // Already popped (a retry of this command): log nothing twice.
                        _ => return Ok(Applied::Unchanged),
                    }
                }
                if let Some(t) = task {
                    if let Some(t) = self
                        .tasks
                        .get_mut(title_region_id)
                        .and_then(|m| m.get_mut(t))
                    {
                        t.last_fired_at = Some(record.at);
                    }
                }
                let mut r = record.clone();
                r.response = clip(&r.response);
                let log = self.trigger_log.entry(title_region_id.clone()).or_default();
                log.push_back(r);
                while log.len() > TRIGGER_LOG_KEPT {
                    log.pop_front();
                }
                if pop_seq.is_some() {
                    // The next event may go.
                    ev.push(Event::OutboxAppended {
                        title_region_id: title_region_id.clone(),
                    });
                }
                Ok(Applied::Done)
            }
            _ => Err(bad("not a virtual server command")),
        }
    }

    fn report_instance(
        &mut self,
        at: UnixMillis,
        id: &VsInstanceId,
        host_id: &HostId,
        report: &VsInstanceReport,
        ev: &mut Vec<Event>,
    ) -> Step {
        let i = self
            .vs_instances
            .get(id)
            .ok_or_else(|| Rejection::not_found("virtual server instance", id))?;
        if &i.host_id != host_id {
            return Err(bad(format!("instance {id} does not run on host {host_id}")));
        }
        if let VsInstanceReport::Running { port: 0, .. } = report {
            return Err(bad("port must be between 1 and 65535"));
        }
        if matches!(report, VsInstanceReport::Stopped) {
            self.vs_instances.remove(id);
            ev.push(Event::VsInstanceChanged {
                instance_id: id.clone(),
                host_id: host_id.clone(),
                status: VsInstanceStatus::Stopping,
                removed: true,
            });
            return Ok(Applied::Done);
        }
        if i.status == VsInstanceStatus::Stopping {
            // Late news about an instance on its way out.
            return Ok(Applied::Unchanged);
        }
        let Some(i) = self.vs_instances.get_mut(id) else {
            return Err(Rejection::not_found("virtual server instance", id));
        };
        let before = (i.status, i.port, i.reason.clone(), i.detail.clone());
        match report {
            VsInstanceReport::Deploying => {
                if matches!(
                    i.status,
                    VsInstanceStatus::Running | VsInstanceStatus::Abnormal
                ) {
                    i.restarts += 1;
                }
                i.status = VsInstanceStatus::Deploying;
                i.port = None;
            }
            VsInstanceReport::Running { port, limits } => {
                i.status = VsInstanceStatus::Running;
                i.port = Some(*port);
                i.limits = Some(clip(limits));
                i.reason = None;
                i.detail = None;
            }
            VsInstanceReport::Abnormal { reason, detail } => {
                i.status = VsInstanceStatus::Abnormal;
                i.port = None;
                i.reason = Some(clip(reason));
                i.detail = Some(clip(detail));
            }
            VsInstanceReport::Stopped => {}
        }
        if before == (i.status, i.port, i.reason.clone(), i.detail.clone()) {
            return Ok(Applied::Unchanged);
        }
        i.updated_at = at;
        ev.push(Event::VsInstanceChanged {
            instance_id: id.clone(),
            host_id: host_id.clone(),
            status: i.status,
            removed: false,
        });
        Ok(Applied::Done)
    }

    /// After an agent (re)registers: instances it no longer runs are gone;
    /// instances it runs that the state does not know must be stopped.
    pub(crate) fn reconcile_vs_host(
        &mut self,
        _at: UnixMillis,
        host: &HostId,
        live: &[VsInstanceId],
        ev: &mut Vec<Event>,
    ) {
        let live: BTreeSet<&VsInstanceId> = live.iter().collect();
        let gone: Vec<VsInstanceId> = self
            .vs_instances
            .values()
            .filter(|i| &i.host_id == host && !live.contains(&i.id))
            .map(|i| i.id.clone())
            .collect();
        for id in gone {
            self.vs_instances.remove(&id);
            ev.push(Event::VsInstanceChanged {
                instance_id: id,
                host_id: host.clone(),
                status: VsInstanceStatus::Stopping,
                removed: true,
            });
        }
        for id in live {
            if !self.vs_instances.contains_key(id) {
                ev.push(Event::VsInstanceOrphaned {
                    instance_id: id.clone(),
                    host_id: host.clone(),
                });
            }
        }
    }

    /// Turns battle-session events into PGOS events for the title regions
    /// that bound handlers to them, appended to their outboxes in order.
    pub(crate) fn emit_pgos_events(&mut self, at: UnixMillis, events: &mut Vec<Event>) {
        if self.event_handlers.is_empty() {
            return;
        }
        let mut out: Vec<(TitleRegionId, &'static str, serde_json::Value)> = Vec::new();
        for e in events.iter() {
            match e {
                Event::PlacementFinished {
                    placement_id,
                    status,
                } => {
                    let Some(p) = self.placements.get(placement_id) else {
                        continue;
                    };
                    let name = match status {
                        PlacementStatus::Fulfilled => "event_battle_session_placement_fulfilled",
                        PlacementStatus::TimedOut => "event_battle_session_placement_timed_out",
                        PlacementStatus::Failed => "event_battle_session_placement_failed",
                        _ => continue,
                    };
                    let s = self.battle_sessions.get(&p.battle_session_id);
                    out.push((
                        p.title_region_id.clone(),
                        name,
                        serde_json::json!({
                            "placement_id": p.id,
                            "battle_session_id": p.battle_session_id,
                            "fleet_id": p.fleet_id,
                            "status": status,
                            "reason": p.reason,
                            "ip": s.and_then(|s| s.ip.clone()),
                            "port": s.and_then(|s| s.port),
                        }),
                    ));
                }
                Event::SessionActivated {
                    battle_session_id, ..
                }
                | Event::SessionTerminated { battle_session_id } => {
                    let Some(s) = self.battle_sessions.get(battle_session_id) else {
                        continue;
                    };
                    let name = if matches!(e, Event::SessionActivated { .. }) {
                        "event_battle_session_started"
                    } else {
                        "event_battle_session_ended"
                    };
                    out.push((
                        s.title_region_id.clone(),
                        name,
                        serde_json::json!({
                            "battle_session_id": s.id,
                            "placement_id": s.placement_id,
                            "fleet_id": s.fleet_id,
                            "process_id": s.process_id,
                            "ip": s.ip,
                            "port": s.port,
                            "reason": s.termination_reason,
                        }),
                    ));
                }
                Event::PlayerChanged {
                    player_battle_session_id,
                    status,
                } => {
                    let name = match status {
                        PlayerBattleSessionStatus::Active => "event_player_joined_battle_session",
                        PlayerBattleSessionStatus::Completed
                        | PlayerBattleSessionStatus::Disconnected => {
                            "event_player_left_battle_session"
                        }
                        _ => continue,
                    };
                    let Some(p) = self.player_battle_sessions.get(player_battle_session_id) else {
                        continue;
                    };
                    out.push((
                        p.title_region_id.clone(),
                        name,
                        serde_json::json!({
                            "player_id": p.player_id,
                            "player_battle_session_id": p.id,
                            "battle_session_id": p.battle_session_id,
                            "status": status,
                        }),
                    ));
                }
                _ => {}
            }
        }
        let mut touched = BTreeSet::new();
        for (tr, name, data) in out {
            let Some(handlers) = self.event_handlers.get(&tr) else {
                continue;
            };
            let targets: Vec<(VsName, VsName, String)> = handlers
                .values()
                .filter(|h| h.events.is_empty() || h.events.iter().any(|e| e == name))
                .map(|h| (h.name.clone(), h.vs.clone(), h.args.clone()))
                .collect();
            for (handler, vs, args) in targets {
                let seq = self.outbox_seq.entry(tr.clone()).or_default();
                *seq += 1;
                let seq = *seq;
                let q = self.outbox.entry(tr.clone()).or_default();
                q.push_back(OutboxEvent {
                    seq,
                    trigger_id: trigger_id(&tr, at, seq),
                    handler,
                    vs,
                    event_name: name.to_string(),
                    event_time: at,
                    event_data: data.to_string(),
                    args,
                });
                if q.len() > OUTBOX_LIMIT {
                    q.pop_front();
                }
                touched.insert(tr.clone());
            }
        }
        for tr in touched {
            events.push(Event::OutboxAppended {
                title_region_id: tr,
            });
        }
    }
}
