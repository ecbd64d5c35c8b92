//! The DS Hosting path end to end, in process: a server node and an agent
//! with the real sample DS processes, driven over the HTTP edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_config::DEV_FLEET;
use respawn_tests::*;
use respawn_types::*;
use serde_json::json;
use std::time::Duration;

mod agent_link;
mod fleets;
mod placement;
mod processes;
mod restart;

const T: Duration = Duration::from_secs(30);
