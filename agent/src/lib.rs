//! The Respawn agent: the runtime a host runs beside its DS processes and VS
//! instances, its local SDK API, health checks, and its QUIC link to the
//! cluster.
//!
//! - [`Agent`] (`agent.rs`): launches and supervises DS processes, serves the
//!   local SDK API, reports to the cluster through a [`ServerLink`];
//!   drains its host before exiting ([`Agent::drain`], `drain.rs`);
//! - [`AgentNode`] (`node.rs`): an agent wired to a QUIC endpoint and kept
//!   connected by the [`uplink`].

mod agent;
mod api;
mod backoff;
mod config;
mod drain;
mod drain_marker;
mod ds_logs;
mod error;
mod events;
mod forking;
mod health;
mod health_actor;
mod intranet;
pub mod link;
mod log_sweep;
mod node;
mod reporter;
mod request;
mod state;
mod supervisor;
pub mod uplink;
pub mod vs;

#[cfg(test)]
mod tests;

pub use agent::{Agent, MAX_PROCESSES_PER_HOST};
pub use config::{AgentConfig, LogLimits};
pub use drain::DrainOutcome;
pub use drain_marker::MARKER as DRAIN_MARKER;
pub use error::AgentError;
pub use link::{LinkDown, ServerLink};
pub use node::AgentNode;
