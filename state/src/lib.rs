//! The replicated cluster state and the pure function that changes it.
//!
//! [`ClusterState`] holds everything Raft replicates: title regions and their
//! keys, fleets and hosts, DS processes, battle sessions, placements, player
//! battle sessions, virtual servers and their instances, event handlers,
//! tasks, the event outbox and the trigger log. [`ClusterState::apply`] is a
//! function of the state and one committed [`Request`]: it reads no clock and
//! performs no I/O, so every node computes the same state from the same log.
//!
//! This crate depends on no consensus library, database or runtime: the
//! actors, the edge and the history checker read and test it directly, and
//! `respawn-consensus` replicates it.

pub mod command;
pub mod state;
pub mod vs_state;

pub use command::*;
pub use state::ClusterState;
