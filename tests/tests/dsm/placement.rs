//! A placement's lifecycle: fulfilled end to end, waiting for a free
//! process, cancelled, failed over after an activation timeout.

use super::*;

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
    // The only process is taken (simple mode): the next placement is
    // accepted PENDING, not an error (as the start answers it: a Describe
    // after it could already see TIMED_OUT on a slow machine).
    let v = c.backend.place_view(DEV_FLEET, &["x"]).await?;
    assert_eq!(v["status"], "PENDING", "{v}");
    let pl2 = v["placement_id"].as_str().unwrap().to_string();
    let v = c.backend.wait_status(&pl2, "TIMED_OUT", T).await?;
    assert_eq!(v["battle_session_status"], "TERMINATED");
    // `reason` explains every end other than FULFILLED (the OpenAPI says so).
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("placement timeout")),
        "{v}"
    );
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
    // In simple mode a withdrawn attempt spends the process: the DS gets
    // `process_terminate`, not `terminate_battle_session`
    // (docs/sdk-protocol.md §5.2).
    for p in &before {
        let log = c
            .dir
            .path()
            .join("agent/logs")
            .join(p.as_str())
            .join("stdout.log");
        let text = std::fs::read_to_string(&log)?;
        assert!(text.contains("OnProcessTerminate received"), "{text}");
        assert!(
            !text.contains("OnTerminateBattleSession received"),
            "{text}"
        );
    }
    Ok(())
}

/// A backend that lost the answer to StartBattleSessionPlacement retries it:
/// the same request names the same placement (200, the same placement and
/// player battle session ids, whatever its status by then); another request
/// for that battle session id is still a conflict, and nothing is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_start_placement_answers_the_existing_placement() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let b = &c.backend;
    let bs = b.ok("/dsm/request_battle_session_id", json!({})).await?["battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let request = json!({
        "fleet_id": DEV_FLEET, "battle_session_id": bs, "max_players": 4,
        "properties": {"map": "dust"},
        "players": [{"player_id": "ann", "player_data": "red"}, {"player_id": "ben"}],
    });
    let start = "/dsm/start_battle_session_placement";
    let first = b.ok(start, request.clone()).await?["placement"].clone();
    let pl = first["placement_id"].as_str().unwrap().to_string();
    let pbs = |v: &Value| -> Vec<Value> {
        v["players"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["player_battle_session_id"].clone())
            .collect()
    };
    let again = b.ok(start, request.clone()).await?["placement"].clone();
    assert_eq!(again["placement_id"], first["placement_id"]);
    assert_eq!(pbs(&again), pbs(&first));
    b.wait_status(&pl, "FULFILLED", T).await?;
    let late = b.ok(start, request.clone()).await?["placement"].clone();
    assert_eq!(late["placement_id"], first["placement_id"]);
    assert_eq!(late["status"], "FULFILLED");
    assert_eq!(pbs(&late), pbs(&first));

    // Different requests for the same battle session id: 409, no change.
    let mut other = request.clone();
    other["max_players"] = json!(5);
    let mut other_players = request.clone();
    other_players["players"] =
        json!([{"player_id": "ann", "player_data": "blue"}, {"player_id": "ben"}]);
    let mut other_id = request.clone();
    other_id["placement_id"] = json!("pl-chosen-by-the-caller");
    for r in [other, other_players, other_id] {
        let (status, body) = b.post(start, r).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("conflict")),
            "{body}"
        );
    }
    let q = b
        .ok(
            "/dsm/query_player_battle_sessions",
            json!({"player_id": "ann"}),
        )
        .await?;
    assert_eq!(
        q["player_battle_sessions"].as_array().unwrap().len(),
        1,
        "{q}"
    );
    assert_eq!(b.describe(&pl).await?["status"], "FULFILLED");

    // A caller-chosen placement id repeats the same way.
    let bs2 = b.ok("/dsm/request_battle_session_id", json!({})).await?["battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let chosen = json!({"fleet_id": DEV_FLEET, "battle_session_id": bs2, "max_players": 2,
        "placement_id": "pl-mine-1"});
    assert_eq!(
        b.ok(start, chosen.clone()).await?["placement"]["placement_id"],
        "pl-mine-1"
    );
    assert_eq!(
        b.ok(start, chosen).await?["placement"]["placement_id"],
        "pl-mine-1"
    );
    Ok(())
}
