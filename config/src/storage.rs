//! `[[storages]]`: VS storages created at start-up if absent (later
//! changes through the admin API are kept).

use respawn_types::StorageSpec;
use serde::{Deserialize, Serialize};

/// A VS storage of a title region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub title_region: String,
    /// Letters and digits: instances get `PGOS_VS_Storage_<name>`.
    pub name: String,
    /// `kind = "managed_redis"` (with `memory_mb`), `"external_redis"` or
    /// `"external_mongodb"` (with `network`, `password`, …).
    pub spec: StorageSpec,
}
