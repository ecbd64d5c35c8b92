//! Shared identifiers, domain records and wire types for Respawn.
//!
//! Every other crate depends on this one and on nothing of each other's, so
//! the protocol between the agent and the cluster, the local SDK API that a
//! DS process speaks and the records of the replicated placement state are
//! defined once, here.

pub mod agent;
pub mod cron;
pub mod ids;
pub mod model;
pub mod sdk;
pub mod vs;

pub use ids::*;
pub use model::*;
pub use vs::*;

/// Milliseconds since the Unix epoch, the one clock unit of replicated state.
pub type UnixMillis = u64;

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
