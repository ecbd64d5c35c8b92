//! A minority partition refuses writes and catches up when healed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_refuses_writes_and_catches_up() -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions::default()).await?;
    let agent = c
        .sim_agent("host-a", 10, Duration::from_secs(600), c.quic_addrs())
        .await?;
    let old = c.wait_leader().await?;
    c.isolate(old);
    let new = c.wait_new_leader(old).await?;
    // The majority keeps placing.
    fulfilled(&c.backend(new), &c.history).await?;
    // The minority refuses writes with a clear error, and commits nothing.
    let before = c.read(old, |s| s.placements.len());
    let (status, body) = c
        .backend(old)
        .post("/dsm/request_battle_session_id", serde_json::json!({}))
        .await?;
    assert!(status == 503, "{status} {body}");
    assert!(
        ["not_leader", "unavailable"].contains(&body["error"].as_str().unwrap_or("")),
        "{body}"
    );
    assert_eq!(c.read(old, |s| s.placements.len()), before);
    // After healing, the old leader catches up.
    c.heal();
    let state = c.wait_converged().await?;
    assert!(state.placements.len() > before);
    agent.stop();
    Ok(())
}
