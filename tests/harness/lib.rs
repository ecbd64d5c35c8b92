//! Test harness for Respawn: an in-process server node and agent running
//! the real sample DS ([`node`]), a backend client for the HTTP edge that
//! signs server tickets ([`backend`]), multi-node clusters with simulated
//! agents and fault injection ([`cluster`]), a subscriber to its placement
//! events ([`events`]), the history checker
//! ([`history`]), and waiting on conditions with deadlines, never fixed
//! sleeps ([`support`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod cluster;
pub mod events;
pub mod history;
pub mod node;
pub mod recorded;
pub mod support;

pub use backend::{Answer, Backend};
pub use node::{
    python_forking_ds_script, python_vs_script, python_vs_spec, Cluster, GameClient, Options,
};
pub use support::{init_logs, respawn_bin, wait_for};
