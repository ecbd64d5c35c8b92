//! How the edge routes calls while instances crash and come up
//! (docs/virtual-servers.md §7, §11).

use super::*;

/// §7: a call that finds its instance just crashed (connection refused)
/// waits for the relaunch instead of answering 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_right_after_a_crash_waits_for_the_relaunch() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({"max_instances": 1})))
        .await?;
    c.wait_vs_running("vs-a", 1).await?;
    let first = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(first.status, 200, "{}", first.body);
    let pid = first.json()["pid"].as_u64();
    let crash = c
        .backend
        .invoke("GET", "vs-a/crash?code=3", &[], vec![])
        .await?;
    assert_eq!(crash.status, 200, "{}", crash.body);
    // Call after call through the crash: every one is served, the later
    // ones by the relaunched program.
    wait_for("a call served by the relaunched instance", T, || async {
        let a = c
            .backend
            .invoke("GET", "vs-a/hello?still=there", &[], vec![])
            .await
            .ok()?;
        if a.status != 200 {
            return Some(Err(anyhow::anyhow!("{} {}", a.status, a.body)));
        }
        let h = c
            .backend
            .invoke("GET", "vs-a/hello", &[], vec![])
            .await
            .ok()?;
        if h.status != 200 {
            return Some(Err(anyhow::anyhow!("{} {}", h.status, h.body)));
        }
        (h.json()["pid"].as_u64() != pid).then_some(Ok(()))
    })
    .await??;
    Ok(())
}

/// §11: calls beyond `target_concurrency` per instance wait at the edge
/// while the autoscaler adds instances, and go to the new ones as they come
/// up, instead of all piling onto the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_slow_calls_spreads_over_new_instances() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs(
        "vs-a",
        python_vs_spec(
            json!({"max_instances": 3, "target_concurrency": 1, "scale_down_delay_secs": 60}),
        ),
    )
    .await?;
    c.wait_vs_running("vs-a", 1).await?;
    let mut burst = Vec::new();
    for _ in 0..6 {
        let b = c.backend.clone();
        burst.push(tokio::spawn(async move {
            b.invoke("GET", "vs-a/slow?ms=2500", &[], vec![]).await
        }));
    }
    let mut pids = BTreeSet::new();
    for call in burst {
        let a = call.await??;
        assert_eq!(a.status, 200, "{}", a.body);
        pids.insert(a.json()["pid"].as_u64().unwrap());
    }
    assert!(
        pids.len() >= 2,
        "the burst was served by {} instance(s) only: {pids:?}",
        pids.len()
    );
    Ok(())
}
