//! What agents are told about VS instances: the start command with its
//! spec and system variables ([`instance_spec`]), the stop command, and
//! when a command that no report answered is sent again.

use crate::ports::Site;
use respawn_state::ClusterState;
use respawn_types::agent::ServerToAgent;
use respawn_types::*;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Start/stop commands not acknowledged by a report are re-sent this often.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);

/// What [`instance_spec`] reads: the instances, the virtual servers and the
/// title regions.
#[derive(Clone, Copy)]
pub struct InstanceSpecView<'a> {
    pub instances: &'a BTreeMap<VsInstanceId, VsInstance>,
    pub servers: &'a BTreeMap<TitleRegionId, BTreeMap<VsName, VirtualServer>>,
    pub title_regions: &'a BTreeMap<TitleRegionId, TitleRegion>,
    pub storages: &'a BTreeMap<TitleRegionId, BTreeMap<StorageName, Storage>>,
}

impl<'a> InstanceSpecView<'a> {
    pub fn of(s: &'a ClusterState) -> Self {
        InstanceSpecView {
            instances: &s.vs_instances,
            servers: &s.virtual_servers,
            title_regions: &s.title_regions,
            storages: &s.storages,
        }
    }
}

/// `PGOS_VS_Storage_<Name>` of storage `name` of `tr` (seed §3.2.1,
/// §3.2.2): `Some(None)` while a managed Redis has no running instance yet
/// (the instance waits for it), `None` for a storage that is gone (deleted
/// with force: the variable is left out).
pub fn storage_env(
    s: InstanceSpecView<'_>,
    tr: &TitleRegionId,
    name: &StorageName,
) -> Option<Option<String>> {
    let storage = s.storages.get(tr)?.get(name)?;
    Some(match &storage.spec {
        StorageSpec::ExternalRedis { network, .. }
        | StorageSpec::ExternalMongodb { network, .. } => Some(storage.env_value(network, "")),
        StorageSpec::ManagedRedis { .. } => {
            let vs = name.managed_vs();
            s.instances
                .values()
                .filter(|i| &i.title_region_id == tr && i.vs == vs)
                .find_map(|i| match (i.status, i.port) {
                    (VsInstanceStatus::Running, Some(port)) => Some(storage.env_value(
                        &[StorageEndpoint {
                            inner_ip: i.ip.clone(),
                            port,
                            role: None,
                        }],
                        i.id.as_str(),
                    )),
                    _ => None,
                })
        }
    })
}

/// The spec an agent needs to run instance `id`, with seed §3.2's system
/// variables. `None` also while a managed storage it uses is not running.
pub fn instance_spec(
    s: InstanceSpecView<'_>,
    id: &VsInstanceId,
    site: &Site,
) -> Option<VsInstanceSpec> {
    let i = s.instances.get(id)?;
    let vs = s.servers.get(&i.title_region_id)?.get(&i.vs)?;
    let spec = vs
        .versions
        .iter()
        .find(|v| v.version == i.version)
        .map(|v| v.spec.clone())
        .unwrap_or_else(|| vs.spec.clone());
    let tr = s.title_regions.get(&i.title_region_id)?;
    let mut env = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    put("PGOS_Title_ID", tr.title_id.as_str());
    put("PGOS_Title_Name", &tr.title_name);
    put(
        "PGOS_Title_Logo",
        site.title_logos.get(&tr.id).map_or("", String::as_str),
    );
    put("PGOS_Title_Region_ID", tr.id.as_str());
    put("PGOS_Title_Region_Name", &tr.name);
    put("PGOS_Title_Region_Type", &site.region_type);
    put("PGOS_Title_Region_Cloud_Provider", &site.cloud_provider);
    put(
        "PGOS_Title_Region_Backend_API_Domain",
        &site.backend_api_domain,
    );
    put("PGOS_Title_Region_CLI_API_Domain", &site.backend_api_domain);
    put("PGOS_VS_Name", i.vs.as_str());
    put("PGOS_VS_Version", &i.version.to_string());
    put("PGOS_VS_Instance_ID", i.id.as_str());
    put(
        "PGOS_VS_Intranet_Domain",
        &respawn_types::intranet::intranet_domain(&i.vs, &tr.id, &tr.title_id),
    );
    for name in &spec.storages {
        match storage_env(s, &i.title_region_id, name) {
            Some(Some(v)) => {
                env.insert(name.env_name(), v);
            }
            Some(None) => return None,
            None => {}
        }
    }
    Some(VsInstanceSpec {
        instance_id: i.id.clone(),
        title_region_id: i.title_region_id.clone(),
        vs: i.vs.clone(),
        version: i.version,
        spec,
        system_env: env,
    })
}

/// What the agent is told for an instance in `status`: stop it when it is
/// stopping, otherwise start it from its spec. `Ok(None)`: the instance or
/// its virtual server is gone, or a managed storage it uses is not running
/// yet: nothing to send now.
pub fn instance_command(
    s: InstanceSpecView<'_>,
    id: &VsInstanceId,
    status: VsInstanceStatus,
    site: &Site,
) -> Result<Option<ServerToAgent>, serde_json::Error> {
    if status == VsInstanceStatus::Stopping {
        return Ok(Some(ServerToAgent::StopVsInstance {
            instance_id: id.clone(),
        }));
    }
    let Some(spec) = instance_spec(s, id, site) else {
        return Ok(None);
    };
    let spec_json = serde_json::to_string(&spec)?;
    Ok(Some(ServerToAgent::StartVsInstance { spec_json }))
}

/// An instance being started or stopped: its agent must hear about it
/// until a report says it did (agents treat both commands as idempotent).
pub fn in_motion(status: VsInstanceStatus) -> bool {
    matches!(
        status,
        VsInstanceStatus::Deploying | VsInstanceStatus::Stopping
    )
}

/// The instances of region `tr` in motion, with their host and status: a
/// new leader sends their commands again.
pub fn moving_instances<'a>(
    instances: impl IntoIterator<Item = &'a VsInstance>,
    tr: &TitleRegionId,
) -> Vec<(VsInstanceId, HostId, VsInstanceStatus)> {
    instances
        .into_iter()
        .filter(|i| &i.title_region_id == tr && in_motion(i.status))
        .map(|i| (i.id.clone(), i.host_id.clone(), i.status))
        .collect()
}

/// What to do after an instance changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// Send its agent the command for its status.
    Send,
    /// Nothing more to send: forget the last command sent.
    Forget,
}

/// An instance changed to `status` (`removed`: it is gone); `sent`: a
/// command for it is already out. A new or stopping instance gets its
/// command; an instance an agent reported on needs no re-send.
pub fn on_instance_changed(status: VsInstanceStatus, removed: bool, sent: bool) -> FollowUp {
    let fresh = status == VsInstanceStatus::Deploying && !sent;
    if removed {
        FollowUp::Forget
    } else if status == VsInstanceStatus::Stopping || fresh {
        FollowUp::Send
    } else {
        FollowUp::Forget
    }
}

/// The instances whose last command went out at least [`RESEND_AFTER`] before `now`.
pub fn resend_due(sent: &HashMap<VsInstanceId, Instant>, now: Instant) -> Vec<VsInstanceId> {
    sent.iter()
        .filter(|(_, t)| now.saturating_duration_since(**t) >= RESEND_AFTER)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Whether an instance due for a re-send (`None`: gone) still needs it:
/// its host and status if so.
pub fn resend_to(instance: Option<&VsInstance>) -> Option<(HostId, VsInstanceStatus)> {
    instance
        .filter(|i| in_motion(i.status))
        .map(|i| (i.host_id.clone(), i.status))
}

#[cfg(test)]
mod tests;
