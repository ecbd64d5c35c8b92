//! `/readyz` tells the truth: a node is not ready until the title regions
//! and fleets its configuration names are in the state it has applied.

use super::*;

async fn readyz(c: &TestCluster, id: NodeId) -> anyhow::Result<(u16, String)> {
    let url = format!(
        "http://{}/readyz",
        c.cfgs[(id - 1) as usize].server.http_addr
    );
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_not_ready_until_its_configured_title_regions_are_applied() -> anyhow::Result<()>
{
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    let leader = c.wait_leader().await?;
    let follower = c.alive().into_iter().find(|&n| n != leader).unwrap();
    wait_for("the follower ready", T, || async {
        readyz(&c, follower).await.ok().filter(|r| r.0 == 200)
    })
    .await?;

    // The follower restarts naming a title region no leader has created:
    // it commits (a quorum answers) but would answer "unknown title
    // region" to that region's callers, so it says it is not ready, and why.
    c.stop(follower).await;
    let mut extra = c.cfgs[0].title_regions[0].clone();
    extra.id = "tr-not-applied".into();
    c.cfgs[(follower - 1) as usize].title_regions.push(extra);
    c.start_node(follower).await?;
    let (_, body) = wait_for("the follower not ready, naming the region", T, || async {
        readyz(&c, follower)
            .await
            .ok()
            .filter(|(status, body)| *status == 503 && body.contains("tr-not-applied"))
    })
    .await?;
    assert!(body.contains("not applied"), "{body}");
    // The leader, whose configuration has no such region, is ready.
    assert_eq!(readyz(&c, leader).await?.0, 200);
    Ok(())
}
