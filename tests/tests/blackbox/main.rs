//! Black-box tests: the built `respawn` binary started as a user would
//! (`respawn dev`), driven over HTTP only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_tests::*;
use respawn_types::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod dev;
mod dev_config;
mod fleet_ctl;
mod membership;
mod orphans;
mod real_network;
mod sigterm;
mod three_servers;
mod two_processes;

const T: Duration = Duration::from_secs(30);

/// The real-network test runs alone (write); the others share (read). Five
/// debug-build processes with LAN Raft timings (200 ms elections) next to
/// the other black-box tests' clusters starved a 2-core machine into
/// elections that never ended.
static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A running `respawn dev` and what it printed about itself.
struct Dev {
    child: Child,
    backend: Backend,
}

impl Dev {
    /// Starts `respawn dev` on `dir` and reads the edge address and the
    /// credentials from its output, as a user would.
    fn start(dir: &std::path::Path) -> anyhow::Result<Dev> {
        Self::start_with(dir, &[])
    }

    /// [`Dev::start`] with more flags (`--force-new-cluster`, say).
    fn start_with(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<Dev> {
        let mut child = Command::new(respawn_bin())
            .args([
                "dev",
                "--http-addr",
                "127.0.0.1:0",
                "--quic-addr",
                "127.0.0.1:0",
                "--processes",
                "2",
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut edge = None;
        let mut fields = std::collections::HashMap::new();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(addr) = line.split("HTTP edge: ").nth(1) {
                edge = Some(addr.trim().to_string());
            }
            for key in ["TitleId", "TitleRegionId", "SecretId", "SecretKey"] {
                if let Some(v) = line.trim().strip_prefix(&format!("{key}:")) {
                    fields.insert(key, v.trim().to_string());
                }
            }
            if fields.len() == 4 {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let region = TitleRegion {
            id: TitleRegionId::new_unchecked(fields["TitleRegionId"].clone()),
            title_id: TitleId::new_unchecked(fields["TitleId"].clone()),
            name: String::new(),
            title_name: String::new(),
            secret_id: SecretId::new_unchecked(fields["SecretId"].clone()),
            secret_key: fields["SecretKey"].clone(),
        };
        let edge =
            edge.ok_or_else(|| anyhow::anyhow!("respawn dev did not print its edge address"))?;
        Ok(Dev {
            child,
            backend: Backend::new(edge, &region),
        })
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.backend.base);
        wait_for("readyz", T, || async {
            let r = reqwest::get(&url).await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn fulfilled_placement(b: &Backend) -> anyhow::Result<Value> {
    let pl = b.place(respawn_config::DEV_FLEET, &["alice"]).await?;
    b.wait_status(&pl, "FULFILLED", T).await
}
