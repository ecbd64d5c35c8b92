//! The console's DS process page, VS log view, roll-back, task editing and
//! run-now, browser access to a VS and the peers' chart parts, over plain
//! HTTP: scope (404 for another region's records), CSRF, bad input (400
//! naming the field, nothing changed).

use super::http::{desired, Browser, SignedIn};
use super::*;
use respawn_config::DEV_FLEET;
use serde_json::json;

/// The text between `start` and the next `end` in `body`.
fn between<'a>(body: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = body.find(start)? + start.len();
    let j = body[i..].find(end)? + i;
    Some(&body[i..j])
}

async fn vs_json(e: &Env, tr: &str, vs: &str) -> serde_json::Value {
    e.c.admin(
        "GET",
        &format!("/admin/title_regions/{tr}/virtual_servers/{vs}"),
        None,
    )
    .await
    .unwrap()
    .json()
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_logs_rollback_tasks_and_browsing_over_http() -> anyhow::Result<()> {
    let e = start().await?;
    let dev_tr = e.dev.id.to_string();
    let SignedIn {
        admin,
        csrf,
        dev,
        dev_csrf,
        other,
        other_csrf,
    } = SignedIn::all(&e).await?;

    // A DS process's page, reached from its placement's page.
    let p = e.c.backend.place(DEV_FLEET, &["player-7"]).await?;
    e.c.backend.wait_status(&p, "FULFILLED", T).await?;
    let g = admin.get(&format!("/console/placements/{p}")).await?;
    let process = between(&g.body, "href=\"/console/processes/", "\"")
        .context("process link")?
        .to_string();
    let page = format!("/console/processes/{process}");
    let g = admin.get(&page).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(g.body.contains("id=\"process-status\""));
    assert!(g.body.contains(respawn_config::DEV_HOST));
    assert!(g.body.contains(&p), "its sessions link the placement");
    assert!(g.body.contains("id=\"process-logs\"") && g.body.contains("stdout.log"));
    assert_eq!(dev.get(&page).await?.status, 200);
    assert_eq!(other.get(&page).await?.status, 404);
    assert_eq!(admin.get("/console/processes/no-such").await?.status, 404);

    // The log view: filters, bad input named, scope.
    let logs = format!("/console/virtual_servers/{dev_tr}/api/logs");
    let g = admin.get(&logs).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(g.body.contains("id=\"console-log\""));
    let g = admin
        .get(&format!("{logs}?stream=stderr&level=error&q=x&since=2026-01-01+00%3A00&until=2099-01-01T00%3A00&limit=5"))
        .await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(admin
        .get(&format!("{logs}?kind=access"))
        .await?
        .body
        .contains("id=\"access-log\""));
    for (q, field) in [
        ("since=soon", "since:"),
        ("stream=stdin", "stream:"),
        ("limit=0", "limit:"),
        ("kind=all", "kind:"),
        ("since=2026-02-01+00:00&until=2026-01-01+00:00", "since:"),
    ] {
        let g = admin.get(&format!("{logs}?{q}")).await?;
        assert_eq!(g.status, 400, "{q}");
        assert!(g.body.contains(field), "{q}: {}", g.body);
    }
    assert_eq!(
        dev.get(&format!("/console/virtual_servers/{OTHER}/secret-vs/logs"))
            .await?
            .status,
        404
    );

    // Roll back: a second version, then back to the first (as a third).
    e.c.put_vs("api", python_vs_spec(json!({"env": {"V": "2"}})))
        .await?;
    let rollback = format!("/console/virtual_servers/{dev_tr}/api/rollback");
    assert_eq!(
        admin.post(&rollback, &[("version", "1")]).await?.status,
        403
    );
    for (v, why) in [("x", "version:"), ("2", "already"), ("9", "no version 9")] {
        let g = admin
            .post(&rollback, &[("csrf", &csrf), ("version", v)])
            .await?;
        assert_eq!(g.status, 400, "{v}");
        assert!(g.body.contains(why), "{v}: {}", g.body);
    }
    assert_eq!(vs_json(&e, &dev_tr, "api").await["version"], 2);
    let g = other
        .post(&rollback, &[("csrf", &other_csrf), ("version", "1")])
        .await?;
    assert_eq!(g.status, 404);
    let g = admin
        .post(&rollback, &[("csrf", &csrf), ("version", "1")])
        .await?;
    assert_eq!(g.status, 303, "{}", g.body);
    let v = vs_json(&e, &dev_tr, "api").await;
    assert_eq!(v["version"], 3);
    assert_eq!(v["versions"][2]["spec"], v["versions"][0]["spec"]);
    assert_ne!(v["versions"][2]["spec"], v["versions"][1]["spec"]);
    e.c.wait_vs_running("api", 1).await?;

    // Tasks: edit the schedule and switch, run now.
    let a =
        e.c.admin(
            "PUT",
            &format!("/admin/title_regions/{dev_tr}/tasks/tick"),
            Some(json!({"virtual_server": "api", "schedule": {"interval": {"secs": 3600}}})),
        )
        .await?;
    assert_eq!(a.status, 204, "{}", a.body);
    let task = format!("/console/virtual_servers/{dev_tr}/api/tasks/tick");
    assert_eq!(
        admin
            .post(&task, &[("schedule", "cron"), ("cron", "*/5 * * * *")])
            .await?
            .status,
        403
    );
    for (form, why) in [
        (vec![("schedule", "weekly")], "schedule:"),
        (vec![("schedule", "interval"), ("secs", "soon")], "secs:"),
        (
            vec![("schedule", "interval"), ("secs", "0")],
            "interval secs",
        ),
        (vec![("schedule", "cron"), ("cron", "nonsense")], "cron"),
    ] {
        let mut f = form.clone();
        f.push(("csrf", &csrf));
        let g = admin.post(&task, &f).await?;
        assert_eq!(g.status, 400, "{form:?}");
        assert!(g.body.contains(why), "{form:?}: {}", g.body);
    }
    let g = admin
        .post(
            &task,
            &[
                ("csrf", &csrf),
                ("schedule", "cron"),
                ("cron", "*/5 * * * *"),
            ],
        )
        .await?;
    assert_eq!(g.status, 303, "{}", g.body);
    let page = admin
        .get(&format!("/console/virtual_servers/{dev_tr}/api"))
        .await?;
    assert!(
        page.body.contains("class=\"task-schedule\">cron ")
            && page.body.contains("5 * * * * (UTC) (disabled)"),
        "{}",
        page.body
    );
    let other_task = format!("/console/virtual_servers/{OTHER}/secret-vs/tasks/tick");
    assert_eq!(
        dev.post(&format!("{other_task}/run"), &[("csrf", &dev_csrf)])
            .await?
            .status,
        404
    );
    // Another VS's task is not this one's.
    let g = admin
        .post(
            &format!("/console/virtual_servers/{OTHER}/secret-vs/tasks/tick/run"),
            &[("csrf", &csrf)],
        )
        .await?;
    assert_eq!(g.status, 404);
    assert_eq!(admin.post(&format!("{task}/run"), &[]).await?.status, 403);
    let g = admin
        .post(&format!("{task}/run"), &[("csrf", &csrf)])
        .await?;
    assert_eq!(g.status, 303, "{}", g.body);
    let t =
        e.c.admin(
            "GET",
            &format!("/admin/title_regions/{dev_tr}/trigger_logs?kind=task&name=tick"),
            None,
        )
        .await?
        .json();
    let recs = t["records"].as_array().context("records")?;
    assert_eq!(recs.len(), 1, "{t}");
    assert_eq!(recs[0]["outcome"], "delivered", "{t}");
    // The API's own run-now.
    let a =
        e.c.admin(
            "POST",
            &format!("/admin/title_regions/{dev_tr}/tasks/tick/run"),
            None,
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["name"], "tick");
    let a =
        e.c.admin(
            "POST",
            &format!("/admin/title_regions/{dev_tr}/tasks/nope/run"),
            None,
        )
        .await?;
    assert_eq!(a.status, 404);

    // Browser access: the VS sees Invoker: console; its pages are sandboxed.
    let open = format!("/console/virtual_servers/{dev_tr}/api/open");
    let g = admin.get(&open).await?;
    assert_eq!(g.status, 303);
    assert!(
        g.location
            .starts_with(&format!("/console/browse/{dev_tr}/api/")),
        "{}",
        g.location
    );
    let hello = format!("{}hello?x=1", g.location);
    let g = admin.get(&hello).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    let j: serde_json::Value = serde_json::from_str(&g.body)?;
    assert_eq!(j["invoker"], "console", "{j}");
    assert_eq!(j["path"], "/hello", "{j}");
    assert!(g.csp.contains("sandbox"), "{}", g.csp);
    // The token alone opens it (links inside the VS carry no cookie)…
    assert_eq!(Browser::new(&e.base).get(&hello).await?.status, 200);
    // …but a changed token, another VS, or a reserved URI does not.
    let forged = hello.replacen("/api/", "/secret-vs/", 1);
    assert_eq!(admin.get(&forged).await?.status, 404);
    let tampered = {
        let i = hello.find("-").context("token")? + 1;
        let mut t = hello.clone();
        let c = if &t[i..i + 1] == "0" { "1" } else { "0" };
        t.replace_range(i..i + 1, c);
        t
    };
    assert_eq!(admin.get(&tampered).await?.status, 404);
    let reserved = hello.replace("hello?x=1", "pgos_task");
    assert_eq!(admin.get(&reserved).await?.status, 403);
    assert_eq!(
        dev.get(&format!("/console/virtual_servers/{OTHER}/secret-vs/open"))
            .await?
            .status,
        404
    );

    // Charts: a peer's part needs the admin token; the page names the nodes.
    let part = format!("/console/internal/vs_part/{dev_tr}/api");
    assert_eq!(admin.get(&part).await?.status, 401);
    let a = reqwest::Client::new()
        .get(format!("{}{part}", e.base))
        .bearer_auth(&e.token)
        .send()
        .await?;
    assert_eq!(a.status(), 200);
    let j: serde_json::Value = a.json().await?;
    assert!(j["rtt_hist"].is_array(), "{j}");
    let page = admin
        .get(&format!("/console/virtual_servers/{dev_tr}/api"))
        .await?;
    assert!(
        page.body.contains("id=\"chart-nodes\">figures of node 1<"),
        "{}",
        page.body
    );
    assert_eq!(desired(&e, &dev_tr, "api").await, "RUNNING");
    Ok(())
}
