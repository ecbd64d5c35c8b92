//! Placement events end to end (invariant 3: delivered at least once, with
//! an id for de-duplication): for a timed-out and a failed placement, and
//! across a crash and restart of every node. A virtual server's handler
//! receives them ([`EventSink`]); the history checker requires each.

use super::*;

/// The statuses of the placement events received for `pl`.
fn events_for(h: &respawn_tests::history::History, pl: &str) -> Vec<PlacementStatus> {
    h.snapshot()
        .into_iter()
        .filter_map(|e| match e.obs {
            Observation::EventDelivered {
                placement, status, ..
            } if placement.as_str() == pl => Some(status),
            _ => None,
        })
        .collect()
}

async fn checked(c: &TestCluster, sink: &EventSink) -> anyhow::Result<()> {
    let state = c.wait_events_delivered().await?;
    let v = check(
        &c.history.snapshot(),
        &FinalState::from_state(&state, true).with_events(),
    );
    assert!(v.is_empty(), "{}", summary(&v));
    assert!(sink.malformed().is_empty(), "{:?}", sink.malformed());
    Ok(())
}

/// No process ever frees up: the placement times out, and its
/// `event_battle_session_placement_timedout` arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_placement_delivers_its_event() -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions {
        placement_timeout_secs: 3,
        ..Default::default()
    })
    .await?;
    let sink = EventSink::start(c.history.clone()).await?;
    // A host with no DS process: it only runs the events VS.
    let agent = c
        .sim_agent_with_vs(
            "host-a",
            0,
            Duration::from_secs(600),
            c.quic_addrs(),
            Some(sink.port),
        )
        .await?;
    c.subscribe_events().await?;
    let b = c.backend(c.wait_leader().await?);
    let pl = accepted(&b, &c.history).await?;
    wait_status_recorded(&b, &c.history, &pl, PlacementStatus::TimedOut, T).await?;
    wait_for("the timed-out event", T, || async {
        (!events_for(&c.history, &pl).is_empty()).then_some(())
    })
    .await?;
    assert!(events_for(&c.history, &pl)
        .iter()
        .all(|s| *s == PlacementStatus::TimedOut));
    checked(&c, &sink).await?;
    agent.stop();
    Ok(())
}

/// Every DS it is given to fails to activate: after three attempts the
/// placement FAILS, and its `event_battle_session_placement_failed` arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_placement_delivers_its_event() -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions {
        activation_timeout_secs: 1,
        placement_timeout_secs: 120,
        ..Default::default()
    })
    .await?;
    let sink = EventSink::start(c.history.clone()).await?;
    let agent = c
        .sim_agent_with("host-a", 2, Duration::from_secs(600), c.quic_addrs(), |o| {
            o.vs_port = Some(sink.port);
            o.activate = false;
        })
        .await?;
    c.subscribe_events().await?;
    let b = c.backend(c.wait_leader().await?);
    let pl = accepted(&b, &c.history).await?;
    wait_status_recorded(&b, &c.history, &pl, PlacementStatus::Failed, T).await?;
    wait_for("the failed event", T, || async {
        (!events_for(&c.history, &pl).is_empty()).then_some(())
    })
    .await?;
    assert!(events_for(&c.history, &pl)
        .iter()
        .all(|s| *s == PlacementStatus::Failed));
    // Three DSs got it, one after the other, none activated it.
    let delivered = c
        .history
        .snapshot()
        .iter()
        .filter(|e| matches!(e.obs, Observation::SessionDelivered { .. }))
        .count();
    assert_eq!(delivered, 3, "one delivery per attempt");
    checked(&c, &sink).await?;
    agent.stop();
    Ok(())
}

/// Placements finish, then every node crashes before (or while) their
/// events go out; after the restart each event is still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_crash_of_every_node() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    let sink = EventSink::start(c.history.clone()).await?;
    let agent = c
        .sim_agent_with_vs(
            "host-a",
            12,
            Duration::from_secs(600),
            c.quic_addrs(),
            Some(sink.port),
        )
        .await?;
    c.subscribe_events().await?;
    let b = c.backend(c.wait_leader().await?);
    let mut placed = Vec::new();
    for _ in 0..8 {
        placed.push(accepted(&b, &c.history).await?);
    }
    c.settle(&placed).await?;
    for id in c.alive() {
        c.crash(id).await;
    }
    for id in 1..=3 {
        c.start_node(id).await?;
    }
    c.wait_leader().await?;
    checked(&c, &sink).await?;
    for pl in &placed {
        assert!(
            events_for(&c.history, pl).contains(&PlacementStatus::Fulfilled),
            "{pl}: no event"
        );
    }
    agent.stop();
    Ok(())
}
