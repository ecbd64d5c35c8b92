//! A randomized autoscaler run under faults, checked by the history
//! checker with invariant 2 of the design: an autoscaled fleet (buffer,
//! min and max, a short scale-in delay) takes bursts of placements larger
//! than its buffer while nodes are crashed, isolated and partitioned; its
//! sessions end and the surplus is scaled in, again and again. No process
//! that holds a session may ever be asked to terminate.

use super::autoscale::{counts, put_fleet};
use super::randomized::inject_faults;
use super::*;
use serde_json::json;

const MIN: usize = 2;
const MAX: usize = 9;
const BUFFER: usize = 2;

/// How long faults and bursts go on: `RESPAWN_AUTOSCALE_RUN_SECS`, default
/// 30 s, at most 60 s.
fn run_for() -> Duration {
    let secs = std::env::var("RESPAWN_AUTOSCALE_RUN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30u64);
    Duration::from_secs(secs.clamp(1, 60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_autoscaling_under_faults_never_stops_a_busy_process() -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("RESPAWN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261206);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    c.router
        .set_delay(Duration::from_millis(0), Duration::from_millis(3));
    // Activation outlasts any fault (one at a time, at most 4 s), so every
    // DS activates its session: nothing but scaling stops a process here.
    put_fleet(
        &c,
        json!({"launch_path": "/bin/false", "processes_per_host": 6,
               "activation_timeout_secs": 30, "placement_timeout_secs": 20,
               "scaling": {"min_processes": MIN, "max_processes": MAX, "buffer": BUFFER,
                           "scale_in_delay_secs": 1}}),
    )
    .await?;
    let mut agents = Vec::new();
    for (host, session_ms) in [("host-a", 1_500), ("host-b", 2_500)] {
        let servers = if host == "host-a" {
            c.quic_addrs()
        } else {
            c.quic_addrs().into_iter().rev().collect()
        };
        agents.push(
            c.sim_agent_with(host, 6, Duration::from_millis(session_ms), servers, |o| {
                o.launch_delay = Duration::from_millis(200);
            })
            .await?,
        );
    }
    // Bursts of 1–7 placements (the buffer is 2) through random nodes,
    // every 0.5–3 s, each placement followed until it leaves PENDING.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let placer = {
        let backends: Vec<Backend> = (1..=3).map(|id| c.backend(id)).collect();
        let (h, stop) = (c.history.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
            let mut mine: Vec<String> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = rng.gen_range(1..=7);
                let burst: Vec<_> = (0..n)
                    .map(|_| {
                        let b = backends[rng.gen_range(0..backends.len())].clone();
                        let h = h.clone();
                        tokio::spawn(async move { place_recorded(&b, &h).await })
                    })
                    .collect();
                for p in burst {
                    if let Ok(PlaceOutcome::Accepted(pl)) = p.await {
                        mine.push(pl);
                    }
                }
                let pause = rng.gen_range(500..3_000);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            mine
        })
    };
    let faults = inject_faults(&mut c, &mut rng, run_for()).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let placed = placer.await?;
    c.settle(&placed).await?;
    // Quiescence: every session over and the fleet back to its buffer,
    // within min and max.
    let leader = c.wait_leader().await?;
    let (idle, live, sessions) = wait_for("the fleet scaled in to its buffer", T * 2, || async {
        let leader = c.wait_leader().await.ok()?;
        let (idle, live, sessions) = counts(&c, leader);
        (sessions == 0 && live == BUFFER.max(MIN) && idle == live).then_some((idle, live, sessions))
    })
    .await
    .map_err(|e| {
        let now = counts(&c, leader);
        anyhow::anyhow!("seed {seed}, faults {faults:?}: {e}; (idle, live, sessions) = {now:?}")
    })?;
    assert!(
        (MIN..=MAX).contains(&live) && idle >= BUFFER && sessions == 0,
        "seed {seed}: {live} processes, {idle} idle at quiescence"
    );
    let state = c.wait_converged().await?;
    let h = c.history.snapshot();
    let v = check(
        &h,
        &FinalState::from_state(&state, true).with_no_busy_stops(),
    );
    assert!(
        v.is_empty(),
        "seed {seed}, faults {faults:?}\n{}",
        summary(&v)
    );
    // The run proves something only if bursts were served and scale-in
    // stopped processes (here only the autoscaler asks a process to end).
    let accepted = h
        .iter()
        .filter(|e| matches!(e.obs, Observation::PlacementAccepted { .. }))
        .count();
    let stopped: std::collections::BTreeSet<&ProcessId> = h
        .iter()
        .filter_map(|e| match &e.obs {
            Observation::TerminateRequested { process } => Some(process),
            _ => None,
        })
        .collect();
    let fulfilled = state
        .placements
        .values()
        .filter(|p| p.status == PlacementStatus::Fulfilled)
        .count();
    assert!(
        accepted >= 20 && fulfilled >= 10,
        "seed {seed}: {accepted} placements accepted, {fulfilled} fulfilled; the run proves little"
    );
    assert!(
        !stopped.is_empty(),
        "seed {seed}: the autoscaler stopped no process; scale-in was not exercised"
    );
    let max_busy = max_processes_busy_at_once(&h);
    assert!(
        max_busy <= MAX,
        "seed {seed}: {max_busy} processes held sessions at once, max_processes is {MAX}"
    );
    eprintln!(
        "seed {seed}: {accepted} placements accepted, {fulfilled} fulfilled, {} processes \
         stopped by scale-in, at most {max_busy} busy at once, faults: {faults:?}",
        stopped.len()
    );
    for a in agents {
        a.stop();
    }
    Ok(())
}

/// The most processes that held a session at the same time (from what the
/// DSs saw): never more than `max_processes`.
fn max_processes_busy_at_once(h: &[respawn_tests::history::Entry]) -> usize {
    use std::collections::{BTreeMap, BTreeSet};
    let mut held: BTreeMap<&ProcessId, BTreeSet<&BattleSessionId>> = BTreeMap::new();
    let mut most = 0;
    for e in h {
        match &e.obs {
            Observation::SessionDelivered {
                process,
                battle_session,
            } => {
                held.entry(process).or_default().insert(battle_session);
            }
            Observation::SessionEnded {
                process,
                battle_session,
            } => {
                if let Some(s) = held.get_mut(process) {
                    s.remove(battle_session);
                    if s.is_empty() {
                        held.remove(process);
                    }
                }
            }
            Observation::ProcessEnded { process } => {
                held.remove(process);
            }
            _ => {}
        }
        most = most.max(held.len());
    }
    most
}
