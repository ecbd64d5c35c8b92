//! The real agent running the real sample DS under a crash of the leader:
//! the same checks as with simulated agents, on what backends see.

use super::*;

/// Backends place and describe through the survivors while the leader
/// crashes; the agent (linked to the leader first) runs the sample DS,
/// whose sessions end after a second (each process is replaced). Every
/// attempt and read is recorded; the checker runs on the converged state
/// (the DSs' own view is not observed here, so invariant 4 is not checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agent_and_sample_ds_under_a_leader_crash() -> anyhow::Result<()> {
    let args = ["sample-ds", "--session-secs", "1"]
        .map(String::from)
        .to_vec();
    let mut c = TestCluster::start(ClusterOptions {
        launch: Some((respawn_bin().display().to_string(), args)),
        ..Default::default()
    })
    .await?;
    let old = c.wait_leader().await?;
    let dir = tempfile::tempdir()?;
    let mut cfg = respawn_config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.agent.host_id = Some("real-host".into());
    cfg.agent.fleet = FLEET.into();
    let addrs = c.quic_addrs();
    // Linked to the leader: the crash also moves the agent.
    cfg.agent.server_addr = addrs[(old - 1) as usize].to_string();
    cfg.agent.servers = addrs
        .iter()
        .filter(|a| **a != addrs[(old - 1) as usize])
        .map(|a| a.to_string())
        .collect();
    let agent = respawn::AgentNode::start(&cfg, &c.agent_identity("real-host")?).await?;
    let survivors: Vec<NodeId> = c.alive().into_iter().filter(|n| *n != old).collect();
    fulfilled(&c.backend(survivors[0]), &c.history).await?;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut placers = Vec::new();
    for (i, id) in survivors.iter().enumerate() {
        let (b, h, stop) = (c.backend(*id), c.history.clone(), stop.clone());
        placers.push(tokio::spawn(async move {
            let mut placed: Vec<String> = Vec::new();
            let mut n = i;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let PlaceOutcome::Accepted(pl) = place_recorded(&b, &h).await {
                    placed.push(pl);
                }
                if !placed.is_empty() {
                    n = n.wrapping_mul(31).wrapping_add(7);
                    describe_recorded(&b, &h, &placed[n % placed.len()]).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            placed
        }));
    }
    c.crash(old).await;
    c.wait_new_leader(old).await?;
    let before = c.history.len();
    let accepted_after = || {
        c.history.snapshot()[before..]
            .iter()
            .filter_map(|e| match &e.obs {
                Observation::PlacementAccepted { placement, .. } => Some(placement.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    wait_for("placements accepted after the crash", T, || async {
        (accepted_after().len() >= 3).then_some(())
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for p in placers {
        all.extend(p.await?);
    }
    let state = c.settle(&all).await?;
    let v = check(
        &c.history.snapshot(),
        &FinalState::from_state(&state, false),
    );
    assert!(v.is_empty(), "{}", summary(&v));
    // The sample DSs served them: FULFILLED after the crash.
    let served = accepted_after()
        .iter()
        .filter(|pl| state.placements[*pl].status == PlacementStatus::Fulfilled)
        .count();
    assert!(
        served >= 3,
        "only {served} placements after the crash were fulfilled"
    );
    agent.shutdown().await;
    Ok(())
}
