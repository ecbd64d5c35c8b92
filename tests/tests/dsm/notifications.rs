//! What a DS is told about a battle session it holds after
//! OnStartBattleSession (ds-hosting-integration §4.9: OnBattleSessionUpdated,
//! OnPlayerBattleSessionsTerminated, OnBattlePlayerOffline,
//! OnBattlePlayerBanned), and what it can ask (DescribeBattleSession) —
//! through the real agent, its event stream and the edge.

use super::puppet::{assigned, puppets};
use super::*;
use respawn_config::DEV_TITLE_REGION;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_is_told_about_its_session_and_can_describe_it() -> anyhow::Result<()> {
    let (c, mut ps) = puppets(2).await?;
    let pl = c.backend.place(DEV_FLEET, &["alice"]).await?;
    let (owner, start) = assigned(&c, &mut ps, &pl).await?;
    let other = 1 - owner;
    let bs = start["battle_session"]["battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = ps[owner]
        .call(
            "/v1/activate_battle_session",
            json!({"battle_session_id": bs}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    c.backend.wait_status(&pl, "FULFILLED", T).await?;

    // Players added by the backend: OnBattleSessionUpdated with the session as it is now.
    let added = c
        .backend
        .ok(
            "/dsm/add_players_to_battle_session",
            json!({"battle_session_id": bs, "players": [{"player_id": "bob", "player_data": "red"}]}),
        )
        .await?;
    let bob_pbs = added["player_battle_sessions"][0]["player_battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let updated = ps[owner].next_event("battle_session_updated").await?;
    let players = updated["battle_session"]["players"].as_array().unwrap();
    assert_eq!(players.len(), 2, "{updated}");
    assert!(players
        .iter()
        .any(|p| p["player_battle_session_id"] == bob_pbs.as_str() && p["player_data"] == "red"));

    // The DS asks about its session; another process may not.
    let (status, d) = ps[owner]
        .call(
            "/v1/describe_battle_session",
            json!({"battle_session_id": bs}),
        )
        .await?;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["battle_session"]["status"], "ACTIVE", "{d}");
    assert_eq!(
        d["battle_session"]["players"].as_array().unwrap().len(),
        2,
        "{d}"
    );
    let (status, d) = ps[other]
        .call(
            "/v1/describe_battle_session",
            json!({"battle_session_id": bs}),
        )
        .await?;
    assert_eq!(
        (status, d["error"].as_str()),
        (403, Some("forbidden")),
        "{d}"
    );
    let (status, d) = ps[owner]
        .call(
            "/v1/describe_battle_session",
            json!({"battle_session_id": "bs-none"}),
        )
        .await?;
    assert_eq!(status, 404, "{d}");

    // The backend ends Bob's reservation: OnPlayerBattleSessionsTerminated.
    c.backend
        .ok(
            "/dsm/terminate_player_battle_session",
            json!({"battle_session_id": bs, "player_battle_session_id": bob_pbs}),
        )
        .await?;
    let ended = ps[owner]
        .next_event("player_battle_sessions_terminated")
        .await?;
    assert_eq!(ended["battle_session_id"], bs.as_str(), "{ended}");
    assert_eq!(
        ended["player_battle_session_ids"],
        json!([bob_pbs]),
        "{ended}"
    );
    let (_, d) = ps[owner]
        .call(
            "/v1/describe_battle_session",
            json!({"battle_session_id": bs}),
        )
        .await?;
    let bob = d["battle_session"]["players"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["player_battle_session_id"] == bob_pbs.as_str())
        .cloned()
        .unwrap();
    assert_eq!(bob["status"], "COMPLETED", "{d}");

    // Offline and banned, relayed by the admin API to the holding process.
    let base = format!("/admin/title_regions/{DEV_TITLE_REGION}/players");
    let a = c
        .admin("POST", &format!("{base}/alice/offline"), Some(json!({})))
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let n = a.json();
    assert_eq!(n["notified"].as_array().unwrap().len(), 1, "{n}");
    assert_eq!(n["notified"][0]["process_id"], ps[owner].id.as_str(), "{n}");
    assert_eq!(n["notified"][0]["delivered"], true, "{n}");
    let off = ps[owner].next_event("battle_player_offline").await?;
    assert_eq!(off["player_id"], "alice", "{off}");
    assert_eq!(off["battle_session_id"], bs.as_str(), "{off}");
    let a = c
        .admin(
            "POST",
            &format!("{base}/alice/banned"),
            Some(json!({"reason": "cheating"})),
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let ban = ps[owner].next_event("battle_player_banned").await?;
    assert_eq!(ban["reason"], "cheating", "{ban}");
    // Bob's reservation is over: nobody holds a session of his.
    let a = c
        .admin("POST", &format!("{base}/bob/offline"), Some(json!({})))
        .await?;
    assert_eq!(a.json()["notified"], json!([]), "{}", a.body);
    let a = c
        .admin(
            "POST",
            "/admin/title_regions/tr-none/players/alice/offline",
            Some(json!({})),
        )
        .await?;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = c
        .admin(
            "POST",
            &format!("{base}/alice/banned"),
            Some(json!({"why": 1})),
        )
        .await?;
    assert_eq!(a.status, 400, "{}", a.body);
    // The other process heard none of it.
    for kind in [
        "battle_session_updated",
        "player_battle_sessions_terminated",
        "battle_player_offline",
        "battle_player_banned",
    ] {
        assert!(ps[other].try_event(kind).is_none(), "{kind}");
    }
    Ok(())
}

/// Teams (ds-hosting-integration §4.3: OnStartBattleSession carries the team
/// structure): each player's team goes from the placement request to the
/// DS, which also gets the list of teams; added players join theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_reach_the_ds_with_the_battle_session() -> anyhow::Result<()> {
    let (c, mut ps) = puppets(1).await?;
    let bs = c
        .backend
        .ok("/dsm/request_battle_session_id", json!({}))
        .await?["battle_session_id"]
        .clone();
    let too_long = "t".repeat(65);
    let (status, body) = c
        .backend
        .post(
            "/dsm/start_battle_session_placement",
            json!({"fleet_id": DEV_FLEET, "battle_session_id": bs, "max_players": 4,
                   "players": [{"player_id": "alice", "team": too_long}]}),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("team"), "{body}");
    let v = c
        .backend
        .ok(
            "/dsm/start_battle_session_placement",
            json!({"fleet_id": DEV_FLEET, "battle_session_id": bs, "max_players": 4,
                   "players": [{"player_id": "alice", "team": "red"},
                               {"player_id": "bob", "team": "blue"},
                               {"player_id": "carol", "team": "red"}]}),
        )
        .await?;
    let pl = v["placement"]["placement_id"].as_str().unwrap().to_string();
    let pbs_of = |v: &Value, who: &str| {
        v["placement"]["players"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["player_id"] == who)
            .map(|p| (p["player_battle_session_id"].clone(), p["team"].clone()))
            .unwrap()
    };
    let (alice, team) = pbs_of(&v, "alice");
    assert_eq!(team, "red");
    let (bob, _) = pbs_of(&v, "bob");
    let (carol, _) = pbs_of(&v, "carol");
    let (_, start) = assigned(&c, &mut ps, &pl).await?;
    let session = &start["battle_session"];
    assert_eq!(
        session["teams"],
        json!([{"name": "red", "player_battle_session_ids": [alice, carol]},
               {"name": "blue", "player_battle_session_ids": [bob]}]),
        "{start}"
    );
    assert!(session["players"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["player_id"] == "bob" && p["team"] == "blue"));
    let (status, body) = ps[0]
        .call(
            "/v1/activate_battle_session",
            json!({"battle_session_id": bs}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let added = c
        .backend
        .ok(
            "/dsm/add_players_to_battle_session",
            json!({"battle_session_id": bs, "players": [{"player_id": "dave", "team": "blue"}]}),
        )
        .await?;
    let dave = added["player_battle_sessions"][0]["player_battle_session_id"].clone();
    let updated = ps[0].next_event("battle_session_updated").await?;
    assert_eq!(
        updated["battle_session"]["teams"][1],
        json!({"name": "blue", "player_battle_session_ids": [bob, dave]}),
        "{updated}"
    );
    let (_, d) = ps[0]
        .call(
            "/v1/describe_battle_session",
            json!({"battle_session_id": bs}),
        )
        .await?;
    assert!(
        d["battle_session"]["players"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["player_id"] == "dave" && p["team"] == "blue"),
        "{d}"
    );
    Ok(())
}
