//! Invariant 5 at the edge, with two title regions configured: a title
//! region's credentials reach that title region only.

use super::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_title_regions_credentials_reach_that_title_region_only() -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions::default()).await?;
    let sink = EventSink::start(c.history.clone()).await?;
    let agent = c
        .sim_agent_with_vs(
            "host-a",
            4,
            Duration::from_secs(600),
            c.quic_addrs(),
            Some(sink.port),
        )
        .await?;
    c.subscribe_events().await?; // a VS of the first region
    let leader = c.wait_leader().await?;
    let mine = c.backend(leader);
    let other = c.other_backend(leader);

    // The first region places, with a player, and invokes its VS.
    let pl = mine.place(FLEET, &["alice"]).await?;
    mine.wait_status(&pl, "FULFILLED", T).await?;
    let a = mine.invoke("GET", "vs-events/hello", &[], vec![]).await?;
    assert_eq!((a.status, a.body.as_str()), (200, "event sink"));
    let bs = mine.describe(&pl).await?["battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The other region's valid credentials: authenticated, but none of the
    // first region's placements, sessions, players, fleets or VSs exist
    // for it.
    let (s, v) = other
        .post(
            "/dsm/describe_battle_session_placement",
            json!({"placement_id": pl}),
        )
        .await?;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = other
        .post(
            "/dsm/cancel_battle_session_placement",
            json!({"placement_id": pl}),
        )
        .await?;
    assert_eq!(s, 404, "{v}");
    let (s, v) = other
        .post(
            "/dsm/query_player_battle_sessions",
            json!({"player_id": "alice"}),
        )
        .await?;
    assert!(
        s == 404
            || (s == 200
                && v["player_battle_sessions"]
                    .as_array()
                    .is_some_and(|a| a.is_empty())),
        "the other region sees alice's sessions: {s} {v}"
    );
    // Its own battle session id on the first region's fleet, and the first
    // region's battle session id on its own behalf: both unknown to it.
    let own = other
        .ok("/dsm/request_battle_session_id", json!({}))
        .await?["battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = "/dsm/start_battle_session_placement";
    let (s, v) = other
        .post(
            start,
            json!({"fleet_id": FLEET, "battle_session_id": own, "max_players": 2}),
        )
        .await?;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = other
        .post(
            start,
            json!({"fleet_id": FLEET, "battle_session_id": bs, "max_players": 2}),
        )
        .await?;
    assert_eq!(s, 404, "{v}");
    let a = other.invoke("GET", "vs-events/hello", &[], vec![]).await?;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_ne!(a.body, "event sink");

    // The other region's key presented for the first region: refused.
    let mut forged = other.clone();
    forged.title_region_id = TITLE_REGION.into();
    forged.title_id = "title-cluster".into();
    let (s, v) = forged
        .post(
            "/dsm/describe_battle_session_placement",
            json!({"placement_id": pl}),
        )
        .await?;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")), "{v}");
    let a = forged.invoke("GET", "vs-events/hello", &[], vec![]).await?;
    assert_eq!(a.status, 401, "{}", a.body);

    // Nothing the other region did changed the first region's placement.
    let v = mine.describe(&pl).await?;
    assert_eq!(
        (v["status"].as_str(), v["battle_session_status"].as_str()),
        (Some("FULFILLED"), Some("ACTIVE")),
        "{v}"
    );
    agent.stop();
    Ok(())
}
