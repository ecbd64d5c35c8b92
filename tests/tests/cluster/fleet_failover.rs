//! Fleet CRUD across a leader change: a fleet PUT before the leader crashes
//! is there, at its version, on the new leader and the follower; updates
//! and the delete go on from there.

use super::*;
use serde_json::{json, Value};

const TOKEN: &str = "test-admin-token-0123456789";

fn path(fleet: &str) -> String {
    format!("/admin/title_regions/{TITLE_REGION}/fleets/{fleet}")
}

/// Calls node `id`'s admin API until it answers something other than 503
/// (an election under way); returns that answer.
async fn call(
    c: &TestCluster,
    id: NodeId,
    method: &str,
    fleet: &str,
    body: Option<Value>,
) -> anyhow::Result<Answer> {
    let b = c.backend(id);
    wait_for(&format!("{method} {fleet} on node {id}"), T, || async {
        let a = b
            .admin(TOKEN, method, &path(fleet), body.clone())
            .await
            .ok()?;
        (a.status != 503).then_some(a)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_crud_goes_on_across_a_leader_change() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    let leader = c.wait_leader().await?;
    let def = json!({"launch_path": "/bin/false", "processes_per_host": 2,
        "scaling": {"min_processes": 0, "max_processes": 10, "buffer": 1}});
    let a = call(&c, leader, "PUT", "fleet-ha", Some(def.clone())).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["version"], 1);
    let mut v2 = def.clone();
    v2["args"] = json!(["--v2"]);
    let a = call(&c, leader, "PUT", "fleet-ha", Some(v2.clone())).await?;
    assert_eq!(a.json()["version"], 2, "{}", a.body);

    c.crash(leader).await;
    let new = c.wait_new_leader(leader).await?;
    let follower = c
        .alive()
        .into_iter()
        .find(|id| *id != new)
        .expect("a follower");
    // Both survivors show version 2, as it was committed.
    for id in [new, follower] {
        let a = call(&c, id, "GET", "fleet-ha", None).await?;
        assert_eq!(a.status, 200, "node {id}: {}", a.body);
        assert_eq!(a.json()["version"], 2, "node {id}: {}", a.body);
        assert_eq!(a.json()["spec"]["args"], json!(["--v2"]), "node {id}");
    }
    // The same definition again makes no new version; a change makes 3,
    // through either survivor.
    let a = call(&c, new, "PUT", "fleet-ha", Some(v2)).await?;
    assert_eq!(a.json()["version"], 2, "{}", a.body);
    let mut v3 = def.clone();
    v3["args"] = json!(["--v3"]);
    let a = call(&c, follower, "PUT", "fleet-ha", Some(v3)).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["version"], 3, "{}", a.body);
    wait_for("version 3 on the new leader", T, || async {
        let a = call(&c, new, "GET", "fleet-ha", None).await.ok()?;
        (a.json()["version"] == 3).then_some(())
    })
    .await?;
    // Delete on the new leader: gone everywhere; again is 404.
    assert_eq!(call(&c, new, "DELETE", "fleet-ha", None).await?.status, 204);
    for id in [new, follower] {
        wait_for(&format!("fleet gone on node {id}"), T, || async {
            let a = call(&c, id, "GET", "fleet-ha", None).await.ok()?;
            (a.status == 404).then_some(())
        })
        .await?;
    }
    assert_eq!(
        call(&c, follower, "DELETE", "fleet-ha", None).await?.status,
        404
    );
    Ok(())
}
