//! Replication over a lossy, slow network and over the real QUIC transport.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_slow_network_still_commits_and_converges() {
    let cluster = MemCluster::start(3, settings()).await;
    let all = [1, 2, 3];
    cluster.router.set_drop_rate(0.1);
    cluster.router.set_reply_drop_rate(0.05);
    cluster
        .router
        .set_delay(Duration::ZERO, Duration::from_millis(5));
    let mut last = 0;
    for n in 1..=30 {
        // A proposal may fail when leadership moves; retry on the leader.
        let deadline = Instant::now() + T;
        loop {
            let leader = cluster.leader().await;
            match cluster
                .node(leader)
                .propose_request(Request {
                    at: 1,
                    command: put(n),
                })
                .await
            {
                Ok(c) => {
                    last = last.max(c.index);
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "proposal {n}: {e:?}"),
            }
        }
    }
    cluster.wait_applied(&all, last).await;
    let state = cluster.assert_equal(&all);
    assert_eq!(state.title_regions.len(), 30);
    let stats = cluster.router.stats(Service::Raft);
    assert!(stats.dropped > 0 && stats.replies_dropped > 0, "{stats:?}");
    cluster.shutdown().await;
}

// ----- a cluster over QUIC -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_and_replicate_over_quic() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let settings = RaftSettings {
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1000,
        ..RaftSettings::default()
    };
    let mut dirs = Vec::new();
    let mut nodes: BTreeMap<u64, Consensus> = BTreeMap::new();
    let mut infos = BTreeMap::new();
    let mut endpoints = Vec::new();
    for id in 1..=3u64 {
        let identity = ca.issue(PeerKind::Node, &node_name(id), &[]).unwrap();
        let endpoint = Endpoint::server("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let transport = QuicTransport::new(id, endpoint.clone());
        let dir = tempfile::tempdir().unwrap();
        let c = Consensus::open(
            id,
            dir.path(),
            settings.clone(),
            TransportNetwork::new(transport),
        )
        .await
        .unwrap();
        // The node's accept loop.
        let handler: Arc<dyn Handler> = Arc::new(RaftHandler(c.clone()));
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            while let Some(accepted) = accepting.accept().await {
                let Ok(link) = accepted else { continue };
                tokio::spawn(serve_node_link(link, Arc::clone(&handler)));
            }
        });
        infos.insert(
            id,
            NodeInfo {
                raft_addr: addr.to_string(),
                http_addr: format!("127.0.0.1:{}", 8000 + id),
            },
        );
        nodes.insert(id, c);
        dirs.push(dir);
        endpoints.push(endpoint);
    }
    nodes[&1].initialize(infos.clone()).await.unwrap();
    let deadline = Instant::now() + T;
    let leader = loop {
        let seen: BTreeSet<Option<u64>> = nodes
            .values()
            .map(|c| c.metrics().borrow().current_leader)
            .collect();
        if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..] {
            if nodes[&l].is_leader() {
                break l;
            }
        }
        assert!(Instant::now() < deadline, "no leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let last = propose_all(&nodes[&leader], 1..=20).await;
    for c in nodes.values() {
        c.wait_applied(last, T).await.unwrap();
    }
    let state = nodes[&1].read(|s| s.clone());
    assert_eq!(state.title_regions.len(), 20);
    for c in nodes.values() {
        assert_eq!(c.read(|s| s.clone()), state);
        assert_eq!(c.leader(), Some((leader, infos[&leader].clone())));
    }
    for c in nodes.values() {
        c.shutdown().await.unwrap();
    }
    for e in endpoints {
        e.close();
    }
}

// A follower that fell behind catches up in requests within the budget.
