//! Three server processes: the leader killed, membership changed.

use super::*;

/// Runs `respawn` with `args` to completion; returns stdout.
fn respawn_cmd(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let out = Command::new(respawn_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "respawn {args:?}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_server_processes_survive_the_leader_and_change_membership() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    respawn_cmd(&["ctl", "pki", "init", "--dir", pki_s], &[])?;
    for n in ["1", "2", "3", "4"] {
        respawn_cmd(&["ctl", "pki", "issue", "--dir", pki_s, "--node", n], &[])?;
    }
    respawn_cmd(
        &["ctl", "pki", "issue", "--dir", pki_s, "--agent", "host-1"],
        &[],
    )?;
    let port = |udp: bool| -> u16 {
        if udp {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        }
    };
    let ports: Vec<(u16, u16)> = (0..4).map(|_| (port(true), port(false))).collect();
    let token = "blackbox-admin-token-0123456789";
    let members: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "{{ node_id = {}, quic = \"127.0.0.1:{}\", http = \"127.0.0.1:{}\" }}",
                i + 1,
                ports[i].0,
                ports[i].1
            )
        })
        .collect();
    let common = format!(
        r#"
[agent]
server_addr = "127.0.0.1:{q1}"
servers = ["127.0.0.1:{q2}", "127.0.0.1:{q3}"]
fleet = "fleet-c"
pki_dir = "{pki}/agent-host-1"
[[title_regions]]
id = "tr-c"
title_id = "title-c"
secret_id = "sid-c"
secret_key = "0123456789abcdef0123456789abcdef"
[[fleets]]
id = "fleet-c"
title_region = "tr-c"
launch_path = "{bin}"
args = ["sample-ds"]
processes_per_host = 3
"#,
        q1 = ports[0].0,
        q2 = ports[1].0,
        q3 = ports[2].0,
        pki = pki.display(),
        bin = respawn_bin().display()
    );
    let server_cfg = |i: usize, bootstrap: &str| {
        format!(
            "[server]\nnode_id = {}\nquic_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\npki_dir = \"{}/node-{}\"\nadmin_token = \"{token}\"\nheartbeat_ms = 100\nelection_timeout_ms = 500\n{bootstrap}\n{common}",
            i + 1, ports[i].0, ports[i].1, pki.display(), i + 1
        )
    };
    let mut children: Vec<Option<Child>> = Vec::new();
    let spawn = |role: &str, cfg: &str, data: &str| -> anyhow::Result<Child> {
        let path = dir.path().join(format!("{data}.toml"));
        std::fs::write(&path, cfg)?;
        Ok(Command::new(respawn_bin())
            .arg(role)
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join(data))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let members_line = format!(
        "bootstrap = \"members\"\nmembers = [{}]",
        members.join(", ")
    );
    for i in 0..3 {
        children.push(Some(spawn(
            "server",
            &server_cfg(i, &members_line),
            &format!("n{}", i + 1),
        )?));
    }
    children.push(Some(spawn(
        "agent",
        &server_cfg(0, &members_line),
        "agent",
    )?));
    struct Kill<'a>(&'a mut Vec<Option<Child>>);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            for c in self.0.iter_mut().flatten() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let guard = Kill(&mut children);
    let region = TitleRegion {
        id: TitleRegionId::new_unchecked("tr-c"),
        title_id: TitleId::new_unchecked("title-c"),
        name: String::new(),
        title_name: String::new(),
        secret_id: SecretId::new_unchecked("sid-c"),
        secret_key: "0123456789abcdef0123456789abcdef".into(),
    };
    let edge = |i: usize| format!("http://127.0.0.1:{}", ports[i].1);
    let status = |i: usize| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&respawn_cmd(
            &[
                "ctl",
                "cluster",
                "status",
                "--server",
                &edge(i),
                "--token",
                token,
            ],
            &[],
        )?)?)
    };
    let leader = wait_for("a leader", T, || async {
        status(1).ok()?["leader"].as_u64()
    })
    .await?;
    // Place through a node that is not the leader.
    let via = (0..3).find(|i| *i as u64 + 1 != leader).unwrap();
    let b = Backend::new(edge(via), &region);
    // The first leader applies the configured title region and fleet after
    // its election: until that commit reaches this node, its edge answers
    // 401 "unknown title region" / 404 "fleet not found" (a node is
    // /readyz-ready once it knows a leader, before that). A refused start
    // creates nothing, so it is tried again until accepted.
    let pl = wait_for(
        "a placement accepted once the configuration is applied",
        T,
        || async { b.place("fleet-c", &["p"]).await.ok() },
    )
    .await?;
    b.wait_status(&pl, "FULFILLED", T).await?;
    // Kill the leader; place through a survivor.
    let l = (leader - 1) as usize;
    if let Some(mut c) = guard.0[l].take() {
        c.kill()?;
        c.wait()?;
    }
    let survivor = (0..3).find(|i| *i != l).unwrap();
    let b = Backend::new(edge(survivor), &region);
    let new_leader = wait_for("a new leader", T, || async {
        status(survivor).ok()?["leader"]
            .as_u64()
            .filter(|n| *n != leader)
    })
    .await?;
    let pl2 = wait_for("a placement through a survivor", T, || async {
        b.place("fleet-c", &["q"]).await.ok()
    })
    .await?;
    b.wait_status(&pl2, "FULFILLED", T).await?;
    assert_eq!(
        b.describe(&pl).await?["status"],
        "FULFILLED",
        "committed state survived the leader"
    );
    // A fourth node joins through the admin API of a member.
    let join = format!("bootstrap = \"join\"\njoin_url = \"{}\"", edge(survivor));
    guard
        .0
        .push(Some(spawn("server", &server_cfg(3, &join), "n4")?));
    wait_for("node 4 to join as a voter", T, || async {
        let s = status(survivor).ok()?;
        s["members"]
            .as_array()?
            .iter()
            .any(|m| m["node_id"] == 4 && m["role"] == "voter")
            .then_some(())
    })
    .await?;
    // And is removed again with the CLI.
    respawn_cmd(
        &[
            "ctl",
            "cluster",
            "remove",
            "--server",
            &edge(survivor),
            "--token",
            token,
            "--node-id",
            "4",
        ],
        &[],
    )?;
    let s = status((new_leader - 1) as usize)?;
    assert!(
        !s["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["node_id"] == 4),
        "{s}"
    );
    // Without the token, membership changes are refused.
    let r = reqwest::Client::new()
        .post(format!("{}/admin/cluster/remove", edge(survivor)))
        .json(&json!({"node_id": 2}))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    Ok(())
}
