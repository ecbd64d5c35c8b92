//! What a new leader applies from the configuration: the title regions
//! (keys generated once), the fleets, the storages and the virtual servers (created once).

use crate::cluster::Cluster;
use crate::error::NodeError;
use rand::RngCore;
use respawn_config::Config;
use respawn_state::Command;
use respawn_types::*;

/// `bytes` random bytes as hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Creates the configured title regions (generating keys once) and creates
/// or updates the configured fleets. Run by each new leader: idempotent.
pub async fn bootstrap_config(cluster: &Cluster, cfg: &Config) -> Result<(), NodeError> {
    for spec in &cfg.title_regions {
        let id = TitleRegionId::new_unchecked(spec.id.clone());
        let existing = cluster.read(|s| s.title_regions.get(&id).cloned()).await?;
        let region = TitleRegion {
            id: id.clone(),
            title_id: TitleId::new_unchecked(spec.title_id.clone()),
            name: if spec.name.is_empty() {
                spec.id.clone()
            } else {
                spec.name.clone()
            },
            title_name: spec.title_name.clone(),
            secret_id: match (&spec.secret_id, &existing) {
                (Some(s), _) => SecretId::new_unchecked(s.clone()),
                (None, Some(e)) => e.secret_id.clone(),
                (None, None) => SecretId::generate(),
            },
            secret_key: match (&spec.secret_key, &existing) {
                (Some(k), _) => k.clone(),
                (None, Some(e)) => e.secret_key.clone(),
                (None, None) => random_hex(32),
            },
        };
        if existing.as_ref() != Some(&region) {
            cluster.propose(Command::PutTitleRegion(region)).await?;
        }
    }
    // Fleets too are created once: after that the admin API owns them
    // (`PUT /admin/title_regions/{tr}/fleets/{id}` makes new versions that a
    // new leader must not undo).
    for spec in &cfg.fleets {
        let fleet = spec.to_fleet();
        if cluster.read(|s| !s.fleets.contains_key(&fleet.id)).await? {
            cluster.propose(Command::PutFleet(fleet)).await?;
        }
    }
    // Virtual servers are created once: later updates through the admin
    // API make new versions that a restart must not undo.
    for st in &cfg.storages {
        let tr = TitleRegionId::new_unchecked(st.title_region.clone());
        let name = StorageName::parse(st.name.clone())
            .map_err(|e| NodeError::Invalid(format!("storage: {e}")))?;
        if cluster.read(|s| s.storage(&tr, &name).is_none()).await? {
            cluster
                .propose(Command::PutStorage {
                    title_region_id: tr,
                    name,
                    spec: st.spec.clone(),
                    password: random_hex(16),
                })
                .await?;
        }
    }
    for v in &cfg.virtual_servers {
        let tr = TitleRegionId::new_unchecked(v.title_region.clone());
        let name = VsName::parse(v.name.clone())
            .map_err(|e| NodeError::Invalid(format!("virtual server: {e}")))?;
        if cluster
            .read(|s| s.virtual_server(&tr, &name).is_none())
            .await?
        {
            cluster
                .propose(Command::PutVirtualServer {
                    title_region_id: tr,
                    name,
                    spec: v.spec.clone(),
                })
                .await?;
        }
    }
    Ok(())
}
