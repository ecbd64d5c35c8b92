//! The console's VS charts merged across a 3-node cluster, over HTTP: the
//! page's node asks each peer for its part (`/console/internal/vs_part`)
//! and adds them up, names the nodes whose figures are in, and names a
//! node that did not answer. The nodes of this process share one metrics
//! recorder, so each part holds every call of the process (docs/console.md):
//! the merged RTT histogram counts each call once per node that answered.

use super::*;
use anyhow::Context;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// A VS of this test only: the recorder is the process's, shared with the
/// other tests of this binary, and keyed by title region and VS.
const VS: &str = "vs-charts";

/// Node `id`'s part of the VS's figures, as its peers get it.
async fn part(c: &TestCluster, http: &reqwest::Client, id: NodeId) -> Option<Value> {
    let url = format!(
        "http://{}/console/internal/vs_part/{TITLE_REGION}/{VS}",
        c.cfgs[(id - 1) as usize].server.http_addr
    );
    let r = http.get(url).bearer_auth(ADMIN_TOKEN).send().await.ok()?;
    (r.status() == 200).then_some(())?;
    r.json().await.ok()
}

fn calls(part: &Value) -> u64 {
    part["rtt_hist"]
        .as_array()
        .map_or(0, |b| b.iter().filter_map(Value::as_u64).sum())
}

/// The VS page as the admin sees it on node `id` (signed in there).
async fn vs_page(c: &TestCluster, http: &reqwest::Client, id: NodeId) -> anyhow::Result<String> {
    let base = format!("http://{}", c.cfgs[(id - 1) as usize].server.http_addr);
    let login = http
        .post(format!("{base}/console/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await?;
    anyhow::ensure!(login.status() == 303, "sign-in: {}", login.status());
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("session cookie")?
        .to_string();
    let page = http
        .get(format!(
            "{base}/console/virtual_servers/{TITLE_REGION}/{VS}"
        ))
        .header("Cookie", cookie)
        .send()
        .await?;
    anyhow::ensure!(page.status() == 200, "VS page: {}", page.status());
    Ok(page.text().await?)
}

/// The text of the element with id `id` (to its first `<`).
fn by_id<'a>(body: &'a str, id: &str) -> Option<&'a str> {
    let start = format!("id=\"{id}\"");
    let i = body.find(&start)? + start.len();
    let i = body[i..].find('>')? + i + 1;
    let j = body[i..].find('<')? + i;
    Some(&body[i..j])
}

/// The RTT histogram's caption on a VS page: "N calls in the window".
fn histogram_calls(page: &str) -> Option<u64> {
    let i = page.find("id=\"chart-rtt-histogram\"")?;
    let cap = page[i..].find("<figcaption>")? + i + "<figcaption>".len();
    page[cap..].split(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vs_charts_merge_every_nodes_part_and_name_a_node_that_is_gone() -> anyhow::Result<()> {
    let mut c = TestCluster::start(ClusterOptions::default()).await?;
    let sink = EventSink::start(c.history.clone()).await?;
    let _agent = c
        .sim_agent_with_vs(
            "host-a",
            1,
            Duration::from_secs(600),
            c.quic_addrs(),
            Some(sink.port),
        )
        .await?;
    let leader = c.wait_leader().await?;
    let a = c
        .backend(leader)
        .admin(
            ADMIN_TOKEN,
            "PUT",
            &format!("/admin/title_regions/{TITLE_REGION}/virtual_servers/{VS}"),
            Some(python_vs_spec(json!({}))),
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // Every node has sampled the VS running before any call: each part's
    // histogram then counts from zero.
    wait_for("every node sampling the VS running", T * 2, || async {
        for id in 1..=3 {
            let p = part(&c, &http, id).await?;
            let last = p["series"]["running"].as_array()?.last()?[1].as_f64()?;
            (last >= 1.0).then_some(())?;
        }
        Some(())
    })
    .await?;

    // Calls through each node's edge.
    let n: u64 = 12;
    for i in 0..n {
        let b = c.backend(1 + i % 3);
        let a = b.invoke("GET", &format!("{VS}/hello"), &[], vec![]).await?;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // Each node's part, once sampled, holds the process's n calls, and
    // still does at its next sample (the calls stay in the window).
    wait_for("every node's part with the calls", T * 2, || async {
        for id in 1..=3 {
            let p = part(&c, &http, id).await?;
            (calls(&p) == n).then_some(())?;
        }
        Some(())
    })
    .await?;
    wait_for("a later sample on every node", T * 2, || async {
        for id in 1..=3 {
            let p = part(&c, &http, id).await?;
            (p["series"]["qps"].as_array()?.len() >= 2).then_some(())?;
        }
        Some(())
    })
    .await?;
    for id in 1..=3 {
        let p = part(&c, &http, id).await.context("part")?;
        assert_eq!(calls(&p), n, "node {id}: {p}");
    }

    // The page on the leader merges the three parts.
    let page = vs_page(&c, &http, leader).await?;
    let nodes = by_id(&page, "chart-nodes").context("chart-nodes")?;
    assert!(nodes.starts_with("figures of nodes "), "{nodes}");
    let mut merged: Vec<u64> = nodes["figures of nodes ".len()..]
        .split(", ")
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(merged[0], leader, "the answering node comes first");
    merged.sort();
    assert_eq!(merged, vec![1, 2, 3]);
    assert!(!page.contains("id=\"chart-missing\""));
    assert_eq!(
        histogram_calls(&page),
        Some(3 * n),
        "three parts of n calls"
    );
    assert!(page.contains("id=\"chart-qps\""));

    // A follower goes away: the page still answers, with the two parts it
    // has, and names the node left out.
    let gone = (1..=3).find(|id| *id != leader).unwrap();
    c.stop(gone).await;
    let page = wait_for("the page without the stopped node", T, || async {
        let p = vs_page(&c, &http, leader).await.ok()?;
        p.contains("id=\"chart-missing\"").then_some(p)
    })
    .await?;
    let missing = by_id(&page, "chart-missing").context("chart-missing")?;
    assert!(missing.contains(&format!("node {gone} (")), "{missing}");
    let nodes = by_id(&page, "chart-nodes").context("chart-nodes")?;
    assert!(!nodes.contains(&gone.to_string()), "{nodes}");
    assert_eq!(histogram_calls(&page), Some(2 * n), "two parts of n calls");
    Ok(())
}
