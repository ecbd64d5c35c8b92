//! An agent draining its own host (what `respawn agent` does on SIGTERM),
//! with the real agent and sample DS processes: live sessions finish, no
//! new one comes, the agent is done once the host is DRAINED; past the
//! deadline the sessions still running are ended.

use super::*;
use respawn::AgentNode;
use respawn::DrainOutcome;
use respawn_config::DEV_HOST;

/// The dev host's state in `GET /admin/hosts`, with its view.
async fn host(c: &Cluster) -> Option<Value> {
    let a = c.admin("GET", "/admin/hosts", None).await.ok()?;
    a.json()["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host_id"] == DEV_HOST)
        .cloned()
}

async fn wait_host_state(c: &Cluster, state: &str) -> anyhow::Result<Value> {
    wait_for(&format!("host {state}"), T, || async {
        host(c).await.filter(|h| h["state"] == state)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_drain_lets_its_session_finish_then_the_agent_is_done() -> anyhow::Result<()> {
    let mut c = Cluster::start(Options {
        processes: 2,
        placement_timeout_secs: 600,
        ..Options::default()
    })
    .await?;
    let started = c.wait_ready(2).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let busy = c.process_of(&pl).expect("process");

    // What SIGTERM does to `respawn agent`.
    let agent = c.agent().agent.clone();
    let drain = tokio::spawn(async move { agent.drain_within(Duration::from_secs(600)).await });
    wait_host_state(&c, "DRAINING").await?;
    // The idle process is asked to terminate and goes; the busy one keeps
    // its session.
    wait_for("idle process gone", T, || async {
        c.read(|s| {
            s.processes
                .values()
                .map(|r| &**r)
                .any(|p| p.id != busy && p.status == ProcessStatus::Exited)
        })
        .then_some(())
    })
    .await?;
    let v = c.backend.describe(&pl).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE", "{v}");
    assert!(!drain.is_finished(), "the drain ended with a session live");
    // A new placement goes to no process of the draining host.
    let waiting = c.backend.place(DEV_FLEET, &[]).await?;

    // The session ends by itself: the host is DRAINED and the drain over.
    let port = c.process(&busy).and_then(|p| p.port).expect("port");
    GameClient::connect("127.0.0.1", port)
        .await?
        .send("END")
        .await?;
    let outcome = tokio::time::timeout(T, drain).await??;
    assert_eq!(outcome, DrainOutcome::Drained);
    let drained = wait_host_state(&c, "DRAINED").await?;
    assert_eq!(drained["sessions"], 0, "{drained}");
    assert_eq!(
        c.backend.describe(&pl).await?["battle_session_status"],
        "TERMINATED"
    );
    assert!(c.agent().agent.live_processes().is_empty());
    // The agent launched nothing while draining.
    let launched = c.read(|s| s.processes.len());
    assert_eq!(
        launched,
        started.len(),
        "a process was launched during the drain"
    );
    assert_eq!(c.backend.describe(&waiting).await?["status"], "PENDING");
    assert!(c.process_of(&waiting).is_none());

    // The agent stops; started again with the same data directory it ends
    // its own drain, and the waiting placement is served.
    if let Some(a) = c.agent.take() {
        a.shutdown().await;
    }
    let (_, agent_id) = respawn_net::ensure_dev_pki(&c.cfg.data_dir)?;
    c.agent = Some(AgentNode::start(&c.cfg, &agent_id).await?);
    c.backend.wait_status(&waiting, "FULFILLED", T).await?;
    wait_host_state(&c, "ACTIVE").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_drain_deadline_the_sessions_still_running_are_ended() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let busy = c.process_of(&pl).expect("process");
    // The sample DS keeps its session 600 s: far past this deadline.
    let outcome = c.agent().agent.drain_within(Duration::from_secs(1)).await;
    assert_eq!(outcome, DrainOutcome::DeadlinePassed { ended: 1 });
    assert!(c.agent().agent.live_processes().is_empty());
    wait_for("session ended", T, || async {
        let v = c.backend.describe(&pl).await.ok()?;
        (v["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;
    wait_for("process exited", T, || async {
        c.process(&busy)
            .filter(|p| p.status == ProcessStatus::Exited)
            .map(|_| ())
    })
    .await?;
    wait_host_state(&c, "DRAINED").await?;
    Ok(())
}
