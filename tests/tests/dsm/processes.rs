//! DS processes that die, turn unhealthy or linger after ending.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ds_killed_mid_session() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(2).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let victim = c.process_of(&pl).expect("process");
    let pid = c.process(&victim).and_then(|p| p.pid).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    wait_for("session terminated", T, || async {
        let v = c.backend.describe(&pl).await.ok()?;
        (v["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;
    assert_eq!(c.process(&victim).unwrap().status, ProcessStatus::Exited);
    assert_eq!(c.backend.describe(&pl).await?["status"], "FULFILLED");
    // New placements never land on the dead process.
    for _ in 0..2 {
        let next = c.backend.place(DEV_FLEET, &[]).await?;
        c.backend.wait_status(&next, "FULFILLED", T).await?;
        assert_ne!(c.process_of(&next), Some(victim.clone()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_ds_is_terminated_and_replaced() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        health_interval_secs: 1,
        ..Options::default()
    })
    .await?;
    let p = c.wait_ready(1).await?[0].clone();
    let port = c.process(&p).and_then(|x| x.port).unwrap();
    let mut g = GameClient::connect("127.0.0.1", port).await?;
    g.say("HANG").await?;
    let exited = wait_for("hung process terminated", T, || async {
        let x = c.process(&p)?;
        (x.status == ProcessStatus::Exited).then_some(x)
    })
    .await?;
    assert_eq!(exited.exit, Some(ExitReason::Unhealthy));
    wait_for("replacement", T, || async {
        c.ready_processes().into_iter().find(|x| x != &p)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_lingering_after_ending_is_killed_after_the_grace() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        ending_grace_secs: 1,
        ds_args: vec!["--linger-secs".into(), "600".into()],
        ..Options::default()
    })
    .await?;
    let p = c.wait_ready(1).await?[0].clone();
    let pl = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let port = c.process(&p).and_then(|x| x.port).unwrap();
    GameClient::connect("127.0.0.1", port)
        .await?
        .send("END")
        .await?;
    wait_for("process ending", T, || async {
        (c.process(&p)?.status == ProcessStatus::Ending).then_some(())
    })
    .await?;
    // It called ProcessEnding but stays alive: the grace timer kills it.
    let gone = wait_for("lingering process killed", T, || async {
        let x = c.process(&p)?;
        (x.status == ProcessStatus::Exited).then_some(x)
    })
    .await?;
    assert_eq!(gone.exit, Some(ExitReason::EndingGraceExpired));
    Ok(())
}
