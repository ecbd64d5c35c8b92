//! Retention through the edge: ended placements leave the state after the
//! window and answer 404 `expired`; issued battle session ids are capped
//! per title region (429) and expire; a node restarted after pruning
//! comes back with the same state.

use super::*;
use respawn_config::RetentionSection;

fn short(max_issued: u32) -> RetentionSection {
    RetentionSection {
        records_secs: 1,
        issued_ids_secs: 1,
        max_issued_ids_per_title_region: max_issued,
        interval_ms: 100,
        batch: 500,
    }
}

/// Waits until `path` with `body` answers 404 with error code `expired`.
async fn wait_expired(c: &Cluster, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    wait_for(&format!("{path} to answer expired"), T, || async {
        let (status, v) = c.backend.post(path, body.clone()).await.ok()?;
        (status == 404 && v["error"] == "expired").then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_placements_expire_and_a_restart_keeps_the_pruned_state() -> anyhow::Result<()> {
    let mut c = Cluster::start(Options {
        processes: 1,
        session_secs: 1,
        retention: short(100),
        ..Options::default()
    })
    .await?;
    let first_process = c.wait_ready(1).await?.remove(0);
    let pl = c.backend.place(DEV_FLEET, &["alice"]).await?;
    let v = c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let bs = v["battle_session_id"].as_str().unwrap().to_string();
    let pbs = v["players"][0]["player_battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let placement_id = PlacementId::new_unchecked(pl.clone());

    // The sample DS ends its session after a second and exits; a second
    // later the records are gone and the edge says they expired.
    wait_expired(
        &c,
        "/dsm/describe_battle_session_placement",
        json!({"placement_id": pl}),
    )
    .await?;
    let gone = c.read(|s| {
        !s.placements.contains_key(&placement_id)
            && !s
                .battle_sessions
                .contains_key(&BattleSessionId::new_unchecked(bs.clone()))
            && !s
                .player_battle_sessions
                .contains_key(&PlayerBattleSessionId::new_unchecked(pbs.clone()))
    });
    assert!(
        gone,
        "placement, session and player battle session are removed together"
    );
    let (status, v) = c
        .backend
        .post(
            "/dsm/terminate_player_battle_session",
            json!({"battle_session_id": bs, "player_battle_session_id": pbs}),
        )
        .await?;
    assert_eq!((status, v["error"].as_str()), (404, Some("expired")), "{v}");
    let (status, v) = c
        .backend
        .post(
            "/dsm/add_players_to_battle_session",
            json!({"battle_session_id": bs, "players": [{"player_id": "bob"}]}),
        )
        .await?;
    assert_eq!((status, v["error"].as_str()), (404, Some("expired")), "{v}");
    // An id never seen, made now (after the pruned ones), is plain not found.
    let (status, v) = c
        .backend
        .post(
            "/dsm/describe_battle_session_placement",
            json!({"placement_id": PlacementId::generate().to_string()}),
        )
        .await?;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    // The exited process leaves too; the live replacement stays.
    wait_for("the exited process to be pruned", T, || async {
        (!c.read(|s| s.processes.contains_key(&first_process))).then_some(())
    })
    .await?;

    // A restart from the data dir comes back with the pruned state: the
    // same records and the same watermarks, and placements go on.
    let before = c.read(|s| (s.placements.clone(), s.battle_sessions.clone(), s.pruned));
    c.halt().await;
    c.boot().await?;
    let after = c.read(|s| (s.placements.clone(), s.battle_sessions.clone(), s.pruned));
    assert_eq!(
        before.0.keys().collect::<Vec<_>>(),
        after.0.keys().collect::<Vec<_>>()
    );
    assert_eq!(before.2, after.2, "the watermarks survive the restart");
    let (status, v) = c
        .backend
        .post(
            "/dsm/describe_battle_session_placement",
            json!({"placement_id": pl}),
        )
        .await?;
    assert_eq!((status, v["error"].as_str()), (404, Some("expired")), "{v}");
    c.wait_ready(1).await?;
    let pl2 = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl2, "FULFILLED", T).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_battle_session_ids_are_capped_and_expire() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        retention: short(3),
        ..Options::default()
    })
    .await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v = c
            .backend
            .ok("/dsm/request_battle_session_id", json!({}))
            .await?;
        ids.push(v["battle_session_id"].as_str().unwrap().to_string());
    }
    let (status, v) = c
        .backend
        .post("/dsm/request_battle_session_id", json!({}))
        .await?;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"], "too_many_requests");
    assert!(v["message"].as_str().unwrap().contains("at most 3"), "{v}");

    // After the issued-id window they expire, which frees the title region.
    wait_for("an issued id to be granted again", T, || async {
        let (status, _) = c
            .backend
            .post("/dsm/request_battle_session_id", json!({}))
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;
    let (status, v) = c
        .backend
        .post(
            "/dsm/start_battle_session_placement",
            json!({"fleet_id": DEV_FLEET, "battle_session_id": ids[0], "max_players": 2}),
        )
        .await?;
    assert_eq!((status, v["error"].as_str()), (404, Some("expired")), "{v}");
    assert!(c.read(|s| s.issued_session_ids.len() <= 3));
    Ok(())
}
