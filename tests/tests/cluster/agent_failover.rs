//! An agent whose node is killed moves to another and keeps working.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_node_killed_agent_moves_and_keeps_working() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    let leader = c.wait_leader().await?;
    let follower = c.alive().into_iter().find(|n| *n != leader).unwrap();
    let addrs = c.quic_addrs();
    let mut order = vec![addrs[(follower - 1) as usize]];
    order.extend(
        addrs
            .iter()
            .copied()
            .filter(|a| *a != addrs[(follower - 1) as usize]),
    );
    let agent = c
        .sim_agent("host-a", 4, Duration::from_secs(600), order)
        .await?;
    let pl = fulfilled(&c.backend(leader), &c.history).await?;
    c.crash(follower).await;
    wait_for("agent relinked", T, || async {
        let to = agent.connected_to()?;
        (to != addrs[(follower - 1) as usize]).then_some(())
    })
    .await?;
    // Its session continues; new placements reach it through its new node.
    assert_eq!(
        c.backend(leader).describe(&pl).await?["battle_session_status"],
        "ACTIVE"
    );
    fulfilled(&c.backend(leader), &c.history).await?;
    let state = c.wait_converged().await?;
    assert_ne!(state.host_links[&agent.host], follower);
    let v = check(&c.history.snapshot(), &FinalState::from_state(&state, true));
    assert!(v.is_empty(), "{}", summary(&v));
    agent.stop();
    Ok(())
}
