//! SIGTERM to a real `respawn agent` with a live battle session: the agent
//! drains its host instead of killing the match, and exits once the
//! session is over.

use super::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The (only) host's view in `GET /admin/hosts`.
async fn host(b: &Backend, token: &str) -> Option<Value> {
    let a = b.admin(token, "GET", "/admin/hosts", None).await.ok()?;
    a.json()["hosts"].as_array()?.first().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_agent_instead_of_killing_its_match() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let quic_port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let key = "0123456789abcdef0123456789abcdef";
    let config = format!(
        r#"
[server]
quic_addr = "127.0.0.1:{quic_port}"
http_addr = "127.0.0.1:0"
[agent]
server_addr = "127.0.0.1:{quic_port}"
fleet = "fleet-term"
drain_deadline_secs = 600
[[title_regions]]
id = "tr-term"
title_id = "title-term"
secret_id = "sid-term"
secret_key = "{key}"
[[fleets]]
id = "fleet-term"
title_region = "tr-term"
launch_path = "{bin}"
args = ["sample-ds", "--session-secs", "600"]
processes_per_host = 2
placement_timeout_secs = 600
"#,
        bin = respawn_bin().display()
    );
    let cfg_path = dir.path().join("respawn.toml");
    std::fs::write(&cfg_path, config)?;
    let spawn = |role: &str| -> anyhow::Result<Child> {
        Ok(Command::new(respawn_bin())
            .arg(role)
            .arg("--config")
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?)
    };
    struct Kill(Vec<Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut server = spawn("server")?;
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let edge = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("HTTP edge: ").nth(1).map(|s| s.trim().to_string()))
        .ok_or_else(|| anyhow::anyhow!("server did not print its edge"))?;
    std::thread::spawn(move || for _ in lines {});
    let mut procs = Kill(vec![server, spawn("agent")?]);
    let token = std::fs::read_to_string(dir.path().join("admin-token"))?
        .trim()
        .to_string();
    let region = TitleRegion {
        id: TitleRegionId::new_unchecked("tr-term"),
        title_id: TitleId::new_unchecked("title-term"),
        name: String::new(),
        title_name: String::new(),
        secret_id: SecretId::new_unchecked("sid-term"),
        secret_key: key.into(),
    };
    let b = Backend::new(edge, &region);
    let pl = b.place("fleet-term", &["p1"]).await?;
    let v = b.wait_status(&pl, "FULFILLED", T).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE");
    let port = v["port"].as_u64().expect("port") as u16;

    // SIGTERM: the agent drains; the match goes on.
    let agent_pid = Pid::from_raw(procs.0[1].id() as i32);
    kill(agent_pid, Signal::SIGTERM)?;
    wait_for("host DRAINING", T, || async {
        host(&b, &token).await.filter(|h| h["state"] == "DRAINING")
    })
    .await?;
    // Its idle process is gone, the busy one is not.
    wait_for("idle process terminated", T, || async {
        let h = host(&b, &token).await?;
        (h["processes"]["READY"].as_u64() == Some(1) && h["processes"].as_object()?.len() == 1)
            .then_some(())
    })
    .await?;
    assert_eq!(
        b.describe(&pl).await?["battle_session_status"],
        "ACTIVE",
        "SIGTERM ended the match"
    );
    assert!(
        procs.0[1].try_wait()?.is_none(),
        "the agent exited with a live session"
    );
    let waiting = b.place("fleet-term", &[]).await?;

    // The match ends: the agent exits by itself, successfully; the host is DRAINED.
    GameClient::connect("127.0.0.1", port)
        .await?
        .send("END")
        .await?;
    let end = tokio::time::Instant::now() + T;
    let status = loop {
        if let Some(status) = procs.0[1].try_wait()? {
            break status;
        }
        anyhow::ensure!(tokio::time::Instant::now() < end, "the agent did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "agent exit status {status}");
    assert_eq!(
        b.describe(&pl).await?["battle_session_status"],
        "TERMINATED"
    );
    wait_for("host DRAINED", T, || async {
        host(&b, &token).await.filter(|h| h["state"] == "DRAINED")
    })
    .await?;
    let w = b.describe(&waiting).await?;
    assert_eq!(
        w["status"], "PENDING",
        "a draining host took a session: {w}"
    );
    Ok(())
}
