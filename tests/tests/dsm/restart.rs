//! A server restart keeps committed state and running timers.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_committed_state_and_placements_continue() -> anyhow::Result<()> {
    let mut c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let before = c.read(|s| {
        (
            s.placements.clone(),
            s.fleets.clone(),
            s.title_regions.clone(),
        )
    });
    c.halt().await;
    c.boot().await?;
    let after = c.read(|s| {
        (
            s.placements.clone(),
            s.fleets.clone(),
            s.title_regions.clone(),
        )
    });
    assert_eq!(
        before, after,
        "committed placements, fleets and keys survive a restart"
    );
    // The DS died with the agent: its session is reconciled, not forgotten.
    wait_for("session reconciled", T, || async {
        (c.backend.describe(&pl).await.ok()?["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;
    c.wait_ready(1).await?;
    let pl2 = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl2, "FULFILLED", T).await?;
    Ok(())
}

/// Timers are rebuilt from committed deadlines: a placement whose timeout
/// passes while the node is down times out after the restart, and the
/// relaunched processes cannot take it (its deadline is part of the state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_timer_survives_a_restart() -> anyhow::Result<()> {
    let mut c = Cluster::start(Options {
        processes: 1,
        placement_timeout_secs: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let busy = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&busy, "FULFILLED", T).await?;
    let v = c.backend.place_view(DEV_FLEET, &["x"]).await?;
    assert_eq!(v["status"], "PENDING", "{v}");
    let waiting = v["placement_id"].as_str().unwrap().to_string();
    let deadline = v["deadline"].as_u64().unwrap();
    c.halt().await;
    wait_for("the deadline to pass while down", T, || async {
        (now_millis() > deadline).then_some(())
    })
    .await?;
    c.boot().await?;
    let v = c.backend.wait_status(&waiting, "TIMED_OUT", T).await?;
    assert_eq!(v["players"][0]["status"], "COMPLETED");
    Ok(())
}
