//! Membership misuse on real processes (issue 10's "two admin calls brick
//! a cluster"): on `respawn dev`, and on `respawn server` nodes with a
//! learner that dies. Every call answers at once, refused with a clear
//! error and nothing committed; the node still commits, still restarts
//! from its data directory, and `--force-new-cluster` repairs it.

use super::*;

/// The admin API of a node, with its token.
struct AdminApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminApi {
    fn of(dev: &Dev, dir: &std::path::Path) -> anyhow::Result<AdminApi> {
        Ok(AdminApi {
            base: dev.backend.base.clone(),
            token: std::fs::read_to_string(dir.join("admin-token"))?
                .trim()
                .to_string(),
            // Every membership call answers well within this.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
        })
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/admin/cluster/{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    async fn status(&self) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}/admin/cluster", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "status answered {}", r.status());
        Ok(r.json().await?)
    }

    /// Node ids and roles.
    async fn members(&self) -> anyhow::Result<Vec<(u64, String)>> {
        Ok(self.status().await?["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["node_id"].as_u64().unwrap(),
                    m["role"].as_str().unwrap().to_string(),
                )
            })
            .collect())
    }
}

fn free_port(udp: bool) -> u16 {
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
}

/// Runs `respawn` with `args` to completion.
fn respawn_ok(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(respawn_bin()).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "respawn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_misuse_cannot_brick_a_dev_node() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("dev");
    let mut dev = Dev::start(&data)?;
    dev.wait_ready().await?;
    let admin = AdminApi::of(&dev, &data)?;
    let me = admin.status().await?;
    let own_quic = me["members"][0]["quic_addr"].as_str().unwrap().to_string();
    let own_http = me["members"][0]["http_addr"].as_str().unwrap().to_string();
    let configuration = me["membership_index"].as_u64();
    assert!(configuration.is_some(), "{me}");
    let unchanged = |s: &Value| {
        s["members"].as_array().map(Vec::len) == Some(1)
            && s["change_in_progress"] == false
            && s["can_commit"] == true
    };

    // The first call of the brick: a learner that is not there. Refused,
    // nothing committed.
    let (s, v) = admin
        .post(
            "add_learner",
            json!({"node_id": 2, "quic_addr": "127.0.0.1:9", "http_addr": "127.0.0.1:9"}),
        )
        .await?;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("invalid_state")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("did not answer"),
        "{v}"
    );
    let after = admin.status().await?;
    assert!(unchanged(&after), "{after}");
    assert_eq!(
        after["membership_index"].as_u64(),
        configuration,
        "nothing committed"
    );
    // The second: promoting it. Not a member: refused at once.
    let (s, v) = admin.post("promote", json!({"node_id": 2})).await?;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    // Nonsense ids and addresses.
    for (body, status) in [
        (
            json!({"node_id": 9_223_372_036_854_775_806u64, "quic_addr": own_quic, "http_addr": own_http}),
            400,
        ),
        (
            json!({"node_id": 0, "quic_addr": "127.0.0.1:7", "http_addr": "127.0.0.1:8"}),
            400,
        ),
        (
            json!({"node_id": 5, "quic_addr": "0.0.0.0:7", "http_addr": "127.0.0.1:8"}),
            400,
        ),
        (
            json!({"node_id": 5, "quic_addr": "no-port", "http_addr": "127.0.0.1:8"}),
            400,
        ),
        (
            json!({"node_id": 5, "quic_addr": own_quic, "http_addr": "127.0.0.1:8"}),
            409,
        ),
        (
            json!({"node_id": 1, "quic_addr": "127.0.0.1:7", "http_addr": "127.0.0.1:8"}),
            409,
        ),
    ] {
        for call in ["join", "add_learner"] {
            let (s, v) = admin.post(call, body.clone()).await?;
            assert_eq!(s, status, "{call} {body}: {v}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
    }
    // Removing a node that never joined works (and does nothing).
    let (s, v) = admin.post("remove", json!({"node_id": 2})).await?;
    assert_eq!(s, 200, "{v}");
    assert!(unchanged(&v), "{v}");
    // The cluster still commits, and says so.
    fulfilled_placement(&dev.backend).await?;
    assert_eq!(
        reqwest::get(format!("{}/readyz", admin.base))
            .await?
            .status(),
        200
    );

    // A restart from the data directory: ready, committing.
    dev.kill9();
    let mut dev = Dev::start(&data)?;
    dev.wait_ready().await?;
    let pl = fulfilled_placement(&dev.backend).await?;

    // The offline repair runs on a healthy directory too, and keeps the state.
    dev.kill9();
    let dev = Dev::start_with(&data, &["--force-new-cluster"])?;
    dev.wait_ready().await?;
    let admin = AdminApi::of(&dev, &data)?;
    assert_eq!(admin.members().await?, vec![(1, "voter".to_string())]);
    let id = pl["placement_id"].as_str().unwrap();
    assert_eq!(dev.backend.describe(id).await?["status"], "FULFILLED");
    fulfilled_placement(&dev.backend).await?;
    Ok(())
}

/// Starts `respawn server` with `toml` as its configuration.
fn server(dir: &std::path::Path, name: &str, toml: &str) -> anyhow::Result<Child> {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, toml)?;
    Ok(Command::new(respawn_bin())
        .args(["server", "--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(dir.join(name))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Kills its processes when dropped (a failed assertion leaves none behind).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_that_dies_is_not_promoted_and_is_removed() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    respawn_ok(&["ctl", "pki", "init", "--dir", pki_s])?;
    for n in ["1", "2", "3"] {
        respawn_ok(&["ctl", "pki", "issue", "--dir", pki_s, "--node", n])?;
    }
    let token = "blackbox-admin-token-0123456789";
    let ports: Vec<(u16, u16)> = (0..2)
        .map(|_| (free_port(true), free_port(false)))
        .collect();
    let region =
        "[[title_regions]]\nid = \"tr-m\"\ntitle_id = \"title-m\"\nsecret_id = \"sid-m\"\n\
                  secret_key = \"0123456789abcdef0123456789abcdef\"\n";
    let cfg = |i: usize, bootstrap: &str| {
        format!(
            "[server]\nnode_id = {}\nquic_addr = \"127.0.0.1:{}\"\nhttp_addr = \"127.0.0.1:{}\"\n\
             pki_dir = \"{pki_s}/node-{}\"\nadmin_token = \"{token}\"\n{bootstrap}\n{region}",
            i + 1,
            ports[i].0,
            ports[i].1,
            i + 1
        )
    };
    let mut procs = Procs(vec![server(dir.path(), "n1", &cfg(0, ""))?]);
    // Node 2 never joins by itself: its join URL leads nowhere.
    procs.0.push(server(
        dir.path(),
        "n2",
        &cfg(1, "bootstrap = \"join\"\njoin_url = \"http://127.0.0.1:9\""),
    )?);
    let edge = |i: usize| format!("http://127.0.0.1:{}", ports[i].1);
    let admin = AdminApi {
        base: edge(0),
        token: token.into(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?,
    };
    let backend = Backend::new(
        edge(0),
        &TitleRegion {
            id: TitleRegionId::new_unchecked("tr-m"),
            title_id: TitleId::new_unchecked("title-m"),
            name: String::new(),
            title_name: String::new(),
            secret_id: SecretId::new_unchecked("sid-m"),
            secret_key: "0123456789abcdef0123456789abcdef".into(),
        },
    );
    let commits = || async {
        backend
            .ok("/dsm/request_battle_session_id", json!({}))
            .await
            .map(|_| ())
    };
    for i in 0..2 {
        wait_for("the servers to serve", T, || async {
            let r = reqwest::get(format!("{}/healthz", edge(i))).await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await?;
    }
    wait_for("node 1 ready", T, || async {
        let r = reqwest::get(format!("{}/readyz", edge(0))).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await?;
    let spec = |id: u64| {
        json!({"node_id": id, "quic_addr": format!("127.0.0.1:{}", ports[1].0),
               "http_addr": format!("127.0.0.1:{}", ports[1].1)})
    };
    // Who it claims to be must be who it is.
    let (s, v) = admin.post("add_learner", spec(3)).await?;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("node-2"), "{v}");
    let (s, v) = admin.post("add_learner", spec(2)).await?;
    assert_eq!(s, 200, "{v}");
    assert!(admin.members().await?.contains(&(2, "learner".into())));
    // The learner dies; promoting it now is refused at once, nothing changes.
    let mut n2 = procs.0.remove(1);
    let _ = n2.kill();
    n2.wait()?;
    let (s, v) = admin.post("promote", json!({"node_id": 2})).await?;
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("invalid_state")),
        "{v}"
    );
    assert!(admin.members().await?.contains(&(2, "learner".into())));
    commits().await?;
    // And it can be removed.
    let (s, v) = admin.post("remove", json!({"node_id": 2})).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(admin.members().await?, vec![(1, "voter".to_string())]);
    commits().await?;

    // Node 1 restarts from its data directory and commits.
    let mut n1 = procs.0.remove(0);
    let _ = n1.kill();
    n1.wait()?;
    procs.0.push(server(dir.path(), "n1", &cfg(0, ""))?);
    wait_for("node 1 ready again", T, || async {
        let r = reqwest::get(format!("{}/readyz", edge(0))).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await?;
    commits().await?;
    Ok(())
}
