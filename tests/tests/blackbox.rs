//! Black-box tests: the built `respawn` binary started as a user would
//! (`respawn dev`), driven over HTTP only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_tests::*;
use respawn_types::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A running `respawn dev` and what it printed about itself.
struct Dev {
    child: Child,
    backend: Backend,
}

impl Dev {
    /// Starts `respawn dev` on `dir` and reads the edge address and the
    /// credentials from its output, as a user would.
    fn start(dir: &std::path::Path) -> anyhow::Result<Dev> {
        let mut child = Command::new(respawn_bin())
            .args([
                "dev",
                "--http-addr",
                "127.0.0.1:0",
                "--quic-addr",
                "127.0.0.1:0",
                "--processes",
                "2",
            ])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut edge = None;
        let mut fields = std::collections::HashMap::new();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(addr) = line.split("HTTP edge: ").nth(1) {
                edge = Some(addr.trim().to_string());
            }
            for key in ["TitleId", "TitleRegionId", "SecretId", "SecretKey"] {
                if let Some(v) = line.trim().strip_prefix(&format!("{key}:")) {
                    fields.insert(key, v.trim().to_string());
                }
            }
            if fields.len() == 4 {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let region = TitleRegion {
            id: TitleRegionId::new_unchecked(fields["TitleRegionId"].clone()),
            title_id: TitleId::new_unchecked(fields["TitleId"].clone()),
            name: String::new(),
            title_name: String::new(),
            secret_id: SecretId::new_unchecked(fields["SecretId"].clone()),
            secret_key: fields["SecretKey"].clone(),
        };
        let edge =
            edge.ok_or_else(|| anyhow::anyhow!("respawn dev did not print its edge address"))?;
        Ok(Dev {
            child,
            backend: Backend::new(edge, &region),
        })
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.backend.base);
        wait_for("readyz", T, || async {
            let r = reqwest::get(&url).await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn fulfilled_placement(b: &Backend) -> anyhow::Result<Value> {
    let pl = b.place(respawn_config::DEV_FLEET, &["alice"]).await?;
    b.wait_status(&pl, "FULFILLED", T).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_places_a_battle_session_over_http() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    let v = fulfilled_placement(&dev.backend).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE");
    assert!(v["port"].as_u64().is_some());
    assert!(v["players"][0]["player_battle_session_id"]
        .as_str()
        .unwrap()
        .starts_with("pbs-"));
    // Health, metrics and the OpenAPI document.
    let metrics = reqwest::get(format!("{}/metrics", dev.backend.base))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("respawn_placements_finished_total"),
        "{metrics}"
    );
    let api: Value = reqwest::get(format!("{}/openapi.json", dev.backend.base))
        .await?
        .json()
        .await?;
    assert!(api["paths"]["/dsm/start_battle_session_placement"]["post"].is_object());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_state_and_placements_continue() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    let v = fulfilled_placement(&dev.backend).await?;
    let pl = v["placement_id"].as_str().unwrap().to_string();
    // A placement that cannot be served yet stays PENDING across the crash.
    dev.kill9();

    let dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    // Same credentials (keys are committed state), same placement, still FULFILLED.
    let after = dev.backend.describe(&pl).await?;
    assert_eq!(after["status"], "FULFILLED");
    assert_eq!(after["battle_session_id"], v["battle_session_id"]);
    // Its DS died with the process: reconciled, not forgotten.
    dev.backend.wait_status(&pl, "FULFILLED", T).await?;
    wait_for("old session reconciled", T, || async {
        (dev.backend.describe(&pl).await.ok()?["battle_session_status"] == "TERMINATED")
            .then_some(())
    })
    .await?;
    fulfilled_placement(&dev.backend).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    let b = &dev.backend;
    let ticket = || {
        respawn_types::ticket::server::sign_ticket(
            &b.secret_key,
            &b.title_id,
            &b.title_region_id,
            &b.secret_id,
            now_millis() as i64 / 1000,
        )
    };
    let start = "/dsm/start_battle_session_placement";
    let count = || async {
        b.ok(
            "/dsm/query_player_battle_sessions",
            json!({"player_id": "eve"}),
        )
        .await
        .unwrap()["player_battle_sessions"]
            .as_array()
            .unwrap()
            .len()
    };

    // Malformed JSON, wrong types, unknown fields, oversized body.
    let (s, v) = b.post_with(start, "{not json".into(), &ticket()).await?;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("malformed JSON"),
        "{v}"
    );
    let (s, v) = b
        .post(
            start,
            json!({"fleet_id": 7, "battle_session_id": "x", "max_players": 2}),
        )
        .await?;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("fleet_id"), "{v}");
    let (s, v) = b
        .post(
            start,
            json!({"fleet_id": "f", "battle_session_id": "x", "max_players": 2, "bogus": 1}),
        )
        .await?;
    assert_eq!(s, 400, "{v}");
    let big = "x".repeat(200 * 1024);
    let (s, v) = b
        .post_with(start, format!("{{\"fleet_id\":\"{big}\"}}"), &ticket())
        .await?;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"], "bad_request");

    // Unknown fleet, unissued / foreign battle session id, duplicate id.
    let bs = b.ok("/dsm/request_battle_session_id", json!({})).await?["battle_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = b.post(start, json!({"fleet_id": "fleet-nope", "battle_session_id": bs, "max_players": 2, "players": [{"player_id": "eve"}]})).await?;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": "bs-made-up", "max_players": 2})).await?;
    assert_eq!(s, 404, "{v}");
    let (s, v) = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": "bad id!", "max_players": 2})).await?;
    assert_eq!(s, 400, "{v}");
    let ok = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": bs, "max_players": 2})).await?;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let (s, v) = b.post(start, json!({"fleet_id": respawn_config::DEV_FLEET, "battle_session_id": bs, "max_players": 2})).await?;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")), "{v}");
    let (s, _) = b
        .post(
            "/dsm/describe_battle_session_placement",
            json!({"placement_id": "pl-unknown"}),
        )
        .await?;
    assert_eq!(s, 404);
    assert_eq!(count().await, 0, "rejected requests reserved nothing");

    // Authentication: bad, tampered, expired tickets; missing headers.
    let (s, v) = b
        .post_with("/dsm/request_battle_session_id", "{}".into(), "v1.1.00")
        .await?;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")), "{v}");
    let mut t = ticket();
    let last = t.pop().unwrap();
    t.push(if last == '0' { '1' } else { '0' });
    let (s, v) = b
        .post_with("/dsm/request_battle_session_id", "{}".into(), &t)
        .await?;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("signature"), "{v}");
    let old = respawn_types::ticket::server::sign_ticket(
        &b.secret_key,
        &b.title_id,
        &b.title_region_id,
        &b.secret_id,
        now_millis() as i64 / 1000 - 3600,
    );
    let (s, v) = b
        .post_with("/dsm/request_battle_session_id", "{}".into(), &old)
        .await?;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    let r = reqwest::Client::new()
        .post(format!("{}/dsm/request_battle_session_id", b.base))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await?;
    assert!(v["message"].as_str().unwrap().contains("TitleId"), "{v}");
    // A right key presented for another (unknown) region.
    let mut other = b.clone();
    other.title_region_id = "tr-other".into();
    let (s, _) = other
        .post("/dsm/request_battle_session_id", json!({}))
        .await?;
    assert_eq!(s, 401);

    // Unknown endpoint and wrong method get JSON too.
    let r = reqwest::get(format!("{}/dsm/start_battle_session_placement", b.base)).await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await?["error"], "bad_request");
    let r = reqwest::get(format!("{}/nope", b.base)).await?;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await?["error"], "not_found");
    // And the server still serves.
    fulfilled_placement(b).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_agent_as_two_processes() -> anyhow::Result<()> {
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
fleet = "fleet-two"
[[title_regions]]
id = "tr-two"
title_id = "title-two"
secret_id = "sid-two"
secret_key = "{key}"
[[fleets]]
id = "fleet-two"
title_region = "tr-two"
launch_path = "{bin}"
args = ["sample-ds"]
processes_per_host = 1
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
    let mut server = spawn("server")?;
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let edge = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("HTTP edge: ").nth(1).map(|s| s.trim().to_string()))
        .ok_or_else(|| anyhow::anyhow!("server did not print its edge"))?;
    std::thread::spawn(move || for _ in lines {});
    struct Kill(Vec<Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let agent = spawn("agent")?;
    let _guard = Kill(vec![server, agent]);
    let region = TitleRegion {
        id: TitleRegionId::new_unchecked("tr-two"),
        title_id: TitleId::new_unchecked("title-two"),
        name: String::new(),
        title_name: String::new(),
        secret_id: SecretId::new_unchecked("sid-two"),
        secret_key: key.into(),
    };
    let b = Backend::new(edge, &region);
    let pl = b.place("fleet-two", &["p1"]).await?;
    let v = b.wait_status(&pl, "FULFILLED", T).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE");
    Ok(())
}

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
    let pl = b.place("fleet-c", &["p"]).await?;
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
