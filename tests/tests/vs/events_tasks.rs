//! Events delivered to virtual servers, intranet and DS calls, scheduled tasks.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_once_per_trigger_after_failures_and_retries() -> anyhow::Result<()> {
    let c = cluster().await?;
    // The VS fails the first two deliveries of every event with a 500.
    c.put_vs(
        "vs-ev",
        python_vs_spec(json!({"env": {"VS_FAIL_EVENTS_FIRST": "2"}})),
    )
    .await?;
    c.wait_vs_running("vs-ev", 1).await?;
    let a = c
        .admin(
            "PUT",
            &admin_path("event_handlers/on-battle"),
            Some(json!({"virtual_server": "vs-ev", "args": {"source": "test"}})),
        )
        .await?;
    assert_eq!(a.status, 204, "{}", a.body);
    let a = c
        .admin(
            "PUT",
            &admin_path("event_handlers/bad"),
            Some(json!({"virtual_server": "vs-ev", "events": ["no_such_event"]})),
        )
        .await?;
    assert_eq!(a.status, 400);

    c.wait_ready(1).await?;
    let pl = c.backend.place(DEV_FLEET, &["alice"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;

    // Both events (session started, placement fulfilled) arrive, each once.
    let received = received(&c, "vs-ev", "events", 2).await?;
    let events = received["events"].as_array().unwrap();
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["trigger_id"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "each trigger id once: {ids:?}");
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "event_battle_session_started",
            "event_battle_session_placement_fulfilled"
        ],
        "in commit order"
    );
    let fulfilled = &events[1];
    assert_eq!(fulfilled["event_data"]["placement_id"], pl.as_str());
    assert_eq!(fulfilled["args"]["source"], "test");
    assert!(fulfilled["event_time"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());

    // The trigger log has the two failed attempts and the delivery of each.
    let log = wait_for("both deliveries logged", T, || async {
        let log = c
            .admin("GET", &admin_path("trigger_logs?kind=event"), None)
            .await
            .ok()?
            .json();
        let delivered = log["records"]
            .as_array()?
            .iter()
            .filter(|r| r["outcome"] == "delivered")
            .count();
        (delivered >= 2).then_some(log)
    })
    .await?;
    let recs = log["records"].as_array().unwrap();
    for id in &ids {
        let attempts: Vec<(u64, &str, u64)> = recs
            .iter()
            .filter(|r| r["trigger_id"] == *id)
            .map(|r| {
                (
                    r["attempt"].as_u64().unwrap(),
                    r["outcome"].as_str().unwrap(),
                    r["status_code"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            attempts,
            [
                (1, "retrying", 500),
                (2, "retrying", 500),
                (3, "delivered", 200)
            ],
            "{id}"
        );
    }
    assert_eq!(log["pending_events"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intranet_and_ds_calls_and_scheduled_tasks() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({}))).await?;
    c.put_vs(
        "vs-b",
        python_vs_spec(json!({"block_client_requests": true})),
    )
    .await?;
    c.wait_vs_running("vs-a", 1).await?;
    c.wait_vs_running("vs-b", 1).await?;

    // vs-a calls vs-b over the intranet: vs-b sees Invoker: intranet.
    let a = c
        .backend
        .invoke("GET", "vs-a/call/vs-b/hello", &[], vec![])
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"]["invoker"], "intranet");
    assert_eq!(v["body"]["vs"], "vs-b");
    let a = c
        .backend
        .invoke("GET", "vs-a/call/nope/hello", &[], vec![])
        .await?
        .json();
    assert_eq!(a["status"], 404, "{a}");

    // A DS calls vs-a through its SDK and the agent: Invoker: backend.
    c.wait_ready(1).await?;
    let pl = c.backend.place(DEV_FLEET, &["alice"]).await?;
    let d = c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let mut game = GameClient::connect("127.0.0.1", d["port"].as_u64().unwrap() as u16).await?;
    let reply = game.say("VS vs-a /hello?from=ds").await?;
    let body = reply
        .strip_prefix("VS 200 ")
        .unwrap_or_else(|| panic!("{reply}"));
    let v: Value = serde_json::from_str(body)?;
    assert_eq!(v["invoker"], "backend");
    assert_eq!(v["query"], "from=ds");
    let reply = game.say("VS vs-a /pgos_event").await?;
    assert!(reply.starts_with("VS 403 "), "{reply}");

    // A task every second reaches /pgos_task with its args.
    let a = c
        .admin(
            "PUT",
            &admin_path("tasks/tick"),
            Some(json!({"virtual_server": "vs-a", "schedule": {"interval": {"secs": 1}}, "args": {"n": 7}})),
        )
        .await?;
    assert_eq!(a.status, 204, "{}", a.body);
    let bad = c
        .admin(
            "PUT",
            &admin_path("tasks/bad"),
            Some(json!({"virtual_server": "vs-a", "schedule": {"cron": {"expr": "61 * * * *"}}})),
        )
        .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let got = received(&c, "vs-a", "tasks", 2).await?;
    let t = &got["tasks"][0];
    assert_eq!(t["task_name"], "tick");
    assert_eq!(t["args"]["n"], 7);
    Ok(())
}
