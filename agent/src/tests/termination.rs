//! Terminating and killing processes: commands, the kill grace, shutdown.

use super::*;

#[tokio::test]
async fn terminate_and_kill_commands() {
    // A sample DS obeys TerminateProcess by itself.
    let h = start(
        fleet(sample_runtime(1, &[]), 5_000),
        Duration::from_secs(120),
    )
    .await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    let reply = h
        .agent
        .handle_command(ServerToAgent::TerminateProcess {
            process_id: id.clone(),
            reason: "activation timed out".into(),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    assert_eq!(h.wait_exited(&id).await, ExitReason::Killed);
    let (next, _) = h.wait_ready(2).await.remove(1);
    // KillProcess kills at once.
    assert_eq!(
        h.agent
            .handle_command(ServerToAgent::KillProcess {
                process_id: next.clone()
            })
            .await,
        AgentReply::Ok
    );
    assert_eq!(h.wait_exited(&next).await, ExitReason::EndingGraceExpired);
    // Commands for processes this host does not run.
    let ghost = ProcessId::new_unchecked("proc-ghost");
    for cmd in [
        ServerToAgent::KillProcess {
            process_id: ghost.clone(),
        },
        ServerToAgent::TerminateProcess {
            process_id: ghost.clone(),
            reason: "x".into(),
        },
        ServerToAgent::TerminateBattleSession {
            process_id: ghost.clone(),
            battle_session_id: BattleSessionId::new_unchecked("bs-1"),
        },
        ServerToAgent::StartBattleSession {
            process_id: ghost.clone(),
            session: spec(1, "bs-1", &[]),
        },
    ] {
        match h.agent.handle_command(cmd).await {
            AgentReply::Err(e) => assert_eq!(e.code, ErrorCode::NotFound),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_process_that_ignores_terminate_is_killed_after_the_grace() {
    // sh never reads its events, so it never hears OnProcessTerminate.
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_millis(200),
    )
    .await;
    let id = h
        .wait_log("ProcessStarted", |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessStarted { process_id, .. } => Some(process_id.clone()),
                _ => None,
            })
        })
        .await;
    // Not ready: it cannot take a battle session.
    match h
        .agent
        .handle_command(ServerToAgent::StartBattleSession {
            process_id: id.clone(),
            session: spec(1, "bs-1", &[]),
        })
        .await
    {
        AgentReply::Err(e) => assert_eq!(e.code, ErrorCode::InvalidState),
        other => panic!("expected InvalidState, got {other:?}"),
    }
    let reply = h
        .agent
        .handle_command(ServerToAgent::TerminateProcess {
            process_id: id.clone(),
            reason: "bye".into(),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    assert_eq!(h.wait_exited(&id).await, ExitReason::Killed);
}

#[tokio::test]
async fn shutdown_kills_every_process_and_reports_it() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    let mut rt = sh_runtime("exec sleep 600");
    rt.processes_per_host = 2;
    h.agent.apply_fleet(fleet(rt, 5_000)).unwrap();
    h.wait_state("two processes", |reg| reg.procs.len() == 2)
        .await;
    let ids: Vec<ProcessId> = h
        .agent
        .live_processes()
        .into_iter()
        .map(|p| p.process_id)
        .collect();
    h.agent.shutdown().await;
    assert!(h.agent.live_processes().is_empty());
    for id in &ids {
        assert_eq!(h.wait_exited(id).await, ExitReason::Killed);
    }
}

#[tokio::test]
async fn a_drain_asks_the_cluster_launches_nothing_and_ends_when_no_process_is_left() {
    // The fake cluster takes the drain request but never terminates
    // anything itself: the process ends only when told to.
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_millis(200),
    )
    .await;
    h.wait_state("one process", |reg| reg.procs.len() == 1)
        .await;
    let id = h.agent.live_processes().remove(0).process_id;
    let agent = h.agent.clone();
    let drain = tokio::spawn(async move { agent.drain_within(Duration::from_secs(600)).await });
    h.wait_log("SetDraining", |log| {
        log.contains(&AgentToServer::SetDraining { draining: true })
            .then_some(())
    })
    .await;
    assert!(h.dir.path().join("data").join(crate::DRAIN_MARKER).exists());
    // What the cluster does to an idle process of a draining host.
    let reply = h
        .agent
        .handle_command(ServerToAgent::TerminateProcess {
            process_id: id.clone(),
            reason: "host draining".into(),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    let outcome = tokio::time::timeout(DEADLINE, drain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, crate::DrainOutcome::Drained);
    assert_eq!(h.wait_exited(&id).await, ExitReason::Killed);
    // Nothing was launched after the drain began.
    let started = h
        .link
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|m| matches!(m, AgentToServer::ProcessStarted { .. }))
        .count();
    assert_eq!(started, 1);
    h.agent.shutdown().await;

    // An agent started again on that data directory undrains its host
    // before it reports anything else, and removes the marker.
    let link = Arc::new(FakeLink::default());
    let config = AgentConfig::new(
        HostId::new_unchecked("host-test"),
        FleetId::new_unchecked("fleet-test"),
        "127.0.0.1",
        h.dir.path().join("data"),
    );
    let again = Agent::start(config, link.clone()).await.unwrap();
    again
        .apply_fleet(fleet(sh_runtime("exec sleep 600"), 5_000))
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let changed = link.changed.notified();
        if let Some(first) = link.log.lock().unwrap().first().cloned() {
            assert_eq!(first, AgentToServer::SetDraining { draining: false });
            break;
        }
        tokio::time::timeout_at(deadline, changed)
            .await
            .expect("no report from the restarted agent");
    }
    assert!(!h.dir.path().join("data").join(crate::DRAIN_MARKER).exists());
    again.shutdown().await;
}
