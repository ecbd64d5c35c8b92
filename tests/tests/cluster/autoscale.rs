//! Autoscaling and rolling updates over a cluster with simulated agents:
//! a burst of placements larger than the buffer is absorbed and the buffer
//! restored, surplus capacity is scaled in after the delay, and a new fleet
//! version replaces idle processes while busy ones finish — never stopping
//! a process that holds a session (history checker, invariant 2).

use super::*;
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token-0123456789";

/// Calls the leader's admin API (idempotent calls only), again while the
/// cluster answers 503; fails on any answer but 200.
async fn admin_ok(
    c: &TestCluster,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    wait_for(&format!("{method} {path}"), T, || async {
        let leader = c.wait_leader().await.ok()?;
        let a = c
            .backend(leader)
            .admin(ADMIN, method, path, body.clone())
            .await
            .ok()?;
        match a.status {
            200 => Some(Ok(a.json())),
            503 => None,
            s => Some(Err(anyhow::anyhow!("{method} {path}: {s} {}", a.body))),
        }
    })
    .await?
}

fn fleet_path() -> String {
    format!("/admin/title_regions/{TITLE_REGION}/fleets/{FLEET}")
}

/// PUTs the fleet (idempotent), again while the cluster answers 503.
pub(super) async fn put_fleet(c: &TestCluster, body: Value) -> anyhow::Result<Value> {
    admin_ok(c, "PUT", &fleet_path(), Some(body)).await
}

/// The fleet's view, asked again while the cluster answers "unavailable"
/// (a read index during an election on a loaded machine).
async fn fleet_view(c: &TestCluster) -> anyhow::Result<Value> {
    wait_for("the fleet's view", T, || async {
        let leader = c.wait_leader().await.ok()?;
        let a = c
            .backend(leader)
            .admin(ADMIN, "GET", &fleet_path(), None)
            .await
            .ok()?;
        (a.status == 200).then(|| a.json())
    })
    .await
}

/// (idle READY, LAUNCHING or READY, sessions) of the fleet, on the leader.
pub(super) fn counts(c: &TestCluster, leader: NodeId) -> (usize, usize, usize) {
    c.read(leader, |s| {
        let fleet = FleetId::new_unchecked(FLEET);
        let live: Vec<&DsProcess> = s
            .live_processes_by_fleet
            .get(&fleet)
            .into_iter()
            .flatten()
            .filter_map(|p| s.processes.get(p).map(|r| &**r))
            .filter(|p| matches!(p.status, ProcessStatus::Launching | ProcessStatus::Ready))
            .collect();
        let idle = live
            .iter()
            .filter(|p| p.status == ProcessStatus::Ready && p.sessions_current == 0)
            .count();
        let sessions = live.iter().map(|p| p.sessions_current as usize).sum();
        (idle, live.len(), sessions)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_restores_the_buffer_and_surplus_is_scaled_in_after_the_delay() -> anyhow::Result<()>
{
    let c = TestCluster::start(ClusterOptions::default()).await?;
    put_fleet(
        &c,
        json!({"launch_path": "/bin/false", "processes_per_host": 8, "activation_timeout_secs": 10,
               "scaling": {"buffer": 2, "scale_in_delay_secs": 2}}),
    )
    .await?;
    let mut agents = Vec::new();
    for host in ["host-a", "host-b"] {
        agents.push(
            c.sim_agent_with(host, 8, Duration::from_secs(3), c.quic_addrs(), |o| {
                o.launch_delay = Duration::from_millis(200);
            })
            .await?,
        );
    }
    let leader = c.wait_leader().await?;
    wait_for("the buffer of 2 idle processes", T, || async {
        let (idle, live, _) = counts(&c, leader);
        (idle == 2 && live == 2).then_some(())
    })
    .await?;
    // A burst of 6 placements, more than the buffer.
    let b = c.backend(leader);
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let (b, h) = (b.clone(), c.history.clone());
            tokio::spawn(async move { fulfilled(&b, &h).await })
        })
        .collect();
    for p in burst {
        p.await??;
    }
    wait_for(
        "the buffer restored beside the busy processes",
        T,
        || async {
            let (idle, _, _) = counts(&c, leader);
            (idle >= 2).then_some(())
        },
    )
    .await?;
    // Sessions end (their processes with them): the surplus goes after the delay.
    wait_for(
        "scale-in back to the buffer",
        Duration::from_secs(60),
        || async {
            let (idle, live, sessions) = counts(&c, leader);
            (idle == 2 && live == 2 && sessions == 0).then_some(())
        },
    )
    .await?;
    let view = fleet_view(&c).await?;
    let scaling = &view["scaling"];
    assert_eq!(scaling["policy"], "autoscaled", "{view}");
    assert_eq!(scaling["desired_processes"], 2, "{view}");
    assert_eq!(scaling["desired_hosts"], 1, "{view}");
    assert!(scaling["decisions"].as_u64().unwrap_or(0) >= 2, "{view}");
    let state = c.wait_converged().await?;
    let fin = FinalState::from_state(&state, true).with_no_busy_stops();
    let v = check(&c.history.snapshot(), &fin);
    assert!(v.is_empty(), "{}", summary(&v));
    for a in agents {
        a.stop();
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_fleet_version_replaces_idle_processes_and_busy_ones_finish() -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions::default()).await?;
    let spec = |args: Value| {
        json!({"launch_path": "/bin/false", "args": args, "processes_per_host": 3,
               "activation_timeout_secs": 10})
    };
    put_fleet(&c, spec(json!(["--v1"]))).await?;
    let agent = c
        .sim_agent("host-a", 3, Duration::from_secs(600), c.quic_addrs())
        .await?;
    let leader = c.wait_leader().await?;
    let b = c.backend(leader);
    // One busy process of the old version.
    fulfilled(&b, &c.history).await?;
    let v2 = put_fleet(&c, spec(json!(["--v2"]))).await?["version"]
        .as_u64()
        .unwrap_or(0);
    let version_of = |s: &respawn_state::ClusterState, busy: bool| -> Vec<u64> {
        s.processes
            .values()
            .map(|r| &**r)
            .filter(|p| matches!(p.status, ProcessStatus::Ready))
            .filter(|p| (p.sessions_current > 0) == busy)
            .map(|p| p.fleet_version)
            .collect()
    };
    wait_for("idle processes replaced by the new version", T, || async {
        let (idle, busy) = c.read(leader, |s| (version_of(s, false), version_of(s, true)));
        (idle.len() == 2 && idle.iter().all(|v| *v == v2) && busy.len() == 1).then_some(())
    })
    .await?;
    // The busy old-version process still runs its session.
    let busy = c.read(leader, |s| version_of(s, true));
    assert!(busy.iter().all(|v| *v < v2), "{busy:?}");
    let view = fleet_view(&c).await?;
    assert_eq!(view["scaling"]["rollout"]["older_busy"], 1, "{view}");
    assert_eq!(view["scaling"]["rollout"]["done"], false, "{view}");
    // A new session goes to a new-version process.
    let pl = fulfilled(&b, &c.history).await?;
    let on = c.read(leader, |s| {
        let p = s.placements.get(&PlacementId::new_unchecked(pl.clone()))?;
        let bs = s.battle_sessions.get(&p.battle_session_id)?;
        Some(s.processes.get(bs.process_id.as_ref()?)?.fleet_version)
    });
    assert_eq!(on, Some(v2));
    let state = c.wait_converged().await?;
    let fin = FinalState::from_state(&state, true).with_no_busy_stops();
    let v = check(&c.history.snapshot(), &fin);
    assert!(v.is_empty(), "{}", summary(&v));
    agent.stop();
    Ok(())
}

/// The scale-in clock is committed: a leader that crashes in the middle of
/// the delay leaves it to the next one, which goes on with the same clock
/// (never restarting it) and scales in once the delay has passed since the
/// surplus began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_in_delay_goes_on_across_a_leader_change() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    put_fleet(
        &c,
        json!({"launch_path": "/bin/false", "processes_per_host": 4,
               "scaling": {"buffer": 1, "scale_in_delay_secs": 8}}),
    )
    .await?;
    let agent = c
        .sim_agent("host-a", 4, Duration::from_secs(600), c.quic_addrs())
        .await?;
    // Four processes by hand, then back to the buffer of one: a surplus of 3.
    let desired = format!("{}/desired", fleet_path());
    admin_ok(&c, "PUT", &desired, Some(json!({"desired_processes": 4}))).await?;
    let leader = c.wait_leader().await?;
    wait_for("four idle processes", T, || async {
        (counts(&c, leader) == (4, 4, 0)).then_some(())
    })
    .await?;
    admin_ok(&c, "DELETE", &desired, None).await?;
    let clock = |c: &TestCluster, id: NodeId| {
        c.read(id, |s| {
            s.scaling
                .get(&FleetId::new_unchecked(FLEET))
                .and_then(|r| r.surplus_since)
        })
    };
    let since = wait_for("the scale-in clock committed", T, || async {
        clock(&c, leader)
    })
    .await?;
    c.crash(leader).await;
    let new = c.wait_new_leader(leader).await?;
    // Until the scale-in, the new leader's clock is the one committed
    // before the crash.
    wait_for(
        "scale-in to the buffer",
        Duration::from_secs(60),
        || async {
            let now = clock(&c, new);
            if now.is_some_and(|t| t != since) {
                return Some(Err(anyhow::anyhow!(
                    "the clock was restarted: {since} then {now:?}"
                )));
            }
            let (idle, live, _) = counts(&c, new);
            (idle == 1 && live == 1).then_some(Ok(()))
        },
    )
    .await??;
    let last = c.read(new, |s| {
        s.scaling
            .get(&FleetId::new_unchecked(FLEET))
            .and_then(|r| r.last.clone())
    });
    let last = last.expect("a decision");
    assert_eq!(
        last.action,
        respawn_types::scaling::ScalingAction::ScaleIn,
        "{last:?}"
    );
    assert!(
        last.at >= since + 8_000,
        "scale-in at {} before the delay since {since}",
        last.at
    );
    // The surplus is over: the clock is cleared.
    wait_for("the clock cleared", T, || async {
        clock(&c, new).is_none().then_some(())
    })
    .await?;
    let state = c.wait_converged().await?;
    let fin = FinalState::from_state(&state, true).with_no_busy_stops();
    let v = check(&c.history.snapshot(), &fin);
    assert!(v.is_empty(), "{}", summary(&v));
    agent.stop();
    Ok(())
}
