//! The DS Hosting path end to end, in process: a server node and an agent
//! with the real sample DS processes, driven over the HTTP edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_config::DEV_FLEET;
use respawn_tests::*;
use respawn_types::*;
use serde_json::{json, Value};
use std::time::Duration;

mod agent_link;
mod contract;
mod drain;
mod ds_logs;
mod fleets;
mod forking;
mod notifications;
mod placement;
mod processes;
mod puppet;
mod restart;
mod retention;

const T: Duration = Duration::from_secs(30);
