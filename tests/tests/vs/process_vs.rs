//! Process virtual servers (the Python sample): invocation, bad input,
//! timeouts, client tickets, logs, crashes.

use super::*;

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
