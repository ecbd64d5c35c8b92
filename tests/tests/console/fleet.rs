//! The console's fleet page (autoscaling, versions and rollout, hosts with
//! drain and undrain, the desired count set by hand) and a DS process's
//! logs on its page, over plain HTTP: scope (404 for another region's
//! fleet, host or process), CSRF (403), bad input (400 naming the field),
//! nothing changed by a refused request; and what the page says once the
//! host that keeps the logs is gone.

use super::http::SignedIn;
use super::*;
use respawn_config::{DEV_FLEET, DEV_HOST};

/// The host's state as the admin API gives it.
async fn host_state(e: &Env) -> String {
    let a = e.c.admin("GET", "/admin/hosts", None).await.unwrap();
    let j = a.json();
    j["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["host_id"] == DEV_HOST))
        .and_then(|h| h["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The fleet's view from the admin API.
async fn fleet_json(e: &Env, tr: &str) -> serde_json::Value {
    e.c.admin(
        "GET",
        &format!("/admin/title_regions/{tr}/fleets/{DEV_FLEET}"),
        None,
    )
    .await
    .unwrap()
    .json()
}

/// The text of the element with id `id` in `body` (to its first `<`).
fn by_id<'a>(body: &'a str, id: &str) -> Option<&'a str> {
    let start = format!("id=\"{id}\"");
    let i = body.find(&start)? + start.len();
    let i = body[i..].find('>')? + i + 1;
    let j = body[i..].find('<')? + i;
    Some(&body[i..j])
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_scaling_drain_desired_and_ds_logs_over_http() -> anyhow::Result<()> {
    let mut e = start().await?;
    let tr = e.dev.id.to_string();
    let SignedIn {
        admin,
        csrf,
        dev,
        dev_csrf,
        other,
        other_csrf,
    } = SignedIn::all(&e).await?;
    let fleet_page = format!("/console/fleets/{DEV_FLEET}");

    // The fleet page: the fill policy, its reason, version 1 current, the host ACTIVE.
    let g = admin.get(&fleet_page).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(by_id(&g.body, "scaling-policy"), Some("fill"));
    assert!(
        by_id(&g.body, "scaling-reason").is_some_and(|r| r.starts_with("fill policy")),
        "{}",
        g.body
    );
    assert!(g.body.contains("id=\"version-table\""));
    assert!(g.body.contains("1 <span class=\"tag\">current</span>"));
    assert_eq!(
        by_id(&g.body, &format!("host-state-{DEV_HOST}")),
        Some("ACTIVE")
    );
    assert!(g.body.contains(&format!("id=\"drain-{DEV_HOST}\"")));
    assert_eq!(other.get(&fleet_page).await?.status, 404);
    let list = admin.get("/console/fleets").await?;
    assert!(list.body.contains("<td>fill</td>"), "{}", list.body);

    // The desired count by hand: CSRF, bad input and scope refused, nothing changed.
    let set = format!("{fleet_page}/desired");
    let g = admin.post(&set, &[("desired_processes", "1")]).await?;
    assert_eq!(g.status, 403);
    let g = admin
        .post(&set, &[("csrf", &csrf), ("desired_processes", "some")])
        .await?;
    assert_eq!(g.status, 400);
    assert!(g.body.contains("desired_processes:"), "{}", g.body);
    let g = admin
        .post(&set, &[("csrf", &csrf), ("desired_processes", "200000")])
        .await?;
    assert_eq!(g.status, 400);
    assert!(g.body.contains("max_processes"), "{}", g.body);
    let g = other
        .post(&set, &[("csrf", &other_csrf), ("desired_processes", "1")])
        .await?;
    assert_eq!(g.status, 404);
    assert!(fleet_json(&e, &tr).await["scaling"]["manual_desired"].is_null());
    // Set to 1 by the region's own session: the autoscaler takes over and
    // commits a decision, which the page shows with its reason.
    let g = dev
        .post(&set, &[("csrf", &dev_csrf), ("desired_processes", "1")])
        .await?;
    assert_eq!(g.status, 303, "{}", g.body);
    assert_eq!(g.location, format!("{fleet_page}#scaling"));
    assert_eq!(fleet_json(&e, &tr).await["scaling"]["manual_desired"], 1);
    let last = wait_for("the autoscaler's decision on the page", T, || async {
        let g = admin.get(&fleet_page).await.ok()?;
        let i = g.body.find("id=\"scaling-last\">Last decision")?;
        let j = g.body[i..].find("</p>")? + i;
        Some(g.body[i..j].to_string())
    })
    .await?;
    assert!(last.contains("manual desired 1"), "{last}");
    let g = admin.get(&fleet_page).await?;
    assert_eq!(by_id(&g.body, "scaling-policy"), Some("autoscaled"));
    assert_eq!(by_id(&g.body, "scaling-manual"), Some("1"));
    let list = admin.get("/console/fleets").await?;
    assert!(
        list.body
            .contains("<td>autoscaled <span class=\"tag\">by hand</span></td>"),
        "{}",
        list.body
    );
    let clear = format!("{fleet_page}/desired/clear");
    assert_eq!(admin.post(&clear, &[]).await?.status, 403);
    assert_eq!(
        other.post(&clear, &[("csrf", &other_csrf)]).await?.status,
        404
    );
    let g = admin.post(&clear, &[("csrf", &csrf)]).await?;
    assert_eq!(g.status, 303, "{}", g.body);
    assert!(fleet_json(&e, &tr).await["scaling"]["manual_desired"].is_null());

    // Drain and undrain: CSRF and scope first, then through the API's code.
    let p = e.c.backend.place(DEV_FLEET, &["dora"]).await?;
    e.c.backend.wait_status(&p, "FULFILLED", T).await?;
    let drain = format!("/console/hosts/{DEV_HOST}/drain");
    let undrain = format!("/console/hosts/{DEV_HOST}/undrain");
    assert_eq!(admin.post(&drain, &[]).await?.status, 403);
    assert_eq!(
        admin
            .post(&drain, &[("csrf", "0".repeat(64).as_str())])
            .await?
            .status,
        403
    );
    assert_eq!(
        other.post(&drain, &[("csrf", &other_csrf)]).await?.status,
        404
    );
    assert_eq!(
        admin
            .post("/console/hosts/no-such-host/drain", &[("csrf", &csrf)])
            .await?
            .status,
        404
    );
    assert_eq!(host_state(&e).await, "ACTIVE");
    let g = admin.post(&drain, &[("csrf", &csrf)]).await?;
    assert_eq!(g.status, 303, "{}", g.body);
    assert_eq!(g.location, format!("{fleet_page}#hosts"));
    // Its one process holds dora's session: DRAINING until it ends.
    assert_eq!(host_state(&e).await, "DRAINING");
    let g = admin.get(&fleet_page).await?;
    assert_eq!(
        by_id(&g.body, &format!("host-state-{DEV_HOST}")),
        Some("DRAINING")
    );
    assert!(g.body.contains(&format!("id=\"undrain-{DEV_HOST}\"")));
    assert_eq!(
        other.post(&undrain, &[("csrf", &other_csrf)]).await?.status,
        404
    );
    assert_eq!(host_state(&e).await, "DRAINING");
    let g = dev.post(&undrain, &[("csrf", &dev_csrf)]).await?;
    assert_eq!(g.status, 303, "{}", g.body);
    assert_eq!(host_state(&e).await, "ACTIVE");

    // The DS process's page shows its logs: the files, and the tail of
    // stdout.log with the line the sample DS printed.
    let pid = e.c.process_of(&p).context("process of the placement")?;
    let page = format!("/console/processes/{pid}");
    let g = admin.get(&page).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(g.body.contains("id=\"log-files\""), "{}", g.body);
    assert!(g.body.contains("<code>stdout.log</code>"), "{}", g.body);
    let tail = by_id(&g.body, "log-tail").context("log tail")?;
    assert!(tail.contains("process ready"), "{tail}");
    assert!(g.body.contains("last 64 KiB"), "{}", g.body);
    let g = admin.get(&format!("{page}?file=stderr.log")).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(g.body.contains("<h3><code>stderr.log</code>"), "{}", g.body);
    let g = admin.get(&format!("{page}?file=..%2Fsecrets")).await?;
    assert_eq!(g.status, 400);
    assert!(g.body.contains("file: "), "{}", g.body);
    // The whole file, downloaded through the API's code.
    let g = admin.get(&format!("{page}/logs/stdout.log")).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(g.body.contains("process ready"), "{}", g.body);
    assert_eq!(
        admin.get(&format!("{page}/logs/nope.log")).await?.status,
        404
    );
    assert_eq!(
        other.get(&format!("{page}/logs/stdout.log")).await?.status,
        404
    );
    assert_eq!(dev.get(&page).await?.status, 200);
    // Logs the host no longer keeps (past its retention): the page says so.
    let kept = e.c.cfg.data_dir.join("agent/logs").join(pid.as_str());
    std::fs::remove_dir_all(&kept)?;
    let g = admin.get(&page).await?;
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(g.body.contains("id=\"logs-gone\""), "{}", g.body);
    assert!(!g.body.contains("id=\"log-tail\""));

    // The host goes away: the page says its logs cannot be read now, and
    // the host is LOST.
    if let Some(a) = e.c.agent.take() {
        a.shutdown().await;
    }
    let g = wait_for("the logs reported unavailable", T, || async {
        let g = admin.get(&page).await.ok()?;
        g.body.contains("id=\"logs-unavailable\"").then_some(g)
    })
    .await?;
    assert_eq!(g.status, 200);
    assert!(g.body.contains("not connected"), "{}", g.body);
    wait_for("the host LOST on the fleet page", T, || async {
        let g = admin.get(&fleet_page).await.ok()?;
        (by_id(&g.body, &format!("host-state-{DEV_HOST}")) == Some("LOST")).then_some(())
    })
    .await?;
    Ok(())
}
