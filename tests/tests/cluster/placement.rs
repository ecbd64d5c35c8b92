//! Placements through any node, and while the leader is killed.

use super::*;

async fn place_through_every_node(net: Net) -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions {
        net,
        ..Default::default()
    })
    .await?;
    let leader = c.wait_leader().await?;
    let follower = c.alive().into_iter().find(|n| *n != leader).unwrap();
    // The agent links to a follower: callbacks must reach it through that node.
    let agent = c
        .sim_agent(
            "host-a",
            6,
            Duration::from_secs(600),
            vec![c.quic_addrs()[(follower - 1) as usize]],
        )
        .await?;
    for id in c.alive() {
        fulfilled(&c.backend(id), &c.history).await?;
    }
    let state = c.wait_converged().await?;
    assert_eq!(state.host_links[&agent.host], follower);
    let v = check(&c.history.snapshot(), &FinalState::from_state(&state, true));
    assert!(v.is_empty(), "{}", summary(&v));
    agent.stop();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_through_any_node_in_memory() -> anyhow::Result<()> {
    place_through_every_node(Net::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_through_any_node_over_quic() -> anyhow::Result<()> {
    place_through_every_node(Net::Quic).await
}

async fn leader_killed_during_placements(net: Net) -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions {
        net,
        ..Default::default()
    })
    .await?;
    // A VS subscribed to the placement events, on the agents' hosts.
    let sink = EventSink::start(c.history.clone()).await?;
    let agents = [
        c.sim_agent_with_vs(
            "host-a",
            20,
            Duration::from_millis(300),
            c.quic_addrs(),
            Some(sink.port),
        )
        .await?,
        c.sim_agent_with_vs(
            "host-b",
            20,
            Duration::from_millis(300),
            c.quic_addrs().into_iter().rev().collect(),
            Some(sink.port),
        )
        .await?,
    ];
    c.subscribe_events().await?;
    let old = c.wait_leader().await?;
    let survivors: Vec<NodeId> = c.alive().into_iter().filter(|n| *n != old).collect();
    // Backends place concurrently through the surviving nodes while the leader dies.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut placers = Vec::new();
    for (i, id) in survivors.iter().cycle().take(4).enumerate() {
        let (b, h, stop) = (c.backend(*id), c.history.clone(), stop.clone());
        placers.push(tokio::spawn(async move {
            // Every attempt is recorded with its outcome (a refusal fails
            // the check), and each round re-reads one of this placer's
            // placements, so a status that changes after it was seen
            // terminal is caught.
            let mut placed: Vec<String> = Vec::new();
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let PlaceOutcome::Accepted(pl) = place_recorded(&b, &h).await {
                    placed.push(pl);
                }
                if !placed.is_empty() {
                    n = n.wrapping_mul(31).wrapping_add(7 + i);
                    describe_recorded(&b, &h, &placed[n % placed.len()]).await;
                }
                tokio::time::sleep(Duration::from_millis(20 + i as u64)).await;
            }
            placed
        }));
    }
    wait_for("some placements before the kill", T, || async {
        (c.history
            .snapshot()
            .iter()
            .filter(|e| matches!(e.obs, Observation::PlacementAccepted { .. }))
            .count()
            >= 5)
            .then_some(())
    })
    .await?;
    // A crash: no successor named, no "going away"; the others find out
    // by their timeouts.
    c.crash(old).await;
    let new = c.wait_new_leader(old).await?;
    let before = c.history.len();
    // Placements resume on the new leader.
    wait_for("placements after the failover", T, || async {
        let accepted_after = c.history.snapshot()[before..]
            .iter()
            .filter(|e| matches!(e.obs, Observation::PlacementAccepted { .. }))
            .count();
        (accepted_after >= 5).then_some(())
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for p in placers {
        all.extend(p.await?);
    }
    // Every accepted placement reaches exactly one terminal state, no
    // attempt was refused, no read saw a terminal status change.
    assert_eq!(c.wait_leader().await?, new);
    c.settle(&all).await?;
    // Every placement's event, across the leader change (at least once).
    let state = c.wait_events_delivered().await?;
    let h = c.history.snapshot();
    let v = check(&h, &FinalState::from_state(&state, true).with_events());
    assert!(v.is_empty(), "{}", summary(&v));
    assert!(sink.malformed().is_empty(), "{:?}", sink.malformed());
    let events = h
        .iter()
        .filter(|e| matches!(e.obs, Observation::EventDelivered { .. }))
        .count();
    assert!(events >= 10, "only {events} events delivered");
    for a in agents {
        a.stop();
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_placements_in_memory() -> anyhow::Result<()> {
    leader_killed_during_placements(Net::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_placements_over_quic() -> anyhow::Result<()> {
    leader_killed_during_placements(Net::Quic).await
}
