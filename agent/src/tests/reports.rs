//! Reports to the cluster: kept in order across link outages and refusals; launch failures; fleets that are not this host's.

use super::*;

#[tokio::test]
async fn reports_survive_a_link_outage_in_order_and_sdk_calls_get_503() {
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    h.link.down.store(true, Ordering::SeqCst);
    let pid = h.agent.live_processes()[0].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The replacement starts while the link is down; its reports queue.
    h.wait_state("a replacement that called ProcessReady", |reg| {
        reg.procs.values().any(|p| p.id != id && p.port.is_some())
    })
    .await;
    let next = h.agent.live_processes()[0].process_id.clone();
    assert!(h.link.refused.load(Ordering::SeqCst) > 0);
    assert!(
        h.agent.pending_reports() >= 3,
        "ProcessExited, ProcessStarted, ProcessReady are queued"
    );

    // A forwarded SDK call fails fast with 503 while the link is down.
    let resp = http()
        .post(format!("{}{}", h.agent.sdk_endpoint(), api::PATH_ACTIVATE))
        .bearer_auth(h.token_of(&next))
        .json(&serde_json::json!({"battle_session_id": "bs-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");

    h.link.down.store(false, Ordering::SeqCst);
    h.agent.link_up();
    h.wait_ready(2).await;
    let log = h.link.log.lock().unwrap().clone();
    let tail: Vec<&AgentToServer> = log
        .iter()
        .skip_while(|m| !matches!(m, AgentToServer::ProcessExited { .. }))
        .collect();
    assert!(
        matches!(tail[0], AgentToServer::ProcessExited { process_id, .. } if process_id == &id),
        "{tail:?}"
    );
    assert!(
        matches!(tail[1], AgentToServer::ProcessStarted { process_id, .. } if process_id == &next),
        "{tail:?}"
    );
    assert!(
        matches!(tail[2], AgentToServer::ProcessReady { process_id, .. } if process_id == &next),
        "{tail:?}"
    );
}

#[tokio::test]
async fn reports_refused_for_want_of_a_leader_are_retried_in_order() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    h.wait_state("a process", |reg| !reg.procs.is_empty()).await;
    let id = h.agent.live_processes()[0].process_id.clone();
    let refusals = Arc::new(AtomicUsize::new(0));
    let counter = refusals.clone();
    *h.link.reply.lock().unwrap() = Some(Box::new(move |m| match m {
        AgentToServer::ProcessExited { .. } if counter.fetch_add(1, Ordering::SeqCst) < 2 => Some(
            ServerReply::Err(WireError::new(ErrorCode::NotLeader, "election in progress")),
        ),
        _ => None,
    }));
    assert_eq!(
        h.agent
            .handle_command(ServerToAgent::KillProcess {
                process_id: id.clone()
            })
            .await,
        AgentReply::Ok
    );
    // The replacement's ProcessStarted waits behind the retried ProcessExited.
    let next = h
        .wait_log("the replacement's ProcessStarted", |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessStarted { process_id, .. } if process_id != &id => {
                    Some(process_id.clone())
                }
                _ => None,
            })
        })
        .await;
    let log = h.link.log.lock().unwrap().clone();
    let exits: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, AgentToServer::ProcessExited { process_id, .. } if process_id == &id))
        .map(|(i, _)| i)
        .collect();
    let started = log
        .iter()
        .position(|m| matches!(m, AgentToServer::ProcessStarted { process_id, .. } if process_id == &next))
        .unwrap();
    assert_eq!(exits.len(), 3, "two refusals, then accepted: {log:#?}");
    assert!(exits.iter().all(|&i| i < started));
}

#[tokio::test]
async fn processes_that_cannot_start_are_reported_and_retried() {
    let mut rt = sh_runtime("");
    rt.launch_path = "/nonexistent/ds".into();
    let h = start(fleet(rt, 5_000), Duration::from_secs(1)).await;
    let failures = h
        .wait_log("two LaunchFailed", |log| {
            let ids: Vec<_> = log
                .iter()
                .filter_map(|m| match m {
                    AgentToServer::ProcessExited {
                        process_id,
                        reason: ExitReason::LaunchFailed { error },
                    } => Some((process_id.clone(), error.clone())),
                    _ => None,
                })
                .collect();
            (ids.len() >= 2).then_some(ids)
        })
        .await;
    assert_ne!(failures[0].0, failures[1].0);
    assert!(
        failures[0].1.contains("/nonexistent/ds"),
        "{}",
        failures[0].1
    );

    // A process that exits at once is reported with its exit code.
    let h = start(fleet(sh_runtime("exit 3"), 5_000), Duration::from_secs(1)).await;
    let id = h
        .wait_log("ProcessStarted", |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessStarted { process_id, .. } => Some(process_id.clone()),
                _ => None,
            })
        })
        .await;
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(3),
            signal: None
        }
    );
}

#[tokio::test]
async fn a_fleet_for_another_fleet_is_refused() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    let mut other = fleet(sh_runtime("true"), 5_000);
    other.id = FleetId::new_unchecked("fleet-other");
    assert!(matches!(
        h.agent.apply_fleet(other.clone()),
        Err(AgentError::WrongFleet { .. })
    ));
    match h
        .agent
        .handle_command(ServerToAgent::FleetUpdated { fleet: other })
        .await
    {
        AgentReply::Err(e) => assert_eq!(e.code, ErrorCode::BadRequest),
        r => panic!("{r:?}"),
    }
    let mut bad = fleet(sh_runtime("true"), 5_000);
    bad.runtime.processes_per_host = MAX_PROCESSES_PER_HOST + 1;
    assert!(matches!(
        h.agent.apply_fleet(bad),
        Err(AgentError::InvalidFleet(_))
    ));
    let mut config = AgentConfig::new(
        HostId::new_unchecked("h"),
        FleetId::new_unchecked("f"),
        "1.2.3.4",
        h.dir.path(),
    );
    config.local_api_addr = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(
        Agent::start(config, h.link.clone()).await,
        Err(AgentError::NotLoopback(_))
    ));
}
