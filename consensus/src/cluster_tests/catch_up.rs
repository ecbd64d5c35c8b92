//! A follower that fell far behind catches up through AppendEntries
//! requests that each stay within the budget.

use super::*;

/// Commits `req` through whichever of `nodes` leads, retrying while
/// leadership moves (a starved machine can miss heartbeats and elect
/// again); returns its log index. The commands used here are idempotent
/// puts, so an attempt that was committed but not answered does no harm.
async fn propose_on_any(nodes: &[Consensus], req: Request, deadline: Instant) -> u64 {
    loop {
        let leader = nodes.iter().find(|c| c.is_leader());
        if let Some(c) = leader {
            match c.propose_request(req.clone()).await {
                Ok(committed) => return committed.index,
                Err(e) => assert!(Instant::now() < deadline, "proposal: {e:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader among the reachable members"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the test asserts is the size of each request, not how long the
/// catch-up takes: the waits are on conditions, with deadlines generous
/// enough for a starved machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_catches_up_in_append_entries_within_the_budget() {
    const SLOW: Duration = Duration::from_secs(180);
    let cluster = MemCluster::start(3, settings()).await;
    let all = [1, 2, 3];
    let leader = cluster.leader().await;
    let behind = all.into_iter().find(|id| *id != leader).unwrap();
    let up: Vec<u64> = all.into_iter().filter(|id| *id != behind).collect();
    let reachable: Vec<Consensus> = up.iter().map(|id| cluster.node(*id).clone()).collect();
    let deadline = Instant::now() + SLOW;
    let first = propose_on_any(
        &reachable,
        Request {
            at: 1,
            command: put(100_000),
        },
        deadline,
    )
    .await;
    for id in all {
        cluster.node(id).wait_applied(first, SLOW).await.unwrap();
    }
    cluster.router.unregister(behind);

    // Concurrent proposals fill big batches (up to 512 requests an entry),
    // each request about 1 KiB.
    let tasks: Vec<_> = (0..3000u32)
        .map(|n| {
            let nodes = reachable.clone();
            let mut region = title_region(n);
            region.name = format!("{n:0>1000}");
            tokio::spawn(async move {
                let req = Request {
                    at: 1,
                    command: Command::PutTitleRegion(region),
                };
                propose_on_any(&nodes, req, deadline).await
            })
        })
        .collect();
    let mut last = 0;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    let entries = last - first;
    for id in &up {
        cluster.node(*id).wait_applied(last, SLOW).await.unwrap();
    }
    let log_bytes = {
        let s = cluster.node(up[0]).read(|s| s.clone());
        serde_json::to_vec(&s.title_regions).unwrap().len()
    };
    assert!(
        log_bytes > 2 * rpc::APPEND_ENTRIES_BUDGET,
        "the backlog ({log_bytes} bytes) needs several requests"
    );
    assert!(
        cluster.node(behind).read(|s| s.title_regions.len()) < 3001,
        "node {behind} was cut off: it is behind"
    );

    cluster
        .router
        .register(behind, Arc::new(RaftHandler(cluster.node(behind).clone())));
    for id in all {
        cluster.node(id).wait_applied(last, SLOW).await.unwrap();
    }
    let state = cluster.assert_equal(&all);
    assert_eq!(state.title_regions.len(), 3001);
    let largest = cluster.router.stats(Service::Raft).largest_delivered;
    // Every request stayed within the budget, though it could have taken
    // the whole backlog (`entries` entries) at once.
    assert!(
        largest <= rpc::APPEND_ENTRIES_BUDGET,
        "largest raft request {largest} bytes; {entries} entries were behind"
    );
    cluster.shutdown().await;
}
