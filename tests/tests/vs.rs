//! Virtual servers end to end, in process: a server node and an agent run
//! real VS instances (the Python sample as a process, the Rust sample in a
//! Docker container), invoked through the HTTP edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_config::{DEV_FLEET, DEV_TITLE_REGION};
use respawn_tests::*;
use respawn_types::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const TR: &str = DEV_TITLE_REGION;

async fn cluster() -> anyhow::Result<Cluster> {
    Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await
}

/// Waits until the sample VS `vs` has recorded `n` events or tasks (`kind`).
async fn received(c: &Cluster, vs: &str, kind: &str, n: usize) -> anyhow::Result<Value> {
    wait_for(&format!("{n} {kind} received by {vs}"), T, || async {
        let path = format!("{vs}/received");
        let v = c
            .backend
            .invoke("GET", &path, &[], vec![])
            .await
            .ok()?
            .json();
        (v[kind].as_array()?.len() >= n).then_some(v)
    })
    .await
}

fn admin_path(rest: &str) -> String {
    format!("/admin/title_regions/{TR}/{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_vs_is_invoked_with_trusted_headers_and_bad_input_is_refused() -> anyhow::Result<()>
{
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({"env": {"GREETING": "hi"}})))
        .await?;
    c.wait_vs_running("vs-a", 1).await?;

    // The caller forges Invoker, Playerid and Titleid: the VS sees the edge's values.
    let a = c
        .backend
        .invoke(
            "POST",
            "vs-a/hello?x=1",
            &[
                ("Invoker", "event"),
                ("Playerid", "mallory"),
                ("TitleId", "other"),
            ],
            b"abc".to_vec(),
        )
        .await;
    // TitleId is also an auth header: a forged one fails authentication.
    assert_eq!(a?.status, 401);
    let a = c
        .backend
        .invoke(
            "POST",
            "vs-a/hello?x=1",
            &[
                ("Invoker", "event"),
                ("Playerid", "mallory"),
                ("Sessionid", "s"),
            ],
            b"abc".to_vec(),
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["invoker"], "backend");
    assert_eq!(v["playerid"], Value::Null);
    assert_eq!(v["sessionid"], Value::Null);
    assert_eq!(v["titleregionid"], TR);
    assert_eq!(v["titleid"], "title-dev");
    assert_eq!(v["path"], "/hello");
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["body_len"], 3);

    // Per-VS metrics on /metrics (the Prometheus recorder is process-wide).
    let m = reqwest::get(format!("{}/metrics", c.backend.base))
        .await?
        .text()
        .await?;
    assert!(
        m.lines().any(|l| l.starts_with("respawn_vs_requests_total")
            && l.contains("vs=\"vs-a\"")
            && l.contains("code=\"200\"")),
        "{m}"
    );
    assert!(m.contains("respawn_vs_request_duration_seconds"), "{m}");
    assert!(m.contains("respawn_vs_bytes_in_total"), "{m}");

    // The system variables of seed §3.2 and the user's own.
    let env = c
        .backend
        .invoke("GET", "vs-a/env", &[], vec![])
        .await?
        .json();
    assert_eq!(env["PGOS_Title_ID"], "title-dev");
    assert_eq!(env["PGOS_Title_Region_ID"], TR);
    assert_eq!(env["PGOS_Title_Region_Type"], "dev");
    assert_eq!(env["PGOS_VS_Name"], "vs-a");
    assert!(env["PGOS_VS_Listen_Port"]
        .as_str()
        .unwrap()
        .parse::<u16>()
        .is_ok());
    assert!(env["PGOS_Title_Region_Backend_API_Domain"]
        .as_str()
        .is_some());
    assert!(env["PGOS_VS_Intranet_Endpoint"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));

    // Reserved URIs are refused, however they are spelled.
    for p in [
        "pgos_event",
        "pgos_task",
        "PGOS_TASK",
        "%70gos_economy",
        "x/../pgos_matchmaking",
        "pgos_idip/sub",
    ] {
        let a = c
            .backend
            .invoke("POST", &format!("vs-a/{p}"), &[], vec![])
            .await?;
        assert_eq!(a.status, 403, "{p}: {}", a.body);
        assert!(a.json()["message"].as_str().unwrap().contains("reserved"));
    }
    // Unknown VS, bad name.
    let a = c.backend.invoke("GET", "nope/x", &[], vec![]).await?;
    assert_eq!(a.status, 404);
    assert!(a.json()["message"].as_str().unwrap().contains("nope"));
    let a = c.backend.invoke("GET", "bad_name/x", &[], vec![]).await?;
    assert_eq!(a.status, 400);

    // Bad definitions change nothing.
    for (name, spec, want) in [
        (
            "bad_name",
            python_vs_spec(json!({})),
            "letters, digits and '-'",
        ),
        (
            "vs-b",
            python_vs_spec(json!({"listen_port": 0})),
            "listen_port",
        ),
        (
            "vs-b",
            python_vs_spec(json!({"env": {"PGOS_X": "1"}})),
            "PGOS_",
        ),
        (
            "vs-b",
            python_vs_spec(json!({"max_instances": 0})),
            "max_instances",
        ),
        ("vs-b", python_vs_spec(json!({"bogus": 1})), "bogus"),
        (
            "vs-b",
            json!({"source": {"ftp": {}}, "listen_port": 80}),
            "ftp",
        ),
    ] {
        let a = c
            .admin(
                "PUT",
                &admin_path(&format!("virtual_servers/{name}")),
                Some(spec),
            )
            .await?;
        assert_eq!(a.status, 400, "{name}: {}", a.body);
        assert!(
            a.json()["message"].as_str().unwrap().contains(want),
            "{}",
            a.body
        );
    }
    let a = c.admin("GET", &admin_path("virtual_servers"), None).await?;
    assert_eq!(a.json()["virtual_servers"].as_array().unwrap().len(), 1);
    // Without the admin token: 401.
    let a = c
        .backend
        .admin("wrong", "GET", &admin_path("virtual_servers"), None)
        .await?;
    assert_eq!(a.status, 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_client_tickets_blocking_and_logs() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({"access_log": true})))
        .await?;
    c.wait_vs_running("vs-a", 1).await?;

    // The VS takes 12 s; the edge gives up at the 10 s limit with a 504.
    let a = c
        .backend
        .invoke("GET", "vs-a/slow?ms=12000", &[], vec![])
        .await?;
    assert_eq!(a.status, 504, "{}", a.body);
    assert!(a.json()["message"].as_str().unwrap().contains("vs-a"));

    // A game client with a PlayerTicket minted by the backend.
    let key = c.backend.secret_key.clone();
    let exp = now_millis() / 1000 + 600;
    let ticket = respawn_types::ticket::player::mint(&key, "title-dev", TR, "alice", "sess-1", exp);
    let a = c.backend.invoke_as_client("vs-a/hello", &ticket).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["invoker"], "client");
    assert_eq!(v["playerid"], "alice");
    assert_eq!(v["sessionid"], "sess-1");
    // A forged or expired ticket is refused.
    let forged = ticket.replace("alice", "bob");
    assert_eq!(
        c.backend
            .invoke_as_client("vs-a/hello", &forged)
            .await?
            .status,
        401
    );
    let expired = respawn_types::ticket::player::mint(&key, "title-dev", TR, "alice", "s", 1);
    assert_eq!(
        c.backend
            .invoke_as_client("vs-a/hello", &expired)
            .await?
            .status,
        401
    );

    // Blocking client requests: 403, and the VS is not reached (no access-log line).
    c.put_vs(
        "vs-a",
        python_vs_spec(json!({"access_log": true, "block_client_requests": true})),
    )
    .await?;
    let a = c
        .backend
        .invoke_as_client("vs-a/blocked-marker", &ticket)
        .await?;
    assert_eq!(a.status, 403, "{}", a.body);
    // The backend still gets through (the update rolls to version 2).
    let a = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(a.status, 200, "{}", a.body);

    let access = c
        .admin("GET", &admin_path("virtual_servers/vs-a/access_log"), None)
        .await?
        .json();
    let lines: Vec<&str> = access["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /slow?ms=12000 HTTP/1.1\" 504")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /hello HTTP/1.1\" 200")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("blocked-marker")),
        "{lines:?}"
    );

    // Instance console logs, per version, with a text filter and tail.
    let logs = wait_for("the VS's request log lines", T, || async {
        let l = c
            .admin(
                "GET",
                &admin_path("virtual_servers/vs-a/logs?contains=invoker%3Dclient&version=1"),
                None,
            )
            .await
            .ok()?
            .json();
        (!l["lines"].as_array()?.is_empty()).then_some(l)
    })
    .await?;
    for l in logs["lines"].as_array().unwrap() {
        assert_eq!(l["version"], 1);
        assert!(l["line"].as_str().unwrap().contains("invoker=client"));
    }
    let tail = c
        .admin("GET", &admin_path("virtual_servers/vs-a/logs?tail=1"), None)
        .await?
        .json();
    assert_eq!(tail["lines"].as_array().unwrap().len(), 1);
    let bad = c
        .admin("GET", &admin_path("virtual_servers/vs-a/logs?tail=x"), None)
        .await?;
    assert_eq!(bad.status, 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_instance_is_abnormal_with_reason_then_relaunched() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({}))).await?;
    let first = c.wait_vs_running("vs-a", 1).await?[0].clone();
    let pid = c
        .backend
        .invoke("GET", "vs-a/hello", &[], vec![])
        .await?
        .json()["pid"]
        .clone();

    let a = c
        .backend
        .invoke("GET", "vs-a/crash?code=3", &[], vec![])
        .await?;
    assert_eq!(a.status, 200);
    let abnormal = wait_for("the instance to be ABNORMAL", T, || async {
        c.vs_instances("vs-a")
            .into_iter()
            .find(|i| i.status == VsInstanceStatus::Abnormal)
    })
    .await?;
    assert_eq!(abnormal.id, first.id);
    assert_eq!(abnormal.reason.as_deref(), Some("crashed"));
    assert!(
        abnormal.detail.as_deref().unwrap().contains("status 3"),
        "{abnormal:?}"
    );
    // The runtime relaunches it; the same instance serves again.
    let back = wait_for("the instance to run again", T, || async {
        c.vs_instances("vs-a")
            .into_iter()
            .find(|i| i.status == VsInstanceStatus::Running && i.restarts >= 1)
    })
    .await?;
    assert_eq!(back.id, first.id);
    let v = c
        .backend
        .invoke("GET", "vs-a/hello", &[], vec![])
        .await?
        .json();
    assert_ne!(v["pid"], pid, "a new process");

    // An instance that listens on 127.0.0.1 is ABNORMAL with an actionable reason.
    let script = "import http.server,os\nhttp.server.HTTPServer(('127.0.0.1', int(os.environ['PGOS_VS_Listen_Port'])), http.server.SimpleHTTPRequestHandler).serve_forever()";
    c.put_vs(
        "vs-lo",
        json!({"source": {"process": {"command": "python3"}}, "args": ["-c", script], "listen_port": 8080}),
    )
    .await?;
    let lo = wait_for("vs-lo ABNORMAL", T, || async {
        c.vs_instances("vs-lo")
            .into_iter()
            .find(|i| i.status == VsInstanceStatus::Abnormal)
    })
    .await?;
    assert_eq!(
        lo.reason.as_deref(),
        Some("listening_on_loopback"),
        "{lo:?}"
    );
    assert!(lo.detail.as_deref().unwrap().contains("0.0.0.0"), "{lo:?}");
    let a = c
        .admin("GET", &admin_path("virtual_servers/vs-lo"), None)
        .await?
        .json();
    assert_eq!(a["status"], "ABNORMAL");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_under_concurrent_load_and_back_down() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs(
        "vs-a",
        python_vs_spec(
            json!({"max_instances": 3, "target_concurrency": 2, "scale_down_delay_secs": 2}),
        ),
    )
    .await?;
    c.wait_vs_running("vs-a", 1).await?;

    // Eight requests in flight at a time (target 2 per instance, max 3).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..8 {
        let b = c.backend.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut pids = BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(a) = b.invoke("GET", "vs-a/slow?ms=300", &[], vec![]).await {
                    assert_eq!(a.status, 200, "{}", a.body);
                    let _ = a.body;
                }
                if let Ok(a) = b.invoke("GET", "vs-a/hello", &[], vec![]).await {
                    if let Some(p) = a.json()["pid"].as_u64() {
                        pids.insert(p);
                    }
                }
            }
            pids
        }));
    }
    c.wait_vs_running("vs-a", 3).await?;
    let scale = c.read(|s| {
        s.virtual_server(
            &TitleRegionId::new_unchecked(TR),
            &VsName::parse("vs-a").unwrap(),
        )
        .unwrap()
        .scale
    });
    assert_eq!(scale, 3, "never above max_instances");
    // Keep loading until the new instances have served requests.
    wait_for("requests served by three instances", T, || async {
        let mut seen = BTreeSet::new();
        for _ in 0..12 {
            if let Ok(a) = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await {
                if let Some(p) = a.json()["pid"].as_u64() {
                    seen.insert(p);
                }
            }
        }
        (seen.len() >= 2).then_some(())
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in load {
        l.await?;
    }
    // Quiet: back to one instance after the scale-down delay, never zero.
    wait_for("one instance again", T, || async {
        let live: Vec<VsInstance> = c
            .vs_instances("vs-a")
            .into_iter()
            .filter(|i| i.status != VsInstanceStatus::Stopping)
            .collect();
        (live.len() == 1).then_some(())
    })
    .await?;
    let a = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(a.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_reclaims_instances_and_start_serves_again() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({}))).await?;
    c.wait_vs_running("vs-a", 1).await?;
    let pid = c
        .backend
        .invoke("GET", "vs-a/hello", &[], vec![])
        .await?
        .json()["pid"]
        .as_i64()
        .unwrap() as i32;

    let a = c
        .admin("POST", &admin_path("virtual_servers/vs-a/stop"), None)
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["desired"], "STOPPED");
    wait_for("every instance gone", T, || async {
        c.vs_instances("vs-a").is_empty().then_some(())
    })
    .await?;
    wait_for("the VS process gone", T, || async {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            .is_err()
            .then_some(())
    })
    .await?;
    let a = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(a.json()["message"].as_str().unwrap().contains("stopped"));

    // Start: the first call waits for the new instance instead of failing.
    let a = c
        .admin("POST", &admin_path("virtual_servers/vs-a/start"), None)
        .await?;
    assert_eq!(a.status, 200);
    let a = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(a.json()["pid"].as_i64().unwrap() as i32, pid);

    // Delete removes it.
    let a = c
        .admin("DELETE", &admin_path("virtual_servers/vs-a"), None)
        .await?;
    assert_eq!(a.status, 204);
    assert_eq!(
        c.backend
            .invoke("GET", "vs-a/hello", &[], vec![])
            .await?
            .status,
        404
    );
    wait_for("instances of the deleted VS gone", T, || async {
        c.vs_instances("vs-a").is_empty().then_some(())
    })
    .await?;
    Ok(())
}

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

/// The Rust sample built as a static binary into a `FROM scratch` image on
/// the local Docker engine (no registry), run by the docker driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_vs_is_invoked_through_the_edge() -> anyhow::Result<()> {
    let ctx = tempfile::tempdir()?;
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust-vs");
    let out = std::process::Command::new("rustc")
        .args([
            "-O",
            "-C",
            "target-feature=+crt-static",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--edition",
            "2021",
            "-o",
        ])
        .arg(ctx.path().join("rust-vs"))
        .arg(src.join("main.rs"))
        .output()?;
    assert!(
        out.status.success(),
        "rustc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(src.join("Dockerfile"), ctx.path().join("Dockerfile"))?;

    let c = cluster().await?;
    c.put_vs(
        "vs-docker",
        json!({
            "source": {"docker_build": {"context_dir": ctx.path().display().to_string()}},
            "listen_port": 8080,
            "memory_mb": 64,
        }),
    )
    .await?;
    let inst = c.wait_vs_running("vs-docker", 1).await?;
    assert_eq!(inst[0].limits.as_deref(), Some("docker"));
    let a = c
        .backend
        .invoke(
            "POST",
            "vs-docker/hello",
            &[("Invoker", "client")],
            b"xy".to_vec(),
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["invoker"], "backend");
    assert_eq!(v["vs"], "vs-docker");
    assert_eq!(v["body_len"], 2);
    let env = c
        .backend
        .invoke("GET", "vs-docker/env", &[], vec![])
        .await?
        .json();
    assert_eq!(
        env["PGOS_VS_Listen_Port"], "8080",
        "containers listen on the configured port"
    );
    // Stop removes the container.
    c.admin("POST", &admin_path("virtual_servers/vs-docker/stop"), None)
        .await?;
    wait_for("the container gone", T, || async {
        c.vs_instances("vs-docker").is_empty().then_some(())
    })
    .await?;
    Ok(())
}

/// Three server nodes and a real agent: every node's edge invokes the VS;
/// the leader's VS actor runs it; after the leader is killed the VS keeps
/// serving through the survivors and the new leader manages it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_servers_in_a_three_node_cluster_survive_the_leader() -> anyhow::Result<()> {
    use respawn_tests::cluster::*;
    let mut tc = TestCluster::start(ClusterOptions::default()).await?;
    let dir = tempfile::tempdir()?;
    let mut cfg = respawn_config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.agent.host_id = Some("vs-host".into());
    cfg.agent.fleet = FLEET.into();
    let addrs = tc.quic_addrs();
    cfg.agent.server_addr = addrs[0].to_string();
    cfg.agent.servers = addrs[1..].iter().map(|a| a.to_string()).collect();
    let agent = respawn::AgentNode::start(&cfg, &tc.agent_identity("vs-host")?).await?;
    let token = "test-admin-token-0123456789";
    let tr = TITLE_REGION;

    let leader = tc.wait_leader().await?;
    let follower = tc.alive().into_iter().find(|n| *n != leader).unwrap();
    // Defined through a follower's admin API (forwarded to the leader).
    let a = tc
        .backend(follower)
        .admin(
            token,
            "PUT",
            &format!("/admin/title_regions/{tr}/virtual_servers/vs-c"),
            Some(python_vs_spec(json!({}))),
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    async fn serving(b: Backend) -> Option<Value> {
        let a = b.invoke("GET", "vs-c/hello", &[], vec![]).await.ok()?;
        (a.status == 200).then(|| a.json())
    }
    for id in tc.alive() {
        let v = wait_for("the VS serving through every node", T, || {
            serving(tc.backend(id))
        })
        .await?;
        assert_eq!(v["invoker"], "backend");
        assert_eq!(v["titleregionid"], tr);
    }
    let pid = serving(tc.backend(leader)).await.unwrap()["pid"].clone();

    // The leader dies; the instance keeps serving through the survivors.
    tc.kill(leader).await;
    let new_leader = tc.wait_new_leader(leader).await?;
    for id in tc.alive() {
        let v = wait_for("the VS serving after failover", T, || {
            serving(tc.backend(id))
        })
        .await?;
        assert_eq!(v["pid"], pid, "the same instance");
    }
    // The new leader's VS actor manages it: stop, then start again.
    let b = tc.backend(new_leader);
    let a = b
        .admin(
            token,
            "POST",
            &format!("/admin/title_regions/{tr}/virtual_servers/vs-c/stop"),
            None,
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    wait_for("no instance left", T, || async {
        tc.read(new_leader, |s| s.vs_instances.is_empty())
            .then_some(())
    })
    .await?;
    b.admin(
        token,
        "POST",
        &format!("/admin/title_regions/{tr}/virtual_servers/vs-c/start"),
        None,
    )
    .await?;
    let v = b.invoke("GET", "vs-c/hello", &[], vec![]).await?;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_ne!(v.json()["pid"], pid, "a new instance");
    agent.shutdown().await;
    Ok(())
}
