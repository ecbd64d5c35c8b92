//! Virtual servers and their instances: definitions and their versions,
//! desired state and scale, instances placed by the scheduler and reported
//! by agents, and the reconciliation after an agent (re)registers.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::limits::TEXT_LIMIT;
use respawn_types::text::clip_with_ellipsis;
use respawn_types::*;
use std::collections::BTreeSet;

impl ClusterState {
    /// `PutVirtualServer`, `SetVirtualServerDesired`, `DeleteVirtualServer`,
    /// `ScaleVirtualServer`, `PlaceVsInstance`, `RetireVsInstance`, `ReportVsInstance`.
    pub(super) fn apply_virtual_server(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::PutVirtualServer {
                title_region_id,
                name,
                spec,
            } => self.vs_storage_check(title_region_id, name, Some(spec))?,
            Command::DeleteVirtualServer {
                title_region_id,
                name,
            } => self.vs_storage_check(title_region_id, name, None)?,
            _ => {}
        }
        self.apply_vs_unchecked(at, cmd, ev)
    }

    /// [`Self::apply_virtual_server`] without the storage checks: also what
    /// a managed storage's changes apply to its virtual server.
    pub(super) fn apply_vs_unchecked(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::PutVirtualServer {
                title_region_id,
                name,
                spec,
            } => {
                self.title_region(title_region_id)?;
                spec.validate().map_err(Rejection::bad_request)?;
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
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request("not a virtual server command")),
        }
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
            i.detail = Some(clip_with_ellipsis(reason, TEXT_LIMIT));
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

    fn report_instance(
        &mut self,
        at: UnixMillis,
        id: &VsInstanceId,
        host_id: &HostId,
        report: &VsInstanceReport,
        ev: &mut Vec<Event>,
    ) -> Response {
        let i = self
            .vs_instances
            .get(id)
            .ok_or_else(|| Rejection::not_found("virtual server instance", id))?;
        if &i.host_id != host_id {
            return Err(Rejection::bad_request(format!(
                "instance {id} does not run on host {host_id}"
            )));
        }
        if let VsInstanceReport::Running { port: 0, .. } = report {
            return Err(Rejection::bad_request("port must be between 1 and 65535"));
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
                i.limits = Some(clip_with_ellipsis(limits, TEXT_LIMIT));
                i.reason = None;
                i.detail = None;
            }
            VsInstanceReport::Abnormal { reason, detail } => {
                i.status = VsInstanceStatus::Abnormal;
                i.port = None;
                i.reason = Some(clip_with_ellipsis(reason, TEXT_LIMIT));
                i.detail = Some(clip_with_ellipsis(detail, TEXT_LIMIT));
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
    pub(super) fn reconcile_vs_host(
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
}

#[cfg(test)]
mod tests;
