//! Fleets managed through the admin API, and host drains, with the real
//! agent and sample DS processes.

use super::*;
use respawn_config::{DEV_HOST, DEV_TITLE_REGION};
use serde_json::Value;

fn fleets() -> String {
    format!("/admin/title_regions/{DEV_TITLE_REGION}/fleets")
}

async fn version_of(c: &Cluster, id: &str) -> anyhow::Result<u64> {
    let a = c.admin("GET", &format!("{}/{id}", fleets()), None).await?;
    anyhow::ensure!(a.status == 200, "GET fleet {id}: {} {}", a.status, a.body);
    Ok(a.json()["version"].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_crud_bad_input_and_delete_refused_while_a_session_runs() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(2).await?;
    // The configured fleet is listed, version 1, with its processes.
    let list = c.admin("GET", &fleets(), None).await?;
    assert_eq!(list.status, 200, "{}", list.body);
    let dev = list.json()["fleets"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["fleet_id"] == DEV_FLEET).cloned())
        .expect("the configured fleet is listed");
    assert_eq!(dev["version"], 1);
    assert_eq!(dev["processes"]["READY"], 2);
    assert_eq!(dev["available_slots"], 2);
    assert_eq!(dev["hosts"], json!([DEV_HOST]));

    // Create, update (a new version), the same again (no new version).
    let path = format!("{}/fleet-api", fleets());
    let def = json!({"launch_path": "/bin/true", "mode": "parallel", "max_sessions_per_process": 4,
        "scaling": {"min_processes": 1, "max_processes": 10, "buffer": 2}, "labels": {"team": "a"}});
    let a = c.admin("PUT", &path, Some(def.clone())).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["version"], 1);
    assert_eq!(a.json()["spec"]["scaling"]["buffer"], 2);
    let mut v2 = def.clone();
    v2["args"] = json!(["--v2"]);
    assert_eq!(
        c.admin("PUT", &path, Some(v2.clone())).await?.json()["version"],
        2
    );
    assert_eq!(c.admin("PUT", &path, Some(v2)).await?.json()["version"], 2);

    // Bad input: 400, a message naming the field, nothing changed.
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut d = def.clone();
        edit(&mut d);
        d
    };
    for (body, field) in [
        (bad(&|d| d["colour"] = json!("red")), "colour"),
        (bad(&|d| d["mode"] = json!("forking")), "forking"),
        (
            bad(&|d| d["scaling"]["min_processes"] = json!(11)),
            "scaling.min_processes",
        ),
        (
            bad(&|d| d["scaling"]["buffer"] = json!(11)),
            "scaling.buffer",
        ),
        (
            bad(&|d| d["scaling"]["max_processes"] = json!(0)),
            "scaling.max_processes",
        ),
        (bad(&|d| d["launch_path"] = json!("")), "launch_path"),
        (
            bad(&|d| d["activation_timeout_secs"] = json!(0)),
            "activation_timeout_secs",
        ),
    ] {
        let a = c.admin("PUT", &path, Some(body)).await?;
        assert_eq!(a.status, 400, "{field}: {}", a.body);
        let msg = a.json()["message"].as_str().unwrap_or("").to_string();
        assert!(msg.contains(field), "message does not name {field}: {msg}");
        assert_eq!(
            version_of(&c, "fleet-api").await?,
            2,
            "{field} changed the fleet"
        );
    }
    let a = c
        .admin("PUT", &format!("{}/%20", fleets()), Some(def.clone()))
        .await?;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("fleet_id"),
        "{}",
        a.body
    );

    // Delete: gone; deleting again is 404.
    assert_eq!(c.admin("DELETE", &path, None).await?.status, 204);
    assert_eq!(c.admin("GET", &path, None).await?.status, 404);
    assert_eq!(c.admin("DELETE", &path, None).await?.status, 404);

    // A fleet with a live session: refused with 409 and kept.
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let dev_path = format!("{}/{DEV_FLEET}", fleets());
    let a = c.admin("DELETE", &dev_path, None).await?;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(version_of(&c, DEV_FLEET).await?, 1);
    let live = c.admin("GET", &dev_path, None).await?.json();
    assert_eq!(live["sessions"]["active"], 1, "{live}");
    Ok(())
}

/// An admin drain of a host with idle processes and one live session: the
/// idle processes end and are not relaunched (the agent's launch target is
/// 0 while the host drains), the busy one finishes its session, then the
/// host is DRAINED; undrain brings processes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_host_finishes_its_session_and_takes_no_new_one() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 3,
        placement_timeout_secs: 600,
        ..Options::default()
    })
    .await?;
    let started = c.wait_ready(3).await?;
    let agent = c.agent().agent.clone();
    assert_eq!(agent.launch_target(), 3);
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let busy = c.process_of(&pl).expect("process");
    let host = |state: &'static str| {
        let c = &c;
        async move {
            let a = c.admin("GET", "/admin/hosts", None).await.ok()?;
            let h = a.json()["hosts"].as_array()?.first()?.clone();
            (h["state"] == state).then_some(h)
        }
    };
    let a = c
        .admin("POST", &format!("/admin/hosts/{DEV_HOST}/drain"), None)
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["state"], "DRAINING");
    // The agent is told at once: launch nothing.
    wait_for("agent launch target 0", T, || async {
        (agent.launch_target() == 0).then_some(())
    })
    .await?;
    // The idle processes are asked to terminate and go; the busy one stays.
    wait_for("idle processes gone", T, || async {
        c.read(|s| {
            s.processes
                .values()
                .map(|r| &**r)
                .filter(|p| p.id != busy && p.status == ProcessStatus::Exited)
                .count()
                == 2
        })
        .then_some(())
    })
    .await?;
    assert_eq!(c.process(&busy).unwrap().status, ProcessStatus::Ready);
    // A new placement waits: no process of the draining host takes it.
    let waiting = c.backend.place(DEV_FLEET, &[]).await?;
    // The live session finishes by itself; then the host is DRAINED.
    let port = c.process(&busy).and_then(|p| p.port).unwrap();
    GameClient::connect("127.0.0.1", port)
        .await?
        .send("END")
        .await?;
    wait_for("session over", T, || async {
        let v = c.backend.describe(&pl).await.ok()?;
        (v["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;
    let drained = wait_for("host drained", T, || host("DRAINED")).await?;
    assert_eq!(drained["sessions"], 0);
    // Every process ends, on the agent and in the state, and none was
    // launched in their place: the cluster knows only the first three.
    wait_for("no process left", T, || async {
        let exited = c.read(|s| {
            s.processes
                .values()
                .all(|p| p.status == ProcessStatus::Exited)
        });
        (exited && agent.live_processes().is_empty()).then_some(())
    })
    .await?;
    let known = c.read(|s| s.processes.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        known.len(),
        started.len(),
        "a process was relaunched on the draining host: {known:?}"
    );
    assert_eq!(agent.launch_target(), 0);
    assert_eq!(c.backend.describe(&waiting).await?["status"], "PENDING");
    assert!(
        c.process_of(&waiting).is_none(),
        "a drained host took a session"
    );
    // Undrain: processes come back and the waiting placement is served.
    let a = c
        .admin("POST", &format!("/admin/hosts/{DEV_HOST}/undrain"), None)
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    c.backend.wait_status(&waiting, "FULFILLED", T).await?;
    assert_eq!(agent.launch_target(), 3);
    wait_for("host active", T, || host("ACTIVE")).await?;
    c.wait_ready(2).await?;
    assert_eq!(
        c.admin("POST", "/admin/hosts/nope/drain", None)
            .await?
            .status,
        404
    );
    Ok(())
}

/// `/metrics` carries the fleet's gauges: processes by state and version,
/// sessions by state, available slots, waiting placements and the desired
/// processes and hosts, and they follow a placement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_gauges_on_metrics_follow_a_placement() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 3,
        placement_timeout_secs: 600,
        ..Options::default()
    })
    .await?;
    c.wait_ready(3).await?;
    let fl = format!("fleet=\"{DEV_FLEET}\"");
    let metrics = || async {
        let a = c.admin("GET", "/metrics", None).await?;
        anyhow::ensure!(a.status == 200, "GET /metrics: {}", a.status);
        anyhow::Ok(a.body)
    };
    let has = |body: &str, line: &str| body.lines().any(|l| l == line);
    let before = metrics().await?;
    for line in [
        format!("respawn_fleet_processes{{{fl},state=\"READY\",version=\"1\"}} 3"),
        format!("respawn_fleet_sessions{{{fl},state=\"ACTIVE\"}} 0"),
        format!("respawn_fleet_available_slots{{{fl}}} 3"),
        format!("respawn_fleet_waiting_placements{{{fl}}} 0"),
    ] {
        assert!(has(&before, &line), "missing {line:?} in:\n{before}");
    }
    for name in [
        "respawn_fleet_desired_processes",
        "respawn_fleet_desired_hosts",
    ] {
        let prefix = format!("{name}{{{fl}}} ");
        assert!(
            before.lines().any(|l| l.starts_with(&prefix)),
            "missing {name} in:\n{before}"
        );
    }

    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let active = format!("respawn_fleet_sessions{{{fl},state=\"ACTIVE\"}} 1");
    let slots = format!("respawn_fleet_available_slots{{{fl}}} 2");
    let mut after = String::new();
    let deadline = std::time::Instant::now() + T;
    while std::time::Instant::now() < deadline {
        after = metrics().await?;
        if has(&after, &active) && has(&after, &slots) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("after a FULFILLED placement, wanted {active:?} and {slots:?} in:\n{after}")
}
