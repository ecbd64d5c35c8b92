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
        c.crash(id).await;
    }
    for id in [1, 2, 3] {
        c.start_node(id).await?;
    }
    let leader = c.wait_leader().await?;
    commits(&c, leader).await?;
    assert_eq!(c.node(leader).consensus.membership().voters, before.voters);
    Ok(())
}

async fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(15))
        .send()
        .await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// The brick of issue 10 as the old code made it (a learner that never
/// answers, promoted: a joint configuration nothing can commit, stored in
/// the log). The node still starts from that data directory, serves its
/// status and tells the truth on /readyz; `force_new_cluster` repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bricked_data_directory_starts_and_is_repaired() -> anyhow::Result<()> {
    // A configuration and a certificate from a cluster of one, which is
    // then stopped: its ports are reused.
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 1,
        ..Default::default()
    })
    .await?;
    c.stop(1).await;
    let mut cfg = c.cfgs[0].clone();
    cfg.server.bootstrap = Bootstrap::Single;
    cfg.server.members = Vec::new();
    let dir = tempfile::tempdir()?;
    cfg.data_dir = dir.path().to_path_buf();
    let identity = Identity::load_dir(cfg.server.pki_dir.as_ref().unwrap())?;
    let node = ServerNode::start(&cfg, &identity).await?;
    let base = format!("http://{}", node.http_addr);
    let backend = respawn_tests::Backend::new(base.clone(), &node.title_regions()[0]);
    backend
        .ok("/dsm/request_battle_session_id", json!({}))
        .await?;
    node.shutdown().await;

    // Brick it with the consensus handle directly, as the unchecked admin
    // calls did.
    let raft_dir = dir.path().join("raft");
    let consensus = respawn_consensus::Consensus::open(
        1,
        &raft_dir,
        respawn_consensus::RaftSettings::default(),
        respawn_consensus::SingleNodeNetwork,
    )
    .await?;
    consensus.wait_for_leader(T).await?;
    let learner = respawn_consensus::NodeInfo {
        raft_addr: "127.0.0.1:9".into(),
        http_addr: "127.0.0.1:9".into(),
    };
    consensus.add_learner_committed(2, learner).await?;
    let stuck = consensus.clone();
    let promote = tokio::spawn(async move {
        stuck
            .change_membership(std::collections::BTreeSet::from([1, 2]))
            .await
    });
    wait_for("the joint configuration", T, || async {
        consensus.membership().joint.then_some(())
    })
    .await?;
    consensus.shutdown().await?;
    let _ = promote.await;
    drop(consensus);

    // It starts, and says what is wrong.
    let node = ServerNode::start(&cfg, &identity).await?;
    let (s, v) = get(&format!("{base}/admin/cluster")).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["can_commit"], &v["change_in_progress"], &v["joint"]),
        (&json!(false), &json!(true), &json!(true)),
        "{v}"
    );
    let (s, v) = get(&format!("{base}/readyz")).await?;
    assert_eq!(s, 503, "{v}");
    let (s, v) = backend
        .post("/dsm/request_battle_session_id", json!({}))
        .await?;
    assert_eq!(s, 503, "{v}");
    // Another change cannot start; the answer says how to repair.
    let (s, v) = admin(&base, "remove", json!({"node_id": 2})).await?;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("force-new-cluster"),
        "{v}"
    );
    node.shutdown().await;

    // The repair.
    cfg.server.force_new_cluster = true;
    let node = ServerNode::start(&cfg, &identity).await?;
    wait_for("ready after the repair", T, || async {
        (get(&format!("{base}/readyz")).await.ok()?.0 == 200).then_some(())
    })
    .await?;
    let (_, v) = get(&format!("{base}/admin/cluster")).await?;
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        (&v["can_commit"], &v["change_in_progress"]),
        (&json!(true), &json!(false)),
        "{v}"
    );
    backend
        .ok("/dsm/request_battle_session_id", json!({}))
        .await?;
    node.shutdown().await;
    Ok(())
}
