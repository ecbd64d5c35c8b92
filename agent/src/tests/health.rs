//! Health checks: hung and sick processes are terminated as unhealthy.

use super::*;

#[tokio::test]
async fn a_hung_process_is_terminated_as_unhealthy_and_replaced() {
    // A long kill grace: the process must leave because it got OnProcessTerminate.
    let h = start(fleet(sample_runtime(1, &[]), 250), Duration::from_secs(120)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    // It answers health checks while well (a process that did not would be
    // terminated by the fourth).
    h.wait_state("a few health checks", |reg| {
        reg.procs
            .get(&id)
            .and_then(|p| p.health.as_ref())
            .is_some_and(|t| t.sent() >= 5)
            || !reg.procs.contains_key(&id)
    })
    .await;
    assert!(
        h.agent
            .shared
            .reg()
            .procs
            .get(&id)
            .is_some_and(|p| !p.terminating),
        "a healthy process was terminated"
    );
    assert_eq!(Client::connect(port).await.say("HANG").await, "OK");
    assert_eq!(h.wait_exited(&id).await, ExitReason::Unhealthy);
    let (next, _) = h.wait_ready(2).await.remove(1);
    assert_ne!(next, id);
    // The DS saw OnProcessTerminate.
    let stdout = h
        .dir
        .path()
        .join("data/logs")
        .join(id.as_str())
        .join("stdout.log");
    wait_file_contains(&stdout, "process terminate requested").await;
}

#[tokio::test]
async fn a_sick_process_is_terminated_as_unhealthy() {
    let h = start(fleet(sample_runtime(1, &[]), 250), Duration::from_secs(120)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    assert_eq!(Client::connect(port).await.say("SICK").await, "OK");
    assert_eq!(h.wait_exited(&id).await, ExitReason::Unhealthy);
}
