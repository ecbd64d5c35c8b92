//! VS storages (VS seed §3.2.1, §3.2.2): Redis run by Respawn ("managed"),
//! or Redis and MongoDB run elsewhere ("external"), per title region. A
//! virtual server names the storages it uses; its instances get
//! `PGOS_VS_Storage_<Name>` holding the seed's JSON description.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{TitleRegionId, UnixMillis, VsName};

/// Longest storage name (`storage-<name>` must stay a valid VS name).
pub const MAX_STORAGE_NAME_LEN: usize = 48;
/// Most storages per title region.
pub const MAX_STORAGES_PER_REGION: usize = 32;
/// Most endpoints of an external storage.
pub const MAX_STORAGE_ENDPOINTS: usize = 16;
/// Prefix of the virtual server that runs a managed Redis.
pub const MANAGED_VS_PREFIX: &str = "storage-";
/// Prefix of the environment variable a bound storage is given in.
pub const STORAGE_ENV_PREFIX: &str = "PGOS_VS_Storage_";

/// A storage's name: ASCII letters and digits only, since it becomes part of
/// the variable name `PGOS_VS_Storage_<Name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorageName(String);

impl StorageName {
    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if s.is_empty() {
            return Err("storage name must not be empty".into());
        }
        if s.len() > MAX_STORAGE_NAME_LEN {
            return Err(format!(
                "storage name is longer than {MAX_STORAGE_NAME_LEN} characters"
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("storage name may contain only letters and digits".into());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The virtual server that runs this storage when it is a managed Redis.
    pub fn managed_vs(&self) -> VsName {
        // Letters and digits after a letters-and-'-' prefix, 8 + 48 <= 63
        // characters: always a valid VS name.
        VsName::parse(format!("{MANAGED_VS_PREFIX}{}", self.0))
            .unwrap_or_else(|_| unreachable!("storage names are valid VS name parts"))
    }

    /// `PGOS_VS_Storage_<Name>`.
    pub fn env_name(&self) -> String {
        format!("{STORAGE_ENV_PREFIX}{}", self.0)
    }
}

impl TryFrom<String> for StorageName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl From<StorageName> for String {
    fn from(n: StorageName) -> String {
        n.0
    }
}

impl fmt::Display for StorageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One address of an external storage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageEndpoint {
    /// Host name or IP address the virtual servers connect to.
    pub inner_ip: String,
    pub port: u16,
    /// MongoDB replica role (`Primary`, `Secondary`); Redis ignores it.
    #[serde(default)]
    pub role: Option<String>,
}

fn default_managed_memory_mb() -> u64 {
    256
}

/// What an admin sets on a storage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StorageSpec {
    /// A `redis-server` that Respawn runs on an agent host, as the virtual
    /// server `storage-<name>` (one instance), with a generated password and
    /// its data in that virtual server's persistent directory.
    ManagedRedis {
        /// `maxmemory` of the server, in MiB (16..=262144).
        #[serde(default = "default_managed_memory_mb")]
        memory_mb: u64,
    },
    /// A Redis run elsewhere.
    ExternalRedis {
        network: Vec<StorageEndpoint>,
        #[serde(default)]
        password: String,
        #[serde(default)]
        version: String,
        /// Memory in GB, as reported in the variable (informational).
        #[serde(default)]
        memory: u64,
        /// `instanceId` in the variable (default: the storage name).
        #[serde(default)]
        instance_id: String,
    },
    /// A MongoDB run elsewhere (Respawn does not run MongoDB itself).
    ExternalMongodb {
        network: Vec<StorageEndpoint>,
        #[serde(default)]
        account: String,
        #[serde(default)]
        password: String,
        #[serde(default)]
        version: String,
        #[serde(default)]
        replica_set: String,
        /// `instanceId` in the variable (default: the storage name).
        #[serde(default)]
        instance_id: String,
    },
}

impl StorageSpec {
    /// Checks a spec from outside; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            StorageSpec::ManagedRedis { memory_mb } => {
                let (lo, hi) = crate::VS_MEMORY_RANGE;
                if !(lo..=hi).contains(memory_mb) {
                    return Err(format!("memory_mb must be between {lo} and {hi}"));
                }
                Ok(())
            }
            StorageSpec::ExternalRedis { network, .. }
            | StorageSpec::ExternalMongodb { network, .. } => {
                if network.is_empty() {
                    return Err("network must name at least one endpoint".into());
                }
                if network.len() > MAX_STORAGE_ENDPOINTS {
                    return Err(format!(
                        "network has more than {MAX_STORAGE_ENDPOINTS} endpoints"
                    ));
                }
                for (i, e) in network.iter().enumerate() {
                    if e.inner_ip.trim().is_empty() {
                        return Err(format!("network[{i}].inner_ip must not be empty"));
                    }
                    if e.port == 0 {
                        return Err(format!("network[{i}].port must be between 1 and 65535"));
                    }
                }
                Ok(())
            }
        }
    }

    pub fn is_managed(&self) -> bool {
        matches!(self, StorageSpec::ManagedRedis { .. })
    }
}

/// A storage of a title region.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub title_region_id: TitleRegionId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: StorageName,
    pub spec: StorageSpec,
    /// The generated password of a managed Redis (empty for external ones,
    /// whose password is in `spec`).
    #[serde(default)]
    pub managed_password: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Storage {
    /// The value of `PGOS_VS_Storage_<Name>` (seed §3.2.1 / §3.2.2) with the
    /// endpoints `network` (for a managed Redis: where its instance runs) and
    /// `instance_id` (managed: its VS instance id).
    pub fn env_value(&self, network: &[StorageEndpoint], instance_id: &str) -> String {
        let name = self.name.as_str();
        let or_name = |id: &str| {
            if id.is_empty() {
                name.to_string()
            } else {
                id.to_string()
            }
        };
        let redis_net = || {
            network
                .iter()
                .map(|e| serde_json::json!({"port": e.port, "inner_ip": e.inner_ip}))
                .collect::<Vec<_>>()
        };
        let v = match &self.spec {
            StorageSpec::ManagedRedis { memory_mb } => serde_json::json!({
                "type": "Redis",
                "version": "",
                "name": name,
                "memory": *memory_mb as f64 / 1024.0,
                "network": redis_net(),
                "password": self.managed_password,
                "instanceId": or_name(instance_id),
                "clusterType": "Standard",
                "shardNumber": 0,
                "masterSlaveNumber": 1,
            }),
            StorageSpec::ExternalRedis {
                password,
                version,
                memory,
                instance_id,
                ..
            } => serde_json::json!({
                "type": "Redis",
                "version": version,
                "name": name,
                "memory": memory,
                "network": redis_net(),
                "password": password,
                "instanceId": or_name(instance_id),
                "clusterType": "Standard",
                "shardNumber": 0,
                "masterSlaveNumber": 1,
            }),
            StorageSpec::ExternalMongodb {
                account,
                password,
                version,
                replica_set,
                instance_id,
                ..
            } => serde_json::json!({
                "type": "MongoDB",
                "version": version,
                "cpu": 0,
                "disk": 0,
                "name": name,
                "memory": 0,
                "account": account,
                "network": network
                    .iter()
                    .map(|e| serde_json::json!({
                        "port": e.port,
                        "role": e.role.clone().unwrap_or_default(),
                        "inner_ip": e.inner_ip,
                    }))
                    .collect::<Vec<_>>(),
                "password": password,
                "mongosCpu": 0,
                "instanceId": or_name(instance_id),
                "replicaSet": replica_set,
                "clusterType": "Standard",
                "shardNumber": 0,
                "mongosMemory": 0,
                "mongosNodeNum": 0,
                "masterSlaveNumber": network.len(),
            }),
        };
        v.to_string()
    }
}

/// Environment variable holding a managed Redis's password in its virtual server.
pub const MANAGED_PASSWORD_ENV: &str = "REDIS_PASSWORD";

/// The shell line that starts a managed Redis: on all interfaces at the
/// port the runtime gives (`PGOS_VS_Listen_Port`), with the password, its
/// data in the working directory (the virtual server's persistent volume
/// under the agent's data directory), append-only file on.
pub const MANAGED_REDIS_SCRIPT: &str = "exec redis-server --bind 0.0.0.0 --protected-mode no \
--port \"$PGOS_VS_Listen_Port\" --requirepass \"$REDIS_PASSWORD\" --dir . --appendonly yes \
--maxmemory \"${REDIS_MAXMEMORY_MB}mb\"";

impl Storage {
    /// The virtual server that runs a managed Redis (`None` for external ones).
    pub fn managed_vs_spec(&self) -> Option<crate::VsSpec> {
        let StorageSpec::ManagedRedis { memory_mb } = &self.spec else {
            return None;
        };
        let env = [
            (
                MANAGED_PASSWORD_ENV.to_string(),
                self.managed_password.clone(),
            ),
            ("REDIS_MAXMEMORY_MB".to_string(), memory_mb.to_string()),
        ]
        .into_iter()
        .collect();
        Some(crate::VsSpec {
            source: crate::VsSource::Process {
                command: "sh".into(),
            },
            args: vec!["-c".into(), MANAGED_REDIS_SCRIPT.into()],
            env,
            listen_port: 6379,
            cpu_millicores: 500,
            // Redis needs some room above maxmemory for itself.
            memory_mb: (memory_mb + 64).min(crate::VS_MEMORY_RANGE.1),
            max_instances: 1,
            block_client_requests: true,
            access_log: false,
            metric_urls: Vec::new(),
            target_concurrency: 1_000,
            scale_down_delay_secs: 60,
            storages: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests;
