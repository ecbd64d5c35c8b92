//! Randomized faults, checked against the history invariants.

use super::*;

/// A history checker over a randomized run: for a minute, backends place
/// and describe through random nodes (every attempt and read recorded)
/// while nodes are crashed (no graceful step), restarted,
/// isolated and partitioned (at most one node down or cut off at a time,
/// so a majority exists most of the time) and messages are delayed; a
/// virtual server receives the placement events throughout. Then every
/// fault is healed and the recorded history is checked against the
/// design's invariants on the converged state, events included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_faults_keep_the_invariants() -> anyhow::Result<()> {
    randomized(None, 15, Duration::from_secs(60)).await
}

/// The same in parallel mode (three sessions per process at most, each
/// ended by its DS): a process never holds more than three delivered or
/// active sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_faults_keep_the_invariants_in_parallel_mode() -> anyhow::Result<()> {
    randomized(Some(3), 3, Duration::from_secs(40)).await
}

async fn randomized(
    parallel: Option<u32>,
    processes: usize,
    run_for: Duration,
) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("RESPAWN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261121);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = TestCluster::start(ClusterOptions {
        placement_timeout_secs: 8,
        activation_timeout_secs: 3,
        parallel,
        ..Default::default()
    })
    .await?;
    c.router
        .set_delay(Duration::from_millis(0), Duration::from_millis(3));
    let sink = EventSink::start(c.history.clone()).await?;
    let agents = [
        c.sim_agent_with_vs(
            "host-a",
            processes,
            Duration::from_millis(400),
            c.quic_addrs(),
            Some(sink.port),
        )
        .await?,
        c.sim_agent_with_vs(
            "host-b",
            processes,
            Duration::from_millis(700),
            c.quic_addrs().into_iter().rev().collect(),
            Some(sink.port),
        )
        .await?,
    ];
    c.subscribe_events().await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut placers = Vec::new();
    for i in 0..3u64 {
        let backends: Vec<Backend> = (1..=3).map(|id| c.backend(id)).collect();
        let (h, stop) = (c.history.clone(), stop.clone());
        placers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed + i);
            let mut mine: Vec<String> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let b = &backends[rng.gen_range(0..backends.len())];
                if rng.gen_bool(0.5) || mine.is_empty() {
                    if let PlaceOutcome::Accepted(pl) = place_recorded(b, &h).await {
                        mine.push(pl);
                    }
                } else {
                    let pl = &mine[rng.gen_range(0..mine.len())];
                    describe_recorded(b, &h, pl).await;
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
            }
            mine
        }));
    }
    let faults = inject_faults(&mut c, &mut rng, run_for).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut placed = Vec::new();
    for p in placers {
        placed.extend(p.await?);
    }
    c.settle(&placed).await?;
    let state = c.wait_events_delivered().await?;
    let h = c.history.snapshot();
    let accepted = h
        .iter()
        .filter(|e| matches!(e.obs, Observation::PlacementAccepted { .. }))
        .count();
    assert!(sink.malformed().is_empty(), "{:?}", sink.malformed());
    let violations = check(&h, &FinalState::from_state(&state, true).with_events());
    assert!(
        violations.is_empty(),
        "seed {seed}, faults {faults:?}\n{}",
        summary(&violations)
    );
    assert!(
        accepted >= 20,
        "seed {seed}: only {accepted} placements were accepted; the run proves little"
    );
    // The checker's view of the modes comes from the fleets in the state.
    let fin = FinalState::from_state(&state, true);
    let want = match parallel {
        Some(n) => ServerMode::Parallel { max_sessions: n },
        None => ServerMode::Simple,
    };
    assert!(!fin.process_modes.is_empty());
    assert!(
        fin.process_modes.values().all(|m| *m == want),
        "{:?}",
        fin.process_modes
    );
    assert_eq!(fin.placements.len(), state.placements.len());
    if parallel.is_some() {
        let most = most_sessions_at_once(&h);
        assert!(
            most >= 2,
            "seed {seed}: no process ever held two sessions at once ({most}); parallel mode was not exercised"
        );
    }
    eprintln!("seed {seed}: {accepted} placements accepted, faults: {faults:?}");
    for a in agents {
        a.stop();
    }
    Ok(())
}

/// For `run_for`, one fault at a time every 1.5–4 s, chosen by `rng`:
/// crash a node (no graceful step), isolate a node, or isolate the leader,
/// each healed (and a crashed node restarted) at the next step, so a
/// majority exists most of the time. Then everything is healed and every
/// node runs. Returns the faults in order, for the failure message.
pub(super) async fn inject_faults(
    c: &mut TestCluster,
    rng: &mut rand::rngs::StdRng,
    run_for: Duration,
) -> anyhow::Result<Vec<String>> {
    use rand::Rng;
    let started = tokio::time::Instant::now();
    let mut down: Option<NodeId> = None;
    let mut faults = Vec::new();
    while started.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1_500..4_000))).await;
        if let Some(d) = down.take() {
            c.heal();
            if !c.alive().contains(&d) {
                c.start_node(d).await?;
            }
            faults.push(format!("heal {d}"));
            continue;
        }
        let victim = rng.gen_range(1..=3u64);
        match rng.gen_range(0..3) {
            0 => {
                c.crash(victim).await;
                faults.push(format!("crash {victim}"));
            }
            1 => {
                c.isolate(victim);
                faults.push(format!("isolate {victim}"));
            }
            _ => {
                let leader = c
                    .alive()
                    .into_iter()
                    .find(|n| c.node(*n).consensus.is_leader())
                    .unwrap_or(victim);
                c.isolate(leader);
                faults.push(format!("isolate leader {leader}"));
                down = Some(leader);
                continue;
            }
        }
        down = Some(victim);
    }
    c.heal();
    for id in 1..=3 {
        if !c.alive().contains(&id) {
            c.start_node(id).await?;
        }
    }
    Ok(faults)
}

/// The most sessions one process held at once (delivered and not ended).
fn most_sessions_at_once(h: &[respawn_tests::history::Entry]) -> usize {
    use std::collections::{BTreeMap, BTreeSet};
    let mut held: BTreeMap<&ProcessId, BTreeSet<&BattleSessionId>> = BTreeMap::new();
    let mut most = 0;
    for e in h {
        match &e.obs {
            Observation::SessionDelivered {
                process,
                battle_session,
            } => {
                let s = held.entry(process).or_default();
                s.insert(battle_session);
                most = most.max(s.len());
            }
            Observation::SessionEnded {
                process,
                battle_session,
            } => {
                held.entry(process).or_default().remove(battle_session);
            }
            Observation::ProcessEnded { process } => {
                held.remove(process);
            }
            _ => {}
        }
    }
    most
}
