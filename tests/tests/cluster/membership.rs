//! Membership changes over real QUIC: a node that is not there, not who it
//! claims, or of another cluster is refused before anything is committed;
//! a real node joins through a follower's admin API; removing nodes that
//! are gone or never joined works; the cluster commits and restarts after.

use super::*;
use respawn::ServerNode;
use respawn_config::Bootstrap;
use respawn_net::{Identity, PeerKind};
use serde_json::{json, Value};

const TOKEN: &str = "test-admin-token-0123456789";

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Starts one more server node `id` with a certificate of the cluster's CA
/// and its own data directory.
async fn extra_node(
    c: &TestCluster,
    id: NodeId,
    bootstrap: Bootstrap,
    join_url: Option<String>,
) -> anyhow::Result<(ServerNode, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = c.cfgs[0].clone();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.server.node_id = id;
    cfg.server.quic_addr = format!("127.0.0.1:{}", free_port(true)).parse()?;
    cfg.server.http_addr = format!("127.0.0.1:{}", free_port(false)).parse()?;
    cfg.server.bootstrap = bootstrap;
    cfg.server.members = Vec::new();
    cfg.server.join_url = join_url;
    let pki = dir.path().join("pki-node");
    c.ca.issue(PeerKind::Node, &respawn_net::transport::node_name(id), &[])?
        .write_dir(&pki)?;
    cfg.server.pki_dir = Some(pki.clone());
    cfg.validate()?;
    let node = ServerNode::start(&cfg, &Identity::load_dir(&pki)?).await?;
    Ok((node, dir))
}

async fn admin(base: &str, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}/admin/cluster/{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
}

fn spec(id: NodeId, node: &ServerNode) -> Value {
    json!({"node_id": id, "quic_addr": node.quic_addr.to_string(), "http_addr": node.http_addr.to_string()})
}

/// A write commits through node `via`.
async fn commits(c: &TestCluster, via: NodeId) -> anyhow::Result<()> {
    wait_for("a committed write", T, || async {
        c.backend(via)
            .ok("/dsm/request_battle_session_id", json!({}))
            .await
            .ok()
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_is_refused_and_a_real_node_joins_and_leaves() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions {
        net: Net::Quic,
        ..Default::default()
    })
    .await?;
    let leader = c.wait_leader().await?;
    let via = c.alive().into_iter().find(|n| *n != leader).unwrap();
    let base = format!("http://{}", c.cfgs[(via - 1) as usize].server.http_addr);
    let voters = |c: &TestCluster| c.node(leader).consensus.membership();
    let before = voters(&c);

    // Not there: refused, nothing committed.
    let (s, v) = admin(
        &base,
        "add_learner",
        json!({"node_id": 4, "quic_addr": "127.0.0.1:9", "http_addr": "127.0.0.1:9"}),
    )
    .await?;
    assert_eq!(s, 409, "{v}");
    // A node of another cluster (its own cluster of one), with a
    // certificate of this CA: refused.
    let (foreign, _fdir) = extra_node(&c, 5, Bootstrap::Single, None).await?;
    let (s, v) = admin(&base, "add_learner", spec(5, &foreign)).await?;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("another cluster"),
        "{v}"
    );
    // Not who it claims: node 5's address given as node 4.
    let (s, v) = admin(&base, "join", spec(4, &foreign)).await?;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("node-5"), "{v}");
    foreign.shutdown().await;
    // A member's id with other addresses; a member's address.
    let (s, v) = admin(
        &base,
        "add_learner",
        json!({"node_id": 2, "quic_addr": "127.0.0.1:9", "http_addr": "127.0.0.1:9"}),
    )
    .await?;
    assert_eq!(s, 409, "{v}");
    let own = c.cfgs[0].server.quic_addr.to_string();
    let (s, v) = admin(
        &base,
        "add_learner",
        json!({"node_id": 4, "quic_addr": own, "http_addr": "127.0.0.1:9"}),
    )
    .await?;
    assert_eq!(s, 409, "{v}");
    assert_eq!(voters(&c), before, "nothing committed");
    commits(&c, via).await?;

    // A real node joins through a follower; the join answers 200 or 202
    // (it calls again) until it is a voter.
    let (n4, _d4) = extra_node(&c, 4, Bootstrap::Join, Some(base.clone())).await?;
    wait_for("node 4 to be a voter", T, || async {
        voters(&c).voters.contains(&4).then_some(())
    })
    .await?;
    // Adding it again with the same addresses changes nothing.
    let (s, v) = admin(&base, "add_learner", spec(4, &n4)).await?;
    assert_eq!(s, 200, "{v}");
    commits(&c, via).await?;
    // It goes away for good; it is removed (3 of the 4 voters answer).
    n4.shutdown().await;
    let (s, v) = admin(&base, "remove", json!({"node_id": 4})).await?;
    assert!(s == 200 || s == 202, "{s} {v}");
    wait_for("node 4 removed", T, || async {
        let m = voters(&c);
        (!m.nodes.contains_key(&4) && !m.joint).then_some(())
    })
    .await?;
    // Removing it again, or a node that never joined: nothing to do.
    for id in [4, 99] {
        let (s, v) = admin(&base, "remove", json!({"node_id": id})).await?;
        assert_eq!(s, 200, "{v}");
    }
    commits(&c, via).await?;

    // Every node restarts with its data and the cluster commits.
    for id in [1, 2, 3] {
        c.kill(id).await;
    }
    for id in [1, 2, 3] {
        c.start_node(id).await?;
    }
    let leader = c.wait_leader().await?;
    commits(&c, leader).await?;
    assert_eq!(c.node(leader).consensus.membership().voters, before.voters);
    Ok(())
}
