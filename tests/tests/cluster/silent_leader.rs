//! A leader that falls silent — crashed, as its peers see it: what is sent
//! to it vanishes, nothing is refused — does not make the writes sent
//! through a follower hang until they fail: they wait for the new leader
//! and succeed within their own deadline.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_wait_out_a_silent_leader() -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions::default()).await?;
    let old = c.wait_leader().await?;
    let follower = (1..=3).find(|n| *n != old).unwrap();
    // The agent on the followers, so that only the leader is lost.
    let addrs: Vec<_> = (1..=3u64)
        .filter(|n| *n != old)
        .map(|n| c.quic_addrs()[n as usize - 1])
        .collect();
    let agent = c
        .sim_agent("host-s", 10, Duration::from_secs(600), addrs)
        .await?;
    // Every message to or from the leader is lost (the callers time out).
    for n in (1..=3).filter(|n| *n != old) {
        c.router.set_link_drop(n, old, 1.0);
        c.router.set_link_drop(old, n, 1.0);
    }
    // Sent at once: the follower still takes `old` for the leader and
    // forwards there. The write must wait for the election and succeed.
    let (status, body) = c
        .backend(follower)
        .post("/dsm/request_battle_session_id", serde_json::json!({}))
        .await?;
    assert_eq!(status, 200, "a write during the election failed: {body}");
    let new = c.wait_new_leader(old).await?;
    assert_ne!(new, old);
    // And a placement through the same follower is fulfilled.
    fulfilled(&c.backend(follower), &c.history).await?;
    for n in (1..=3).filter(|n| *n != old) {
        c.router.set_link_drop(n, old, 0.0);
        c.router.set_link_drop(old, n, 0.0);
    }
    c.wait_converged().await?;
    agent.stop();
    Ok(())
}
