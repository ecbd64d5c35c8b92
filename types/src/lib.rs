//! Shared identifiers, domain records and wire types for Respawn.
//!
//! Every other crate depends on this one and on nothing of each other's, so
//! the protocol between the agent and the cluster, the local SDK API that a
//! DS process speaks and the records of the replicated placement state are
//! defined once, here.

pub mod agent;
pub mod backoff;
pub mod civil;
pub mod cron;
pub mod fleet;
pub mod ids;
pub mod intranet;
pub mod limits;
pub mod model;
pub mod scaling;
pub mod sdk;
pub mod storage;
pub mod text;
pub mod ticket;
pub mod vs;

pub use fleet::{FleetDefinition, ScalingPolicy};
pub use ids::*;
pub use model::*;
pub use storage::{Storage, StorageEndpoint, StorageName, StorageSpec};
pub use vs::*;

/// Milliseconds since the Unix epoch, the one clock unit of replicated state.
pub type UnixMillis = u64;

/// FNV-1a, 64 bits: a stable hash (the same on every node and in every
/// build) for deriving ids from names.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
