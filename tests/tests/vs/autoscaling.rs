//! Instances scaled up and down with load, stopped and started.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_under_concurrent_load_and_back_down() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs(
        "vs-a",
        python_vs_spec(
            json!({"max_instances": 3, "target_concurrency": 2, "scale_down_delay_secs": 2}),
        ),
    )
    .await?;
    c.wait_vs_running("vs-a", 1).await?;

    // Eight requests in flight at a time (target 2 per instance, max 3).
    // Every call must succeed (scaling up loses none); the pids that
    // answered are collected.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pids = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut load = Vec::new();
    for _ in 0..8 {
        let b = c.backend.clone();
        let (stop, pids) = (stop.clone(), pids.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let a = b.invoke("GET", "vs-a/slow?ms=300", &[], vec![]).await?;
                anyhow::ensure!(a.status == 200, "slow call: {} {}", a.status, a.body);
                let a = b.invoke("GET", "vs-a/hello", &[], vec![]).await?;
                anyhow::ensure!(a.status == 200, "hello: {} {}", a.status, a.body);
                let pid = a.json()["pid"].as_u64();
                anyhow::ensure!(pid.is_some(), "no pid in {}", a.body);
                pids.lock().unwrap().extend(pid);
            }
            Ok(())
        }));
    }
    c.wait_vs_running("vs-a", 3).await?;
    let scale = c.read(|s| {
        s.virtual_server(
            &TitleRegionId::new_unchecked(TR),
            &VsName::parse("vs-a").unwrap(),
        )
        .unwrap()
        .scale
    });
    assert_eq!(scale, 3, "never above max_instances");
    // Keep loading until three instances (three processes) have served.
    let served = wait_for("requests served by three instances", T, || async {
        let p = pids.lock().unwrap().clone();
        (p.len() >= 3 || load.iter().any(|l| l.is_finished())).then_some(p)
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in load {
        l.await??;
    }
    assert_eq!(served.len(), 3, "pids that answered: {served:?}");
    // Quiet: back to one instance after the scale-down delay, never zero.
    wait_for("one instance again", T, || async {
        let live: Vec<VsInstance> = c
            .vs_instances("vs-a")
            .into_iter()
            .filter(|i| i.status != VsInstanceStatus::Stopping)
            .collect();
        (live.len() == 1).then_some(())
    })
    .await?;
    let a = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(a.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_reclaims_instances_and_start_serves_again() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({}))).await?;
    c.wait_vs_running("vs-a", 1).await?;
    let pid = c
        .backend
        .invoke("GET", "vs-a/hello", &[], vec![])
        .await?
        .json()["pid"]
        .as_i64()
        .unwrap() as i32;

    let a = c
        .admin("POST", &admin_path("virtual_servers/vs-a/stop"), None)
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["desired"], "STOPPED");
    wait_for("every instance gone", T, || async {
        c.vs_instances("vs-a").is_empty().then_some(())
    })
    .await?;
    wait_for("the VS process gone", T, || async {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            .is_err()
            .then_some(())
    })
    .await?;
    let a = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(a.json()["message"].as_str().unwrap().contains("stopped"));

    // Start: the first call waits for the new instance instead of failing.
    let a = c
        .admin("POST", &admin_path("virtual_servers/vs-a/start"), None)
        .await?;
    assert_eq!(a.status, 200);
    let a = c.backend.invoke("GET", "vs-a/hello", &[], vec![]).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(a.json()["pid"].as_i64().unwrap() as i32, pid);

    // Delete removes it.
    let a = c
        .admin("DELETE", &admin_path("virtual_servers/vs-a"), None)
        .await?;
    assert_eq!(a.status, 204);
    assert_eq!(
        c.backend
            .invoke("GET", "vs-a/hello", &[], vec![])
            .await?
            .status,
        404
    );
    wait_for("instances of the deleted VS gone", T, || async {
        c.vs_instances("vs-a").is_empty().then_some(())
    })
    .await?;
    Ok(())
}
