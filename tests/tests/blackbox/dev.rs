//! `respawn dev`: placements over HTTP, SIGKILL and restart, bad input.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_places_a_battle_session_over_http() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    let v = fulfilled_placement(&dev.backend).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE");
    assert!(v["port"].as_u64().is_some());
    assert!(v["players"][0]["player_battle_session_id"]
        .as_str()
        .unwrap()
        .starts_with("pbs-"));
    // Health, metrics and the OpenAPI document.
    let metrics = reqwest::get(format!("{}/metrics", dev.backend.base))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("respawn_placements_finished_total"),
        "{metrics}"
    );
    let api: Value = reqwest::get(format!("{}/openapi.json", dev.backend.base))
        .await?
        .json()
        .await?;
    assert!(api["paths"]["/dsm/start_battle_session_placement"]["post"].is_object());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_state_and_placements_continue() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let mut dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    let v = fulfilled_placement(&dev.backend).await?;
    let pl = v["placement_id"].as_str().unwrap().to_string();
    // The dev fleet's two processes both hold a session: a third placement
    // is accepted PENDING, and must survive the crash.
    fulfilled_placement(&dev.backend).await?;
    let waiting = dev
        .backend
        .place_view(respawn_config::DEV_FLEET, &["bob"])
        .await?;
    assert_eq!(waiting["status"], "PENDING", "{waiting}");
    let waiting = waiting["placement_id"].as_str().unwrap().to_string();
    dev.kill9();

    let dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    // Same credentials (keys are committed state), same placement, still FULFILLED.
    let after = dev.backend.describe(&pl).await?;
    assert_eq!(after["status"], "FULFILLED");
    assert_eq!(after["battle_session_id"], v["battle_session_id"]);
    // Its DS died with the process: reconciled, not forgotten.
    dev.backend.wait_status(&pl, "FULFILLED", T).await?;
    wait_for("old session reconciled", T, || async {
        (dev.backend.describe(&pl).await.ok()?["battle_session_status"] == "TERMINATED")
            .then_some(())
    })
    .await?;
    // The placement that was waiting is still known, and served by the
    // processes launched after the restart.
    dev.backend.wait_status(&waiting, "FULFILLED", T).await?;
    fulfilled_placement(&dev.backend).await?;
    Ok(())
}

/// `respawn_placements_started_total` on the node's `/metrics`.
async fn placements_started(b: &Backend) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{}/metrics", b.base))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("respawn_placements_started_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    let b = &dev.backend;
    let ticket = || {
        respawn_types::ticket::server::sign_ticket(
            &b.secret_key,
            &b.title_id,
            &b.title_region_id,
            &b.secret_id,
            now_millis() as i64 / 1000,
        )
    };
    let start = "/dsm/start_battle_session_placement";
    let count = || async {
        b.ok(
            "/dsm/query_player_battle_sessions",
            json!({"player_id": "eve"}),
        )
        .await
        .unwrap()["player_battle_sessions"]
            .as_array()
            .unwrap()
            .len()
    };

    // Malformed JSON, wrong types, unknown fields, oversized body.
    let (s, v) = b.post_with(start, "{not json".into(), &ticket()).await?;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("malformed JSON"),
        "{v}"
    );
    let (s, v) = b
        .post(
            start,
            json!({"fleet_id": 7, "battle_session_id": "x", "max_players": 2}),
        )
        .await?;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("fleet_id"), "{v}");
    let (s, v) = b
        .post(
            start,
            json!({"fleet_id": "f", "battle_session_id": "x", "max_players": 2, "bogus": 1}),
        )
        .await?;
    assert_eq!(s, 400, "{v}");
    let big = "x".repeat(200 * 1024);
    let (s, v) = b
        .post_with(start, format!("{{\"fleet_id\":\"{big}\"}}"), &ticket())
        .await?;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"], "bad_request");

    // Unknown fleet, unissued / foreign battle session id, duplicate id.
    let bs = b.ok("/dsm/request_battle_session_id", json!({})).await?["battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = b.post(start, json!({"fleet_id": "fleet-nope", "battle_session_id": bs, "max_players": 2, "players": [{"player_id": "eve"}]})).await?;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": "bs-made-up", "max_players": 2})).await?;
    assert_eq!(s, 404, "{v}");
    let (s, v) = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": "bad id!", "max_players": 2})).await?;
    assert_eq!(s, 400, "{v}");
    let ok = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": bs, "max_players": 2})).await?;
    assert_eq!(ok.0, 200, "{}", ok.1);
    // The same request again names the same placement; another one for
    // the same battle session id is a conflict.
    let (s, v) = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": bs, "max_players": 2})).await?;
    assert_eq!(
        (s, &v["placement"]["placement_id"]),
        (200, &ok.1["placement"]["placement_id"]),
        "{v}"
    );
    let (s, v) = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": bs, "max_players": 3})).await?;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")), "{v}");
    let (s, _) = b
        .post(
            "/dsm/describe_battle_session_placement",
            json!({"placement_id": "pl-unknown"}),
        )
        .await?;
    assert_eq!(s, 404);
    assert_eq!(count().await, 0, "rejected requests reserved nothing");
    assert_eq!(
        placements_started(b).await?,
        1,
        "of all the starts above only the valid one started a placement"
    );

    // Authentication: bad, tampered, expired tickets; missing headers.
    let (s, v) = b
        .post_with("/dsm/request_battle_session_id", "{}".into(), "v1.1.00")
        .await?;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")), "{v}");
    let mut t = ticket();
    let last = t.pop().unwrap();
    t.push(if last == '0' { '1' } else { '0' });
    let (s, v) = b
        .post_with("/dsm/request_battle_session_id", "{}".into(), &t)
        .await?;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("signature"), "{v}");
    let old = respawn_types::ticket::server::sign_ticket(
        &b.secret_key,
        &b.title_id,
        &b.title_region_id,
        &b.secret_id,
        now_millis() as i64 / 1000 - 3600,
    );
    let (s, v) = b
        .post_with("/dsm/request_battle_session_id", "{}".into(), &old)
        .await?;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    let r = reqwest::Client::new()
        .post(format!("{}/dsm/request_battle_session_id", b.base))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await?;
    assert!(v["message"].as_str().unwrap().contains("TitleId"), "{v}");
    // A right key presented for another (unknown) region.
    let mut other = b.clone();
    other.title_region_id = "tr-other".into();
    let (s, _) = other
        .post("/dsm/request_battle_session_id", json!({}))
        .await?;
    assert_eq!(s, 401);

    assert_eq!(
        placements_started(b).await?,
        1,
        "refused callers changed nothing"
    );

    // Unknown endpoint and wrong method get JSON too.
    let r = reqwest::get(format!("{}/dsm/start_battle_session_placement", b.base)).await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await?["error"], "bad_request");
    let r = reqwest::get(format!("{}/nope", b.base)).await?;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await?["error"], "not_found");
    // And the server still serves.
    fulfilled_placement(b).await?;
    Ok(())
}
