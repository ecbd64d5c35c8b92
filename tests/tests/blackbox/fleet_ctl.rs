//! `respawn ctl fleet desired` against a running `respawn dev`, as an
//! operator would type it: set a fleet's desired process count by hand,
//! refused out of range with the server's message, then cleared.

use super::*;
use respawn_config::{DEV_FLEET, DEV_TITLE_REGION};

/// Runs `respawn ctl fleet …` against `edge`; (success, stdout as JSON,
/// stderr).
fn fleet_ctl(edge: &str, token: &str, args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let out = Command::new(respawn_bin())
        .args(["ctl", "fleet"])
        .args(args)
        .args(["--server", edge, "--token", token])
        .args(["--title-region", DEV_TITLE_REGION])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    Ok((
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_fleet_desired_sets_and_clears_the_count() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("dev");
    let dev = Dev::start(&data)?;
    dev.wait_ready().await?;
    let token = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_string();
    let edge = dev.backend.base.clone();
    // The configured fleet may not be committed the instant /readyz answers.
    let view = wait_for("the dev fleet", T, || async {
        let (ok, v, _) = fleet_ctl(&edge, &token, &["get", DEV_FLEET]).ok()?;
        ok.then_some(v)
    })
    .await?;
    assert_eq!(view["scaling"]["policy"], "fill", "{view}");

    // Set by hand: the autoscaler works to that count.
    let (ok, v, err) = fleet_ctl(&edge, &token, &["desired", DEV_FLEET, "1"])?;
    assert!(ok, "{v} {err}");
    let s = &v["scaling"];
    assert_eq!(s["manual_desired"], 1, "{v}");
    assert_eq!(s["policy"], "autoscaled", "{v}");
    assert_eq!(s["desired_processes"], 1, "{v}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or("")
            .contains("manual desired 1"),
        "{v}"
    );

    // Above scaling.max_processes: refused with the server's message, and
    // nothing changes.
    let (ok, v, err) = fleet_ctl(&edge, &token, &["desired", DEV_FLEET, "100001"])?;
    assert!(!ok, "accepted: {v}");
    assert!(err.contains("400"), "{err}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("desired"),
        "{v}"
    );
    let (_, v, _) = fleet_ctl(&edge, &token, &["get", DEV_FLEET])?;
    assert_eq!(v["scaling"]["manual_desired"], 1, "{v}");
    // An unknown fleet: 404.
    let (ok, _, err) = fleet_ctl(&edge, &token, &["desired", "fleet-nope", "1"])?;
    assert!(!ok && err.contains("404"), "{err}");
    // A count and --clear together, or neither: refused before any request.
    let (ok, _, err) = fleet_ctl(&edge, &token, &["desired", DEV_FLEET, "2", "--clear"])?;
    assert!(!ok && err.contains("--clear"), "{err}");
    let (ok, _, err) = fleet_ctl(&edge, &token, &["desired", DEV_FLEET])?;
    assert!(!ok && err.contains("<COUNT>"), "{err}");
    let (_, v, _) = fleet_ctl(&edge, &token, &["get", DEV_FLEET])?;
    assert_eq!(v["scaling"]["manual_desired"], 1, "{v}");

    // Cleared: the fleet's own policy (fill) applies again.
    let (ok, v, err) = fleet_ctl(&edge, &token, &["desired", DEV_FLEET, "--clear"])?;
    assert!(ok, "{v} {err}");
    assert_eq!(v["scaling"]["manual_desired"], Value::Null, "{v}");
    assert_eq!(v["scaling"]["policy"], "fill", "{v}");
    Ok(())
}
