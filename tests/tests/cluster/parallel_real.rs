//! Parallel mode end to end: the real agent runs the parallel Python DS
//! (`examples/python-ds/parallel_ds.py`, three sessions per process): three
//! sessions on one process, the fourth on another, and a slot freed by
//! TerminateBattleSession taken by the next session.

use super::*;
use serde_json::Value;

/// Sessions per process.
const N: u32 = 3;

fn script() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python-ds/parallel_ds.py")
        .display()
        .to_string()
}

async fn fulfilled_view(b: &Backend) -> anyhow::Result<Value> {
    let pl = b.place(FLEET, &[]).await?;
    b.wait_status(&pl, "FULFILLED", T).await
}

fn port_of(v: &Value) -> u64 {
    v["port"].as_u64().expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_ds_hosts_n_sessions_per_process_and_reuses_freed_slots() -> anyhow::Result<()> {
    let c = TestCluster::start(ClusterOptions {
        nodes: 1,
        parallel: Some(N),
        launch: Some(("python3".into(), vec![script()])),
        ..Default::default()
    })
    .await?;
    let leader = c.wait_leader().await?;
    let dir = tempfile::tempdir()?;
    let mut cfg = respawn_config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.agent.host_id = Some("par-host".into());
    cfg.agent.fleet = FLEET.into();
    cfg.agent.server_addr = c.quic_addrs()[(leader - 1) as usize].to_string();
    let agent = respawn::AgentNode::start(&cfg, &c.agent_identity("par-host")?).await?;
    // All four processes ready first, so that packing, not readiness,
    // decides where sessions go.
    wait_for("four ready processes", T, || async {
        let ready = c.read(leader, |s| {
            s.processes
                .values()
                .map(|r| &**r)
                .filter(|p| p.status == ProcessStatus::Ready)
                .count()
        });
        (ready == 4).then_some(())
    })
    .await?;
    let b = c.backend(leader);

    // N sessions on one process (packed), the next on another.
    let mut first = Vec::new();
    for _ in 0..N {
        first.push(fulfilled_view(&b).await?);
    }
    let port = port_of(&first[0]);
    for v in &first {
        assert_eq!(
            port_of(v),
            port,
            "sessions spread before the process was full: {v}"
        );
    }
    let next = fulfilled_view(&b).await?;
    assert_ne!(port_of(&next), port, "a process got more than {N} sessions");

    // The DS hosts the N sessions at once.
    let mut client = GameClient::connect("127.0.0.1", port as u16).await?;
    let hosted = client.say("SESSIONS").await?;
    for v in &first {
        let bs = v["battle_session_id"].as_str().expect("id");
        assert!(hosted.contains(bs), "{bs} not hosted: {hosted}");
    }
    // One ends (TerminateBattleSession): its slot is free and the next
    // session takes it, on the same process.
    let ended = first[0]["battle_session_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(client.say(&format!("END {ended}")).await?, "OK");
    let pl = first[0]["placement_id"]
        .as_str()
        .expect("placement")
        .to_string();
    wait_for("session terminated", T, || async {
        let v = b.describe(&pl).await.ok()?;
        (v["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;
    let reused = fulfilled_view(&b).await?;
    assert_eq!(
        port_of(&reused),
        port,
        "the freed slot was not reused: {reused}"
    );
    let hosted = client.say("SESSIONS").await?;
    assert!(!hosted.contains(&ended), "{hosted}");
    assert!(
        hosted.contains(reused["battle_session_id"].as_str().expect("id")),
        "{hosted}"
    );
    assert_eq!(hosted.split_whitespace().count(), N as usize, "{hosted}");
    agent.shutdown().await;
    Ok(())
}
