//! The answers docs/sdk-protocol.md and the OpenAPI document promise, made
//! through the real agent and edge.

use super::puppet::{assigned, puppets};
use super::*;
use respawn_config::DEV_TITLE_REGION;
use serde_json::Value;

/// §4/§5.4: activating a session that is already ACTIVE is answered 200
/// (retry-safe); acting on another process's session is 403 `forbidden`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_is_retry_safe_and_another_process_is_forbidden() -> anyhow::Result<()> {
    let (c, mut ps) = puppets(2).await?;
    let pl = c.backend.place(DEV_FLEET, &["alice"]).await?;
    let (owner, start) = assigned(&c, &mut ps, &pl).await?;
    let other = 1 - owner;
    let bs = start["battle_session"]["battle_session_id"].clone();
    let pbs = start["battle_session"]["players"][0]["player_battle_session_id"].clone();

    let (status, body) = ps[other]
        .call(
            "/v1/activate_battle_session",
            json!({"battle_session_id": bs}),
        )
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    for attempt in 0..2 {
        let (status, body) = ps[owner]
            .call(
                "/v1/activate_battle_session",
                json!({"battle_session_id": bs}),
            )
            .await?;
        assert_eq!(status, 200, "activation {attempt}: {body}");
    }
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let pbs_body = json!({"battle_session_id": bs, "player_battle_session_id": pbs});
    let (status, body) = ps[other]
        .call("/v1/accept_player_battle_session", pbs_body.clone())
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = ps[owner]
        .call("/v1/accept_player_battle_session", pbs_body)
        .await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// What the OpenAPI document says a request must be is what the edge
/// accepts: JSON objects only, ids not empty, the content type, the
/// credentials, the `limit`/`tail` ranges of the log routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_what_the_openapi_document_refuses() -> anyhow::Result<()> {
    let (c, _ps) = puppets(1).await?;
    let b = &c.backend;
    let ticket = b.ticket();
    let (status, body) = b
        .post_with("/dsm/request_battle_session_id", "[]".into(), &ticket)
        .await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("JSON object"),
        "{body}"
    );
    let (status, body) = b
        .post(
            "/dsm/describe_battle_session_placement",
            json!({"placement_id": ""}),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("placement"),
        "{body}"
    );
    // Documented 415 and 401 on every /dsm operation.
    let api: Value = reqwest::get(format!("{}/openapi.json", b.base))
        .await?
        .json()
        .await?;
    let responses = &api["paths"]["/dsm/request_battle_session_id"]["post"]["responses"];
    for code in ["400", "401", "415"] {
        assert!(responses[code].is_object(), "{code}: {responses}");
    }
    let pattern = &api["components"]["schemas"]["PlacementIdRequest"]["properties"]["placement_id"];
    assert_eq!(pattern["minLength"], 1, "{pattern}");
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/dsm/request_battle_session_id", b.base))
        .header("TitleId", b.title_id.as_str())
        .header("TitleRegionId", b.title_region_id.as_str())
        .header("SecretId", b.secret_id.as_str())
        .header("ServerTicket", ticket.as_str())
        .body("{}")
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 415);
    let res = http
        .post(format!("{}/dsm/request_battle_session_id", b.base))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 401);
    // The log routes' counts are within their documented ranges.
    let tr = DEV_TITLE_REGION;
    for (path, ok) in [
        (
            format!("/admin/title_regions/{tr}/virtual_servers/vs-x/logs?limit=0"),
            false,
        ),
        (
            format!("/admin/title_regions/{tr}/virtual_servers/vs-x/logs?tail=0"),
            false,
        ),
        (
            format!("/admin/title_regions/{tr}/virtual_servers/vs-x/logs?limit=10001"),
            false,
        ),
        (
            format!("/admin/title_regions/{tr}/virtual_servers/vs-x/access_log?limit=0"),
            false,
        ),
        (
            format!("/admin/title_regions/{tr}/trigger_logs?limit=0"),
            false,
        ),
        (
            format!("/admin/title_regions/{tr}/trigger_logs?limit=2001"),
            false,
        ),
        (
            format!("/admin/title_regions/{tr}/trigger_logs?limit=1"),
            true,
        ),
        (
            format!("/admin/title_regions/{tr}/virtual_servers/vs-x/logs?limit=1"),
            true,
        ),
    ] {
        let a = c.admin("GET", &path, None).await?;
        if ok {
            assert_eq!(a.status, 200, "{path}: {}", a.body);
        } else {
            assert_eq!(a.status, 400, "{path}: {}", a.body);
            assert!(
                a.json()["message"].as_str().unwrap().contains("between"),
                "{}",
                a.body
            );
        }
    }
    Ok(())
}
