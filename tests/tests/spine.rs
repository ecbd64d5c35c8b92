//! The DS Hosting path end to end, in process: a server node and an agent
//! with the real sample DS processes, driven over the HTTP edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_config::DEV_FLEET;
use respawn_tests::*;
use respawn_types::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_lifecycle_end_to_end() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    let ready = c.wait_ready(1).await?;
    let first_process = ready[0].clone();

    // Place a battle session with two players.
    let pl = c.backend.place(DEV_FLEET, &["alice", "bob"]).await?;
    let v = c.backend.wait_status(&pl, "FULFILLED", T).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE");
    assert_eq!(v["ip"], "127.0.0.1");
    let port = v["port"].as_u64().expect("port") as u16;
    assert_eq!(Some(port), c.process(&first_process).and_then(|p| p.port));
    let players = v["players"].as_array().expect("players").clone();
    assert_eq!(players.len(), 2);
    assert!(players.iter().all(|p| p["status"] == "RESERVED"));
    let bs = v["battle_session_id"].as_str().unwrap().to_string();
    let alice = players.iter().find(|p| p["player_id"] == "alice").unwrap()
        ["player_battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();

    // A third player is added by the backend.
    let added = c
        .backend
        .ok(
            "/dsm/add_players_to_battle_session",
            json!({"battle_session_id": bs, "players": [{"player_id": "carol"}]}),
        )
        .await?;
    let carol = added["player_battle_sessions"][0]["player_battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(added["player_battle_sessions"][0]["status"], "RESERVED");

    // Alice connects to the DS, which accepts her with the SDK.
    let mut game = GameClient::connect("127.0.0.1", port).await?;
    assert_eq!(game.say(&format!("JOIN {alice}")).await?, "OK");
    // Carol joins too and stays, so the session outlives Alice's departure.
    let mut carol_game = GameClient::connect("127.0.0.1", port).await?;
    assert_eq!(carol_game.say(&format!("JOIN {carol}")).await?, "OK");
    let q = c
        .backend
        .ok(
            "/dsm/query_player_battle_sessions",
            json!({"player_id": "alice"}),
        )
        .await?;
    assert_eq!(q["player_battle_sessions"][0]["status"], "ACTIVE");
    assert_eq!(q["player_battle_sessions"][0]["port"], port);
    // An unknown player battle session is refused by the DS (the cluster says no).
    let mut intruder = GameClient::connect("127.0.0.1", port).await?;
    assert!(intruder.say("JOIN pbs-nobody").await?.starts_with("ERR"));

    // Alice leaves: COMPLETED, and her reservation is gone from queries.
    assert_eq!(game.say("LEAVE").await?, "OK");
    wait_for("alice completed", T, || async {
        let q = c
            .backend
            .ok(
                "/dsm/query_player_battle_sessions",
                json!({"player_id": "alice"}),
            )
            .await
            .ok()?;
        q["player_battle_sessions"]
            .as_array()?
            .is_empty()
            .then_some(())
    })
    .await?;

    // Carol disconnects (may come back), then reconnects.
    assert_eq!(carol_game.say("DISCONNECT").await?, "OK");
    let st = |c: &Cluster| {
        c.read(|s| {
            s.player_battle_sessions[&PlayerBattleSessionId::new_unchecked(carol.clone())].status
        })
    };
    wait_for("carol disconnected", T, || async {
        (st(&c) == PlayerBattleSessionStatus::Disconnected).then_some(())
    })
    .await?;
    let mut carol_game = GameClient::connect("127.0.0.1", port).await?;
    assert_eq!(carol_game.say(&format!("JOIN {carol}")).await?, "OK");
    assert_eq!(st(&c), PlayerBattleSessionStatus::Active);

    // The session ends: the DS calls ProcessEnding and exits; Carol's reservation is released.
    let mut ender = GameClient::connect("127.0.0.1", port).await?;
    ender.send("END").await?;
    wait_for("first process exited", T, || async {
        (c.process(&first_process)?.status == ProcessStatus::Exited).then_some(())
    })
    .await?;
    let v = c.backend.describe(&pl).await?;
    assert_eq!(
        v["status"], "FULFILLED",
        "a fulfilled placement stays fulfilled"
    );
    assert_eq!(v["battle_session_status"], "TERMINATED");
    let carol_status = c.read(|s| {
        s.player_battle_sessions[&PlayerBattleSessionId::new_unchecked(carol.clone())].status
    });
    assert_eq!(carol_status, PlayerBattleSessionStatus::Completed);

    // The agent relaunches a process; the next placement lands there, never on the old one.
    let fresh = wait_for("a relaunched process", T, || async {
        c.ready_processes()
            .into_iter()
            .find(|p| p != &first_process)
    })
    .await?;
    let pl2 = c.backend.place(DEV_FLEET, &["dave"]).await?;
    c.backend.wait_status(&pl2, "FULFILLED", T).await?;
    assert_eq!(c.process_of(&pl2), Some(fresh));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_without_free_process_waits_then_times_out() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        placement_timeout_secs: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let pl1 = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl1, "FULFILLED", T).await?;
    // The only process is taken (simple mode): the next placement is PENDING, not an error.
    let pl2 = c.backend.place(DEV_FLEET, &["x"]).await?;
    assert_eq!(c.backend.describe(&pl2).await?["status"], "PENDING");
    let v = c.backend.wait_status(&pl2, "TIMED_OUT", T).await?;
    assert_eq!(v["battle_session_status"], "TERMINATED");
    assert_eq!(v["players"][0]["status"], "COMPLETED");
    // Cancelling a terminal placement is refused and changes nothing.
    let (status, body) = c
        .backend
        .post(
            "/dsm/cancel_battle_session_placement",
            json!({"placement_id": pl2}),
        )
        .await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(c.backend.describe(&pl2).await?["status"], "TIMED_OUT");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_pending_placement() -> anyhow::Result<()> {
    // No process ever becomes free: a DS that never activates holds the only slot.
    let c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let pl1 = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl1, "FULFILLED", T).await?;
    let pl2 = c.backend.place(DEV_FLEET, &[]).await?;
    let v = c
        .backend
        .ok(
            "/dsm/cancel_battle_session_placement",
            json!({"placement_id": pl2}),
        )
        .await?;
    assert_eq!(v["placement"]["status"], "CANCELLED");
    assert_eq!(c.backend.describe(&pl2).await?["status"], "CANCELLED");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_timeout_fails_placement_over_to_another_process() -> anyhow::Result<()> {
    // The sample DS never activates: every attempt times out, the placement FAILS
    // after max attempts, and each spent process is terminated and replaced.
    let c = Cluster::start(Options {
        processes: 2,
        activation_timeout_secs: 1,
        ds_args: vec!["--no-activate".into()],
        ..Options::default()
    })
    .await?;
    let before = c.wait_ready(2).await?;
    let pl = c.backend.place(DEV_FLEET, &[]).await?;
    let v = c
        .backend
        .wait_status(&pl, "FAILED", Duration::from_secs(60))
        .await?;
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or("")
            .contains("activation timed out"),
        "{v}"
    );
    // The spent processes were told to terminate and have exited.
    for p in &before {
        wait_for("spent process exited", T, || async {
            (c.process(p)?.status == ProcessStatus::Exited).then_some(())
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ds_killed_mid_session() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(2).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let victim = c.process_of(&pl).expect("process");
    let pid = c.process(&victim).and_then(|p| p.pid).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    wait_for("session terminated", T, || async {
        let v = c.backend.describe(&pl).await.ok()?;
        (v["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;
    assert_eq!(c.process(&victim).unwrap().status, ProcessStatus::Exited);
    assert_eq!(c.backend.describe(&pl).await?["status"], "FULFILLED");
    // New placements never land on the dead process.
    for _ in 0..2 {
        let next = c.backend.place(DEV_FLEET, &[]).await?;
        c.backend.wait_status(&next, "FULFILLED", T).await?;
        assert_ne!(c.process_of(&next), Some(victim.clone()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_ds_is_terminated_and_replaced() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        health_interval_secs: 1,
        ..Options::default()
    })
    .await?;
    let p = c.wait_ready(1).await?[0].clone();
    let port = c.process(&p).and_then(|x| x.port).unwrap();
    let mut g = GameClient::connect("127.0.0.1", port).await?;
    g.say("HANG").await?;
    let exited = wait_for("hung process terminated", T, || async {
        let x = c.process(&p)?;
        (x.status == ProcessStatus::Exited).then_some(x)
    })
    .await?;
    assert_eq!(exited.exit, Some(ExitReason::Unhealthy));
    wait_for("replacement", T, || async {
        c.ready_processes().into_iter().find(|x| x != &p)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_link_cut_and_restored() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(2).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let host = HostId::new_unchecked(respawn_config::DEV_HOST);
    c.agent().uplink.cut("test cuts the link");
    wait_for("link back", T, || async {
        (c.agent().uplink.is_up() && c.node().links.connected_hosts().contains(&host)).then_some(())
    })
    .await?;
    // The session continues, and new placements reach the agent.
    assert_eq!(
        c.backend.describe(&pl).await?["battle_session_status"],
        "ACTIVE"
    );
    let pl2 = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl2, "FULFILLED", T).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_committed_state_and_placements_continue() -> anyhow::Result<()> {
    let mut c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let before = c.read(|s| {
        (
            s.placements.clone(),
            s.fleets.clone(),
            s.title_regions.clone(),
        )
    });
    c.halt().await;
    c.boot().await?;
    let after = c.read(|s| {
        (
            s.placements.clone(),
            s.fleets.clone(),
            s.title_regions.clone(),
        )
    });
    assert_eq!(
        before, after,
        "committed placements, fleets and keys survive a restart"
    );
    // The DS died with the agent: its session is reconciled, not forgotten.
    wait_for("session reconciled", T, || async {
        (c.backend.describe(&pl).await.ok()?["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;
    c.wait_ready(1).await?;
    let pl2 = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl2, "FULFILLED", T).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_lingering_after_ending_is_killed_after_the_grace() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        ending_grace_secs: 1,
        ds_args: vec!["--linger-secs".into(), "600".into()],
        ..Options::default()
    })
    .await?;
    let p = c.wait_ready(1).await?[0].clone();
    let pl = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let port = c.process(&p).and_then(|x| x.port).unwrap();
    GameClient::connect("127.0.0.1", port)
        .await?
        .send("END")
        .await?;
    wait_for("process ending", T, || async {
        (c.process(&p)?.status == ProcessStatus::Ending).then_some(())
    })
    .await?;
    // It called ProcessEnding but stays alive: the grace timer kills it.
    let gone = wait_for("lingering process killed", T, || async {
        let x = c.process(&p)?;
        (x.status == ProcessStatus::Exited).then_some(x)
    })
    .await?;
    assert_eq!(gone.exit, Some(ExitReason::EndingGraceExpired));
    Ok(())
}

/// An agent connection that sends a malformed or oversized frame is closed
/// with a reason; the server keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_an_agent_closes_only_that_link() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let (_, agent_id) = respawn_net::ensure_dev_pki(&c.cfg.data_dir)?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(respawn_net::tls::client_config(&agent_id)?);
    for frame in [
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
    ] {
        let conn = ep
            .connect(c.node().quic_addr, respawn_net::pki::SERVER_NAME)?
            .await?;
        let (mut send, _recv) = conn.open_bi().await?;
        send.write_all(&frame).await?;
        send.finish()?;
        let why = tokio::time::timeout(T, conn.closed()).await?;
        match why {
            quinn::ConnectionError::ApplicationClosed(a) => {
                assert_eq!(
                    a.error_code,
                    quinn::VarInt::from_u32(respawn_net::link::CLOSE_MALFORMED_FRAME),
                    "{a:?}"
                );
                assert!(!a.reason.is_empty());
            }
            other => panic!("expected an application close, got {other:?}"),
        }
    }
    // The real agent's link is untouched and placements still work.
    assert!(c.agent().uplink.is_up());
    let pl = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    Ok(())
}

/// Timers are rebuilt from committed deadlines: a placement whose timeout
/// passes while the node is down times out after the restart, and the
/// relaunched processes cannot take it (its deadline is part of the state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_timer_survives_a_restart() -> anyhow::Result<()> {
    let mut c = Cluster::start(Options {
        processes: 1,
        placement_timeout_secs: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let busy = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&busy, "FULFILLED", T).await?;
    let waiting = c.backend.place(DEV_FLEET, &["x"]).await?;
    let deadline = c.backend.describe(&waiting).await?["deadline"]
        .as_u64()
        .unwrap();
    assert_eq!(c.backend.describe(&waiting).await?["status"], "PENDING");
    c.halt().await;
    wait_for("the deadline to pass while down", T, || async {
        (now_millis() > deadline).then_some(())
    })
    .await?;
    c.boot().await?;
    let v = c.backend.wait_status(&waiting, "TIMED_OUT", T).await?;
    assert_eq!(v["players"][0]["status"], "COMPLETED");
    Ok(())
}
