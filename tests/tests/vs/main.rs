//! Virtual servers end to end, in process: a server node and an agent run
//! real VS instances (the Python sample as a process, the Rust sample in a
//! Docker container), invoked through the HTTP edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_config::{DEV_FLEET, DEV_TITLE_REGION};
use respawn_tests::*;
use respawn_types::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

mod autoscaling;
mod cluster_vs;
mod docker_vs;
mod events_tasks;
mod intranet_names;
mod process_vs;
mod routing;
mod storage;
mod system_env;

const T: Duration = Duration::from_secs(60);

const TR: &str = DEV_TITLE_REGION;

async fn cluster() -> anyhow::Result<Cluster> {
    Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await
}

/// Waits until the sample VS `vs` has recorded `n` events or tasks (`kind`).
async fn received(c: &Cluster, vs: &str, kind: &str, n: usize) -> anyhow::Result<Value> {
    wait_for(&format!("{n} {kind} received by {vs}"), T, || async {
        let path = format!("{vs}/received");
        let v = c
            .backend
            .invoke("GET", &path, &[], vec![])
            .await
            .ok()?
            .json();
        (v[kind].as_array()?.len() >= n).then_some(v)
    })
    .await
}

fn admin_path(rest: &str) -> String {
    format!("/admin/title_regions/{TR}/{rest}")
}
