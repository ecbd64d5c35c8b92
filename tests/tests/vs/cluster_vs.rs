//! Virtual servers in a three-node cluster when the leader goes.

use super::*;

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

    // The leader crashes; the instance keeps serving through the survivors.
    tc.crash(leader).await;
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
