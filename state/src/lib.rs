//! The replicated cluster state and the pure function that changes it.
//!
//! [`ClusterState`] holds everything Raft replicates: title regions and their
//! keys, fleets and hosts, DS processes, battle sessions, placements, player
//! battle sessions, virtual servers and their instances, event handlers,
//! tasks, the event outbox and the trigger log. [`ClusterState::apply`] is a
//! function of the state and one committed [`Request`]: it reads no clock and
//! performs no I/O, so every node computes the same state from the same log.
//! It is split by life cycle into the modules of `apply`, each with its
//! transition tests beside it.
//!
//! This crate depends on no consensus library, database or runtime: the
//! actors, the edge and the history checker read and test it directly, and
//! `respawn-consensus` replicates it.

mod apply;
pub mod cluster_state;
pub mod command;
pub mod retention;
pub mod retention_marks;
pub mod shared;

#[cfg(test)]
mod test_fixture;

pub use cluster_state::ClusterState;
pub use command::*;
/// The bounds `apply` enforces (defined in `respawn-types` so that crates
/// which do not depend on this one check the same constants).
pub use respawn_types::limits;
pub use retention::{prune_candidates, PruneCursor, PrunedWatermarks};
pub use shared::Shared;
