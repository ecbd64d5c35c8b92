//! The web console (`/console`) against a real node: one server node and an
//! agent in this process running the real sample DS and the Python sample
//! VS, with a second title region. `http` checks the sign-in and scope rules
//! with plain HTTP; `browser` drives a real headless Chromium through
//! chromedriver (Debian's `chromium` and `chromium-driver`, installed by
//! `.ci/run`); it fails if they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context};
use respawn_config::{Config, TitleRegionSpec, DEV_TITLE_REGION};
use respawn_tests::*;
use respawn_types::TitleRegion;
use std::time::Duration;

mod browser;
mod fleet;
mod http;
mod ops;

const T: Duration = Duration::from_secs(60);
/// The second title region.
const OTHER: &str = "tr-other";

/// A node with the dev title region and [`OTHER`], one sample DS process,
/// and a running Python VS `api` in each region.
struct Env {
    c: Cluster,
    base: String,
    token: String,
    dev: TitleRegion,
    other: TitleRegion,
}

async fn start() -> anyhow::Result<Env> {
    init_logs();
    let dir = tempfile::tempdir()?;
    let args = vec![
        "sample-ds".to_string(),
        "--session-secs".into(),
        "600".into(),
    ];
    let mut cfg = Config::dev(&respawn_bin().display().to_string(), args);
    cfg.data_dir = dir.path().to_path_buf();
    cfg.server.http_addr = "127.0.0.1:0".parse()?;
    cfg.server.quic_addr = "127.0.0.1:0".parse()?;
    cfg.agent.kill_grace_ms = 1_000;
    cfg.fleets[0].definition.processes_per_host = 1;
    cfg.title_regions.push(TitleRegionSpec {
        id: OTHER.into(),
        title_id: "title-other".into(),
        name: "other".into(),
        title_name: "Another title".into(),
        title_logo: String::new(),
        secret_id: None,
        secret_key: None,
    });
    cfg.validate()?;
    let placeholder = TitleRegion {
        id: respawn_types::TitleRegionId::new_unchecked("x"),
        title_id: respawn_types::TitleId::new_unchecked("x"),
        name: String::new(),
        title_name: String::new(),
        secret_id: respawn_types::SecretId::new_unchecked("x"),
        secret_key: String::new(),
    };
    let mut c = Cluster {
        backend: Backend::new("http://unset", &placeholder),
        dir,
        cfg,
        node: None,
        agent: None,
    };
    c.boot().await?;
    let regions = c.node().title_regions();
    let find = |id: &str| regions.iter().find(|r| r.id.as_str() == id).cloned();
    let dev = find(DEV_TITLE_REGION).context("dev region")?;
    let other = find(OTHER).context("other region")?;
    let base = format!("http://{}", c.node().http_addr);
    let token = c.node().admin_token.clone();
    c.wait_ready(1).await?;
    c.put_vs("api", python_vs_spec(serde_json::json!({})))
        .await?;
    let a = c
        .admin(
            "PUT",
            &format!("/admin/title_regions/{OTHER}/virtual_servers/secret-vs"),
            Some(python_vs_spec(serde_json::json!({}))),
        )
        .await?;
    if a.status != 200 {
        bail!("PUT other region's VS: {} {}", a.status, a.body);
    }
    c.wait_vs_running("api", 1).await?;
    Ok(Env {
        c,
        base,
        token,
        dev,
        other,
    })
}
