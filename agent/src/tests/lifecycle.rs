//! DS processes launched, readied, given battle sessions, replaced when they die; the sample and Python example DS end to end.

use super::*;

#[tokio::test]
async fn launches_processes_that_report_started_then_ready() {
    let h = start(fleet(sample_runtime(2, &[]), 5_000), Duration::from_secs(5)).await;
    let ready = h.wait_ready(2).await;
    for (id, port) in &ready {
        assert_ne!(*port, 0);
        let started = h
            .index_of(|m| matches!(m, AgentToServer::ProcessStarted { process_id, .. } if process_id == id))
            .expect("ProcessStarted reported");
        let readied = h
            .index_of(
                |m| matches!(m, AgentToServer::ProcessReady { process_id, .. } if process_id == id),
            )
            .unwrap();
        assert!(
            started < readied,
            "ProcessStarted must come before ProcessReady"
        );
    }
    let live = h.agent.live_processes();
    assert_eq!(live.len(), 2);
    for (id, port) in &ready {
        let p = live.iter().find(|p| &p.process_id == id).unwrap();
        assert_eq!(p.port, Some(*port));
        assert!(!p.ending);
        // The sample DS logs into RESPAWN_LOG_DIR and names that file.
        let log_dir = h.dir.path().join("data").join("logs").join(id.as_str());
        assert_eq!(
            p.log_paths,
            vec![log_dir.join("sample-ds.log").to_string_lossy().into_owned()]
        );
        // Its stdout is captured; it logs its RESPAWN_PROCESS_ID once ready.
        wait_file_contains(
            &log_dir.join("stdout.log"),
            &format!("process ready process_id={id}"),
        )
        .await;
    }
    let hello = h.agent.hello();
    assert_eq!(hello.live_processes, live);
    assert_eq!(hello.host_id.as_str(), "host-test");
}

#[tokio::test]
async fn start_battle_session_is_activated_and_players_flow_until_the_ds_ends() {
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    // The cluster knows only pbs-1 and pbs-2.
    *h.link.reply.lock().unwrap() = Some(Box::new(|m| match m {
        AgentToServer::AcceptPlayerBattleSession {
            player_battle_session_id,
            ..
        } if player_battle_session_id.as_str() == "pbs-x" => Some(ServerReply::Err(
            WireError::new(ErrorCode::NotFound, "no player battle session pbs-x"),
        )),
        _ => None,
    }));
    let (id, port) = h.wait_ready(1).await.remove(0);

    let reply = h
        .agent
        .handle_command(ServerToAgent::StartBattleSession {
            process_id: id.clone(),
            session: spec(port, "bs-1", &["pbs-1", "pbs-2"]),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    h.wait_log("ActivateBattleSession", |log| {
        log.iter()
            .any(|m| {
                matches!(m, AgentToServer::ActivateBattleSession { process_id, battle_session_id }
                if process_id == &id && battle_session_id.as_str() == "bs-1")
            })
            .then_some(())
    })
    .await;

    let mut p1 = Client::connect(port).await;
    assert_eq!(p1.say("JOIN pbs-1").await, "OK");
    let mut p2 = Client::connect(port).await;
    let refused = p2.say("JOIN pbs-x").await;
    assert!(
        refused.starts_with("ERR") && refused.contains("no player battle session pbs-x"),
        "{refused}"
    );
    assert_eq!(p2.say("JOIN pbs-2").await, "OK");
    assert_eq!(p2.say("DISCONNECT").await, "OK");
    let mut p2 = Client::connect(port).await;
    assert_eq!(p2.say("JOIN pbs-2").await, "OK");
    assert_eq!(p1.say("LEAVE").await, "OK");
    // Closing the connection counts as leaving.
    drop(p2);

    let reason = h.wait_exited(&id).await;
    assert_eq!(
        reason,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    let log = h.link.log.lock().unwrap().clone();
    let of_id: Vec<String> = log
        .iter()
        .filter_map(|m| {
            let (name, pid, pbs) = match m {
                AgentToServer::AcceptPlayerBattleSession {
                    process_id,
                    player_battle_session_id,
                    ..
                } => ("accept", process_id, Some(player_battle_session_id)),
                AgentToServer::DisconnectPlayerBattleSession {
                    process_id,
                    player_battle_session_id,
                    ..
                } => ("disconnect", process_id, Some(player_battle_session_id)),
                AgentToServer::RemovePlayerBattleSession {
                    process_id,
                    player_battle_session_id,
                    ..
                } => ("remove", process_id, Some(player_battle_session_id)),
                AgentToServer::ProcessEnding { process_id } => ("ending", process_id, None),
                AgentToServer::ProcessExited { process_id, .. } => ("exited", process_id, None),
                _ => return None,
            };
            (pid == &id).then(|| match pbs {
                Some(p) => format!("{name} {p}"),
                None => name.to_owned(),
            })
        })
        .collect();
    assert_eq!(
        of_id,
        vec![
            "accept pbs-1",
            "accept pbs-x",
            "accept pbs-2",
            "disconnect pbs-2",
            "accept pbs-2",
            "remove pbs-1",
            "remove pbs-2",
            "ending",
            "exited"
        ]
    );
    // A fresh process replaces it.
    let next = h.wait_ready(2).await.remove(1);
    assert_ne!(next.0, id);
}

#[tokio::test]
async fn an_externally_killed_process_is_reported_and_replaced() {
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    let pid = h.agent.live_processes()[0].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: None,
            signal: Some(9)
        }
    );
    let (next, _) = h.wait_ready(2).await.remove(1);
    assert_ne!(next, id);
    let exited_at = h
        .index_of(
            |m| matches!(m, AgentToServer::ProcessExited { process_id, .. } if process_id == &id),
        )
        .unwrap();
    let restarted_at = h
        .index_of(|m| matches!(m, AgentToServer::ProcessStarted { process_id, .. } if process_id == &next))
        .unwrap();
    assert!(exited_at < restarted_at);
    // The old token no longer opens the local API.
    assert!(h.agent.shared.reg().tokens.values().all(|p| p != &id));
}

#[tokio::test]
async fn the_python_example_ds_works_under_the_agent() {
    let script = workspace_root().join("examples/python-ds/ds.py");
    assert!(script.exists(), "{} is missing", script.display());
    let rt = RuntimeConfig {
        launch_path: "python3".into(),
        args: vec!["-u".into(), script.to_string_lossy().into_owned()],
        env: Default::default(),
        processes_per_host: 1,
    };
    let h = start(fleet(rt, 250), Duration::from_secs(120)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    // It answers health checks.
    h.wait_state("answered health checks", |reg| {
        reg.procs
            .get(&id)
            .and_then(|p| p.health.as_ref())
            .is_some_and(|t| t.sent() >= 6)
            || !reg.procs.contains_key(&id)
    })
    .await;
    assert!(
        h.agent
            .shared
            .reg()
            .procs
            .get(&id)
            .is_some_and(|p| !p.terminating),
        "the Python DS failed its health checks"
    );
    let reply = h
        .agent
        .handle_command(ServerToAgent::StartBattleSession {
            process_id: id.clone(),
            session: spec(port, "bs-py", &["pbs-1"]),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    h.wait_log("ActivateBattleSession from Python", |log| {
        log.iter()
            .any(|m| matches!(m, AgentToServer::ActivateBattleSession { process_id, battle_session_id } if process_id == &id && battle_session_id.as_str() == "bs-py"))
            .then_some(())
    })
    .await;
    let mut player = Client::connect(port).await;
    assert_eq!(player.say("JOIN pbs-1").await, "OK");
    assert_eq!(player.say("LEAVE").await, "OK");
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    let log = h.link.log.lock().unwrap().clone();
    let names: Vec<&str> = log
        .iter()
        .filter_map(|m| match m {
            AgentToServer::AcceptPlayerBattleSession { process_id, .. } if process_id == &id => {
                Some("accept")
            }
            AgentToServer::RemovePlayerBattleSession { process_id, .. } if process_id == &id => {
                Some("remove")
            }
            AgentToServer::ProcessEnding { process_id } if process_id == &id => Some("ending"),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["accept", "remove", "ending"]);
}

#[tokio::test]
async fn the_sample_ds_ends_its_session_on_time_or_when_the_platform_ends_it() {
    // --no-activate and a one-second session: it never activates, then ends.
    let rt = RuntimeConfig {
        launch_path: sample_ds().to_string_lossy().into_owned(),
        args: vec!["--session-secs".into(), "1".into(), "--no-activate".into()],
        env: Default::default(),
        processes_per_host: 1,
    };
    let h = start(fleet(rt, 5_000), Duration::from_secs(5)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    let start_cmd = |id: &ProcessId, bs: &str| ServerToAgent::StartBattleSession {
        process_id: id.clone(),
        session: spec(port, bs, &[]),
    };
    assert_eq!(
        h.agent.handle_command(start_cmd(&id, "bs-1")).await,
        AgentReply::Ok
    );
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    let log = h.link.log.lock().unwrap().clone();
    assert!(log
        .iter()
        .any(|m| matches!(m, AgentToServer::ProcessEnding { process_id } if process_id == &id)));
    assert!(!log.iter().any(|m| matches!(m, AgentToServer::ActivateBattleSession { process_id, .. } if process_id == &id)));

    // The platform terminating the session ends it too.
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    assert_eq!(
        h.agent.handle_command(start_cmd(&id, "bs-2")).await,
        AgentReply::Ok
    );
    let reply = h
        .agent
        .handle_command(ServerToAgent::TerminateBattleSession {
            process_id: id.clone(),
            battle_session_id: BattleSessionId::new_unchecked("bs-2"),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    assert!(h
        .index_of(|m| matches!(m, AgentToServer::ProcessEnding { process_id } if process_id == &id))
        .is_some());
}
