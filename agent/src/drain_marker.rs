//! The marker of a drain the agent made itself (on SIGTERM, `drain.rs`),
//! and ending that drain when an agent starts again with the same data
//! directory.

use crate::state::Shared;
use respawn_types::agent::AgentToServer;

/// File in the agent's data directory while (and after) it drained its
/// host itself.
pub const MARKER: &str = "self-drained";

/// At start-up: if this agent drained its host before it stopped, end
/// that drain (queued before any report of the new processes).
pub(crate) fn resume(shared: &Shared) {
    let marker = shared.config.data_dir.join(MARKER);
    if marker.exists() {
        tracing::info!("this host was drained when its agent stopped; undraining it");
        shared
            .reporter
            .send(AgentToServer::SetDraining { draining: false });
        if let Err(e) = std::fs::remove_file(&marker) {
            tracing::warn!(path = %marker.display(), error = %e, "cannot remove the drain marker");
        }
    }
}
