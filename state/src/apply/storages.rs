//! VS storages: managed Redis (run as the virtual server `storage-<name>`,
//! created and deleted with the storage) and external Redis or MongoDB.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::storage::{MANAGED_VS_PREFIX, MAX_STORAGES_PER_REGION};
use respawn_types::*;

impl ClusterState {
    /// `PutStorage`, `DeleteStorage`.
    pub(super) fn apply_storage(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::PutStorage {
                title_region_id,
                name,
                spec,
                password,
            } => {
                self.title_region(title_region_id)?;
                spec.validate().map_err(Rejection::bad_request)?;
                let map = self.storages.entry(title_region_id.clone()).or_default();
                let storage = match map.get_mut(name) {
                    Some(s) => {
                        if s.spec.is_managed() != spec.is_managed() {
                            return Err(Rejection::invalid_state(format!(
                                "storage '{name}' is {}: delete it before creating it as {}",
                                kind(s.spec.is_managed()),
                                kind(spec.is_managed())
                            )));
                        }
                        if &s.spec == spec {
                            return Ok(Applied::Unchanged);
                        }
                        s.spec = spec.clone();
                        s.updated_at = at;
                        s.clone()
                    }
                    None => {
                        if map.len() >= MAX_STORAGES_PER_REGION {
                            return Err(Rejection::TooMany(format!(
                                "title region '{title_region_id}' already has {MAX_STORAGES_PER_REGION} storages"
                            )));
                        }
                        let vs = name.managed_vs();
                        if spec.is_managed()
                            && self
                                .virtual_servers
                                .get(title_region_id)
                                .is_some_and(|m| m.contains_key(&vs))
                        {
                            return Err(Rejection::invalid_state(format!(
                                "a virtual server '{vs}' exists: a managed storage '{name}' needs that name"
                            )));
                        }
                        let map = self.storages.entry(title_region_id.clone()).or_default();
                        if spec.is_managed() && password.is_empty() {
                            return Err(Rejection::bad_request(
                                "a managed storage needs a generated password",
                            ));
                        }
                        let s = Storage {
                            title_region_id: title_region_id.clone(),
                            name: name.clone(),
                            spec: spec.clone(),
                            managed_password: if spec.is_managed() {
                                password.clone()
                            } else {
                                String::new()
                            },
                            created_at: at,
                            updated_at: at,
                        };
                        map.insert(name.clone(), s.clone());
                        s
                    }
                };
                if let Some(vs_spec) = storage.managed_vs_spec() {
                    self.apply_vs_unchecked(
                        at,
                        &Command::PutVirtualServer {
                            title_region_id: title_region_id.clone(),
                            name: name.managed_vs(),
                            spec: vs_spec,
                        },
                        ev,
                    )?;
                }
                Ok(Applied::Done)
            }
            Command::DeleteStorage {
                title_region_id,
                name,
                force,
            } => {
                let Some(storage) = self.storage(title_region_id, name) else {
                    return Err(Rejection::not_found("storage", name));
                };
                let managed = storage.spec.is_managed();
                let bound = self.bound_to(title_region_id, name);
                if !bound.is_empty() && !force {
                    return Err(Rejection::invalid_state(format!(
                        "storage '{name}' is used by the virtual server(s) {}: remove it from their `storages` first, or delete with force",
                        bound.join(", ")
                    )));
                }
                if let Some(m) = self.storages.get_mut(title_region_id) {
                    m.remove(name);
                    if m.is_empty() {
                        self.storages.remove(title_region_id);
                    }
                }
                let vs = name.managed_vs();
                if managed && self.vs_mut(title_region_id, &vs).is_ok() {
                    self.apply_vs_unchecked(
                        at,
                        &Command::DeleteVirtualServer {
                            title_region_id: title_region_id.clone(),
                            name: vs,
                        },
                        ev,
                    )?;
                }
                Ok(Applied::Done)
            }
            _ => Ok(Applied::Unchanged),
        }
    }

    pub fn storage(&self, tr: &TitleRegionId, name: &StorageName) -> Option<&Storage> {
        self.storages.get(tr).and_then(|m| m.get(name))
    }

    /// Names of the virtual servers of `tr` whose definition names storage `name`.
    pub fn bound_to(&self, tr: &TitleRegionId, name: &StorageName) -> Vec<String> {
        self.virtual_servers
            .get(tr)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|vs| vs.spec.storages.contains(name))
            .map(|vs| vs.name.to_string())
            .collect()
    }

    /// Why a user may not put or delete virtual server `name` with `spec`
    /// (`None` for a delete): it names an unknown storage, or it is (or
    /// would take the name of) the virtual server of a managed storage.
    pub(super) fn vs_storage_check(
        &self,
        tr: &TitleRegionId,
        name: &VsName,
        spec: Option<&VsSpec>,
    ) -> Result<(), Rejection> {
        if let Some(spec) = spec {
            for s in &spec.storages {
                if self.storage(tr, s).is_none() {
                    return Err(Rejection::bad_request(format!(
                        "storages: no storage '{s}' in title region '{tr}'"
                    )));
                }
            }
        }
        if let Some(storage) = name.as_str().strip_prefix(MANAGED_VS_PREFIX) {
            let managed = StorageName::parse(storage)
                .ok()
                .and_then(|n| self.storage(tr, &n))
                .is_some_and(|s| s.spec.is_managed());
            if managed {
                return Err(Rejection::invalid_state(format!(
                    "virtual server '{name}' runs the managed storage '{storage}': change or delete the storage instead"
                )));
            }
            if spec.is_some() {
                return Err(Rejection::bad_request(format!(
                    "name: virtual server names starting with '{MANAGED_VS_PREFIX}' are kept for managed storages"
                )));
            }
        }
        Ok(())
    }
}

fn kind(managed: bool) -> &'static str {
    if managed {
        "managed"
    } else {
        "external"
    }
}

#[cfg(test)]
mod tests;
