//! Nodes stopped and restarted: catching up by snapshot, keeping committed
//! state, freeing their ports.

use super::*;

/// A live follower of `leader` that is not the node the agent is linked to
/// (`agent_at`), so that crashing it leaves the agent where it is.
fn follower_without_the_agent(
    c: &TestCluster,
    leader: u64,
    agent_at: Option<std::net::SocketAddr>,
) -> u64 {
    c.alive()
        .into_iter()
        .find(|n| *n != leader && Some(c.quic_addrs()[(*n - 1) as usize]) != agent_at)
        .expect("a three-node cluster has a follower the agent is not on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_down_past_compaction_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions {
        snapshot_every: 20,
        ..Default::default()
    })
    .await?;
    // Sessions outlast the test (30 processes for 25 placements): a session
    // ended 100 ms after activation could be TERMINATED by the time
    // `fulfilled` reads it ACTIVE on a loaded machine.
    let agent = c
        .sim_agent("host-a", 30, Duration::from_secs(600), c.quic_addrs())
        .await?;
    let leader = c.wait_leader().await?;
    let follower = follower_without_the_agent(&c, leader, agent.connected_to());
    c.crash(follower).await;
    for _ in 0..25 {
        fulfilled(&c.backend(leader), &c.history).await?;
    }
    let purged = c
        .node(leader)
        .consensus
        .metrics()
        .borrow()
        .purged
        .map(|l| l.index)
        .unwrap_or(0);
    assert!(purged > 0, "the leader compacted its log");
    c.start_node(follower).await?;
    let state = c.wait_converged().await?;
    assert_eq!(c.read(follower, |s| s.clone()), state);
    agent.stop();
    Ok(())
}

/// A follower down while records are pruned comes back by a snapshot of the
/// pruned state: the same records, the same watermarks (so it answers
/// `expired` as the others do), then follows the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_catches_up_by_snapshot_after_pruning() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions {
        snapshot_every: 20,
        retention: respawn_config::RetentionSection {
            records_secs: 1,
            issued_ids_secs: 1,
            interval_ms: 100,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    // Sessions end after 100 ms and their processes exit: everything placed
    // becomes prunable a second later.
    let agent = c
        .sim_agent("host-a", 30, Duration::from_millis(100), c.quic_addrs())
        .await?;
    let leader = c.wait_leader().await?;
    let follower = follower_without_the_agent(&c, leader, agent.connected_to());
    c.crash(follower).await;
    let mut placed = Vec::new();
    for _ in 0..25 {
        let pl = fulfilled(&c.backend(leader), &c.history).await?;
        placed.push(PlacementId::new_unchecked(pl));
    }
    wait_for("the leader to prune what was placed", T, || async {
        c.read(leader, |s| {
            (s.pruned.placement > 0 && placed.iter().all(|p| !s.placements.contains_key(p)))
                .then_some(())
        })
    })
    .await?;
    // Compaction after the pruning: the log the follower missed is gone.
    let pruned_at = c
        .node(leader)
        .consensus
        .metrics()
        .borrow()
        .last_applied
        .map(|l| l.index)
        .unwrap_or(0);
    // Snapshots come every 20 entries: keep writing until one is past it.
    wait_for("a snapshot past the pruning", T, || async {
        let m = c.node(leader).consensus.metrics().borrow().clone();
        if m.purged.map(|l| l.index).unwrap_or(0) > 0
            && m.snapshot.map(|l| l.index).unwrap_or(0) >= pruned_at
        {
            return Some(());
        }
        fulfilled(&c.backend(leader), &c.history).await.ok()?;
        None
    })
    .await?;
    c.start_node(follower).await?;
    let state = c.wait_converged().await?;
    let caught_up = c.read(follower, |s| s.clone());
    assert_eq!(caught_up, state);
    assert!(
        caught_up.pruned.placement > 0,
        "the watermarks came with it"
    );
    assert!(placed.iter().all(|p| !caught_up.placements.contains_key(p)));
    agent.stop();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_restarted_keep_committed_state() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    let agent = c
        .sim_agent("host-a", 5, Duration::from_secs(600), c.quic_addrs())
        .await?;
    let leader = c.wait_leader().await?;
    for _ in 0..3 {
        fulfilled(&c.backend(leader), &c.history).await?;
    }
    agent.stop();
    let before = c.wait_converged().await?;
    for id in c.alive() {
        c.crash(id).await;
    }
    for id in 1..=3 {
        c.start_node(id).await?;
    }
    c.wait_leader().await?;
    for id in 1..=3 {
        assert_eq!(
            c.read(id, |s| (
                s.placements.clone(),
                s.title_regions.clone(),
                s.fleets.clone()
            )),
            (
                before.placements.clone(),
                before.title_regions.clone(),
                before.fleets.clone()
            ),
            "node {id}"
        );
    }
    Ok(())
}

/// A stopped node frees its QUIC port by the time `shutdown` returns, so it
/// can be restarted on the same address at once (`respawn bench cluster`
/// does). Regression: the UDP socket stayed bound after shutdown, held by
/// tasks serving links that outlived it and by connections still draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_releases_its_quic_port_at_once() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions {
        net: Net::Quic,
        ..Default::default()
    })
    .await?;
    let leader = c.wait_leader().await?;
    let follower = c.alive().into_iter().find(|n| *n != leader).unwrap();
    let addr = c.quic_addrs()[(leader - 1) as usize];
    // Live links into the node that stops: an agent's, and the followers'
    // (a placement through a follower is forwarded to the leader, whose
    // actors reach the agent through its link).
    let agent = c
        .sim_agent("host-a", 2, Duration::from_secs(600), vec![addr])
        .await?;
    fulfilled(&c.backend(follower), &c.history).await?;
    assert_eq!(agent.connected_to(), Some(addr));

    c.stop(leader).await;
    // No retry: the port must be free now.
    let socket = std::net::UdpSocket::bind(addr)
        .map_err(|e| anyhow::anyhow!("{addr} still bound after shutdown returned: {e}"))?;
    drop(socket);

    // The node comes back on the same ports and the cluster carries on.
    c.start_node(leader).await?;
    c.wait_converged().await?;
    fulfilled(&c.backend(leader), &c.history).await?;
    agent.stop();
    Ok(())
}
