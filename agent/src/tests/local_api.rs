//! The local SDK API: bad requests get JSON errors; the protocol document matches the code.

use super::*;

#[tokio::test]
async fn the_local_api_rejects_bad_requests_with_json_errors() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    h.wait_state("a process", |reg| !reg.procs.is_empty()).await;
    let id = h.agent.live_processes()[0].process_id.clone();
    let token = h.token_of(&id);
    let base = h.agent.sdk_endpoint().to_owned();
    let http = http();
    let url = |p: &str| format!("{base}{p}");

    async fn expect(resp: reqwest::Response, status: u16, code: &str, needle: &str) {
        assert_eq!(resp.status().as_u16(), status);
        let body: serde_json::Value = resp.json().await.expect("a JSON error body");
        assert_eq!(body["error"], code, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }

    let ready = serde_json::json!({"port": 7777});
    // No token, a wrong token, a wrong scheme.
    expect(
        http.post(url(api::PATH_PROCESS_READY))
            .json(&ready)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
        "Authorization",
    )
    .await;
    expect(
        http.post(url(api::PATH_PROCESS_READY))
            .bearer_auth("nope")
            .json(&ready)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
        "unknown process token",
    )
    .await;
    expect(
        http.get(url(api::PATH_EVENTS))
            .header("authorization", format!("Basic {token}"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
        "Bearer",
    )
    .await;
    // Garbage, wrong shapes, bad values.
    let post = |path: &str, body: &'static str| {
        http.post(url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    expect(
        post(api::PATH_PROCESS_READY, "{not json")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "invalid JSON",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_READY, "{}").send().await.unwrap(),
        400,
        "bad_request",
        "port",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_READY, "{\"port\":70000}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "70000",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_READY, "{\"port\":0}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "port",
    )
    .await;
    expect(
        post(api::PATH_ACTIVATE, "{\"battle_session_id\":\"bs 1/../x\"}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "battle_session_id",
    )
    .await;
    expect(
        post(api::PATH_ACCEPT_PLAYER, "{\"battle_session_id\":\"bs-1\"}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "player_battle_session_id",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_ENDING, "[1,2]")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "expected {}",
    )
    .await;
    let huge = format!(
        "{{\"port\":1,\"log_paths\":[\"{}\"]}}",
        "x".repeat(70 * 1024)
    );
    expect(
        http.post(url(api::PATH_PROCESS_READY))
            .bearer_auth(&token)
            .body(huge)
            .send()
            .await
            .unwrap(),
        413,
        "bad_request",
        "larger than",
    )
    .await;
    // Health answers before ProcessReady.
    expect(
        post(api::PATH_HEALTH, "{\"seq\":1,\"healthy\":true}")
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
        "ProcessReady",
    )
    .await;
    // Unknown paths and methods.
    expect(
        http.get(url("/v1/nope")).send().await.unwrap(),
        404,
        "not_found",
        "/v1/nope",
    )
    .await;
    expect(
        http.get(url(api::PATH_PROCESS_READY)).send().await.unwrap(),
        405,
        "bad_request",
        "GET",
    )
    .await;
    // None of that changed anything.
    assert_eq!(h.agent.live_processes()[0].port, None);
    assert!(h
        .link
        .log
        .lock()
        .unwrap()
        .iter()
        .all(|m| !matches!(m, AgentToServer::ProcessReady { .. })));

    // The same token works for a well-formed call; a second ProcessReady
    // with another port conflicts.
    let ok = post(
        api::PATH_PROCESS_READY,
        "{\"port\":7777,\"log_paths\":[\"/tmp/a.log\"]}",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(
        ok.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"ok": true})
    );
    expect(
        post(api::PATH_PROCESS_READY, "{\"port\":7778}")
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
        "7777",
    )
    .await;
    expect(
        post(api::PATH_HEALTH, "{\"seq\":99,\"healthy\":true}")
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
        "99",
    )
    .await;
    assert_eq!(h.agent.live_processes()[0].port, Some(7777));
}

#[test]
fn the_protocol_document_matches_the_code() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/sdk-protocol.md")).unwrap();
    // The Python DS listed in the document is the one the test above runs.
    let script = std::fs::read_to_string(root.join("examples/python-ds/ds.py")).unwrap();
    assert!(
        doc.contains(&format!("```python\n{script}```")),
        "docs/sdk-protocol.md must list examples/python-ds/ds.py verbatim"
    );
    // Every event example parses as the event the agent sends, and every
    // event type is documented.
    let mut documented = std::collections::BTreeSet::new();
    for block in doc.split("```json\n").skip(1) {
        let json = block.split("```").next().unwrap();
        if json.contains("\"type\"") {
            let event: SdkEvent =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
            let tag = serde_json::to_value(&event).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned();
            documented.insert(tag);
        }
    }
    assert_eq!(
        documented.into_iter().collect::<Vec<_>>(),
        vec![
            "battle_player_banned",
            "battle_player_offline",
            "battle_session_updated",
            "health_check",
            "player_battle_sessions_terminated",
            "process_terminate",
            "start_battle_session",
            "terminate_battle_session"
        ]
    );
    // Every path the agent serves is documented.
    for path in [
        api::PATH_EVENTS,
        api::PATH_PROCESS_READY,
        api::PATH_HEALTH,
        api::PATH_ACTIVATE,
        api::PATH_ACCEPT_PLAYER,
        api::PATH_DISCONNECT_PLAYER,
        api::PATH_REMOVE_PLAYER,
        api::PATH_TERMINATE_BATTLE_SESSION,
        api::PATH_PROCESS_ENDING,
        api::PATH_DESCRIBE_BATTLE_SESSION,
    ] {
        assert!(
            doc.contains(&format!("`POST {path}`")) || doc.contains(&format!("`GET {path}`")),
            "{path} is not documented"
        );
    }
}
