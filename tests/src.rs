//! Test harness for Respawn: an in-process server node and agent running
//! the real sample DS, a backend client for the HTTP edge that signs server
//! tickets, and waiting on conditions with deadlines (never fixed sleeps).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod history;

use anyhow::{bail, Context};
use respawn::{AgentNode, ServerNode};
use respawn_config::{Config, DEV_FLEET, DEV_TITLE_REGION};
use respawn_state::ClusterState;
use respawn_types::ticket::server::sign_ticket;
use respawn_types::*;
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `respawn` binary next to the running test (`target/<profile>/respawn`).
///
/// The tests using it are integration tests of the `respawn` package, so
/// cargo builds that binary, up to date, before it runs them.
pub fn respawn_bin() -> PathBuf {
    // target/<profile>/deps/<test-binary> → target/<profile>/respawn
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join("respawn");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test -p respawn`",
        bin.display()
    );
    bin
}

/// Polls `cond` until it returns `Some`, failing after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A game backend calling the edge with a title region's server key.
#[derive(Clone)]
pub struct Backend {
    pub base: String,
    pub title_id: String,
    pub title_region_id: String,
    pub secret_id: String,
    pub secret_key: String,
    client: reqwest::Client,
}

impl Backend {
    pub fn new(base: impl Into<String>, r: &TitleRegion) -> Backend {
        Backend {
            base: base.into(),
            title_id: r.title_id.to_string(),
            title_region_id: r.id.to_string(),
            secret_id: r.secret_id.to_string(),
            secret_key: r.secret_key.clone(),
            // No idle pooling: a server may close a connection after an
            // error answer (413 with the body unread), and a pooled client
            // would send its next request into the closed connection.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
        }
    }

    /// POSTs `body` to `path` with valid credentials; returns status and JSON.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.post_with(path, body.to_string(), &self.ticket()).await
    }

    /// A ServerTicket for now.
    pub fn ticket(&self) -> String {
        sign_ticket(
            &self.secret_key,
            &self.title_id,
            &self.title_region_id,
            &self.secret_id,
            now_millis() as i64 / 1000,
        )
    }

    /// POSTs a raw body with a given ticket.
    pub async fn post_with(
        &self,
        path: &str,
        body: String,
        ticket: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let res = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("TitleId", &self.title_id)
            .header("TitleRegionId", &self.title_region_id)
            .header("SecretId", &self.secret_id)
            .header("ServerTicket", ticket)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// POSTs and insists on 200.
    pub async fn ok(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, v) = self.post(path, body).await?;
        if status != 200 {
            bail!("{path} answered {status}: {v}");
        }
        Ok(v)
    }

    /// RequestBattleSessionID + StartBattleSessionPlacement; returns the placement id.
    pub async fn place(&self, fleet: &str, players: &[&str]) -> anyhow::Result<String> {
        let v = self.ok("/dsm/request_battle_session_id", json!({})).await?;
        let bs = v["battle_session_id"]
            .as_str()
            .context("battle_session_id")?
            .to_string();
        let players: Vec<Value> = players.iter().map(|p| json!({"player_id": p})).collect();
        let v = self
            .ok(
                "/dsm/start_battle_session_placement",
                json!({"fleet_id": fleet, "battle_session_id": bs, "max_players": 8, "players": players}),
            )
            .await?;
        Ok(v["placement"]["placement_id"]
            .as_str()
            .context("placement_id")?
            .to_string())
    }

    pub async fn describe(&self, placement: &str) -> anyhow::Result<Value> {
        Ok(self
            .ok(
                "/dsm/describe_battle_session_placement",
                json!({"placement_id": placement}),
            )
            .await?["placement"]
            .clone())
    }

    /// Waits until the placement reaches `status`; returns its view.
    pub async fn wait_status(
        &self,
        placement: &str,
        status: &str,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        wait_for(
            &format!("placement {placement} to be {status}"),
            deadline,
            || async {
                let v = self.describe(placement).await.ok()?;
                (v["status"] == status).then_some(v)
            },
        )
        .await
    }
}

/// Options for [`Cluster::start`].
#[derive(Clone, Debug)]
pub struct Options {
    pub processes: u32,
    pub session_secs: u64,
    pub health_interval_secs: u64,
    pub activation_timeout_secs: u64,
    pub placement_timeout_secs: u64,
    pub ending_grace_secs: u64,
    /// Extra arguments for the sample DS.
    pub ds_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            processes: 2,
            session_secs: 600,
            health_interval_secs: 1,
            activation_timeout_secs: 60,
            placement_timeout_secs: 60,
            ending_grace_secs: 120,
            ds_args: Vec::new(),
        }
    }
}

/// One server node and one agent in this process, running the real sample
/// DS (the `respawn sample-ds` subcommand) as child processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub cfg: Config,
    pub node: Option<ServerNode>,
    pub agent: Option<AgentNode>,
    pub backend: Backend,
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

impl Cluster {
    pub async fn start(o: Options) -> anyhow::Result<Cluster> {
        init_logs();
        let dir = tempfile::tempdir()?;
        let mut args = vec![
            "sample-ds".to_string(),
            "--session-secs".into(),
            o.session_secs.to_string(),
        ];
        args.extend(o.ds_args.iter().cloned());
        let mut cfg = Config::dev(&respawn_bin().display().to_string(), args);
        cfg.data_dir = dir.path().to_path_buf();
        cfg.server.http_addr = "127.0.0.1:0".parse()?;
        cfg.server.quic_addr = "127.0.0.1:0".parse()?;
        cfg.agent.kill_grace_ms = 1_000;
        let f = &mut cfg.fleets[0];
        f.processes_per_host = o.processes;
        f.health_check_interval_secs = o.health_interval_secs;
        f.activation_timeout_secs = o.activation_timeout_secs;
        f.placement_timeout_secs = o.placement_timeout_secs;
        f.process_ending_grace_secs = o.ending_grace_secs;
        cfg.validate()?;
        let mut c = Cluster {
            backend: Backend::new("http://unset", &dummy_region()),
            dir,
            cfg,
            node: None,
            agent: None,
        };
        c.boot().await?;
        Ok(c)
    }

    /// Starts the node and the agent on the current data dir.
    pub async fn boot(&mut self) -> anyhow::Result<()> {
        let (node_id, agent_id) = respawn_net::ensure_dev_pki(&self.cfg.data_dir)?;
        let node = ServerNode::start(&self.cfg, &node_id).await?;
        self.cfg.agent.server_addr = node.quic_addr.to_string();
        let agent = AgentNode::start(&self.cfg, &agent_id).await?;
        let region = node
            .title_regions()
            .into_iter()
            .find(|r| r.id.as_str() == DEV_TITLE_REGION)
            .context("dev region")?;
        self.backend = Backend::new(format!("http://{}", node.http_addr), &region);
        self.node = Some(node);
        self.agent = Some(agent);
        Ok(())
    }

    /// Stops node and agent (DS processes die with the agent), keeping the data dir.
    pub async fn halt(&mut self) {
        if let Some(a) = self.agent.take() {
            a.shutdown().await;
        }
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
    }

    pub fn node(&self) -> &ServerNode {
        self.node.as_ref().expect("node running")
    }

    pub fn agent(&self) -> &AgentNode {
        self.agent.as_ref().expect("agent running")
    }

    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        self.node().consensus.read(f)
    }

    /// Ids of the fleet's READY processes.
    pub fn ready_processes(&self) -> Vec<ProcessId> {
        self.read(|s| {
            s.processes
                .values()
                .filter(|p| p.status == ProcessStatus::Ready && p.fleet_id.as_str() == DEV_FLEET)
                .map(|p| p.id.clone())
                .collect()
        })
    }

    /// Waits until at least `n` processes are READY and returns them.
    pub async fn wait_ready(&self, n: usize) -> anyhow::Result<Vec<ProcessId>> {
        wait_for(
            &format!("{n} ready processes"),
            Duration::from_secs(30),
            || async {
                let r = self.ready_processes();
                (r.len() >= n).then_some(r)
            },
        )
        .await
    }

    pub fn process(&self, id: &ProcessId) -> Option<DsProcess> {
        self.read(|s| s.processes.get(id).cloned())
    }

    /// The process hosting a placement's battle session.
    pub fn process_of(&self, placement: &str) -> Option<ProcessId> {
        self.read(|s| {
            let pl = s.placements.get(&PlacementId::new_unchecked(placement))?;
            s.battle_sessions
                .get(&pl.battle_session_id)?
                .process_id
                .clone()
        })
    }
}

fn dummy_region() -> TitleRegion {
    TitleRegion {
        id: TitleRegionId::new_unchecked("x"),
        title_id: TitleId::new_unchecked("x"),
        name: String::new(),
        title_name: String::new(),
        secret_id: SecretId::new_unchecked("x"),
        secret_key: String::new(),
    }
}

/// A game client of the sample DS: one TCP connection speaking its line protocol.
pub struct GameClient {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl GameClient {
    pub async fn connect(ip: &str, port: u16) -> anyhow::Result<GameClient> {
        let s = tokio::net::TcpStream::connect((ip, port)).await?;
        let (r, w) = s.into_split();
        Ok(GameClient {
            reader: tokio::io::BufReader::new(r),
            writer: w,
        })
    }

    /// Sends one line and returns the reply line.
    pub async fn say(&mut self, line: &str) -> anyhow::Result<String> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut reply)).await??;
        Ok(reply.trim().to_string())
    }

    /// Sends one line without waiting for a reply.
    pub async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        Ok(())
    }
}

/// The Python sample virtual server (`examples/python-vs/vs.py`).
pub fn python_vs_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-vs/vs.py")
}

/// A VS spec running the Python sample, with `extra` fields merged in.
pub fn python_vs_spec(extra: Value) -> Value {
    let mut spec = json!({
        "source": {"process": {"command": "python3"}},
        "args": [python_vs_script().display().to_string()],
        "listen_port": 8080,
        "cpu_millicores": 1000,
        "memory_mb": 256,
    });
    if let (Some(m), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        m.extend(extra);
    }
    spec
}

/// An HTTP answer, status, headers and body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Backend {
    fn signed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let ticket = self.ticket();
        req.header("TitleId", &self.title_id)
            .header("TitleRegionId", &self.title_region_id)
            .header("SecretId", &self.secret_id)
            .header("ServerTicket", ticket)
    }

    /// Invokes `/virtualserver/invoke/{vs}{path}` as the game backend, with
    /// extra `headers`.
    pub async fn invoke(
        &self,
        method: &str,
        vs_and_path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}/virtualserver/invoke/{vs_and_path}", self.base);
        let mut req = self
            .client
            .request(method.parse()?, url)
            .timeout(Duration::from_secs(30))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(self.signed(req).send().await?).await
    }

    /// Invokes `/virtualserver/client/invoke/{vs}{path}` as a game client
    /// holding `player_ticket`.
    pub async fn invoke_as_client(
        &self,
        vs_and_path: &str,
        player_ticket: &str,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}/virtualserver/client/invoke/{vs_and_path}", self.base);
        let res = self
            .client
            .get(url)
            .header("TitleId", &self.title_id)
            .header("TitleRegionId", &self.title_region_id)
            .header("PlayerTicket", player_ticket)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        answer(res).await
    }

    /// Calls the admin API with the admin token.
    pub async fn admin(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .client
            .request(method.parse()?, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await?).await
    }
}

async fn answer(res: reqwest::Response) -> anyhow::Result<Answer> {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.text().await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

impl Cluster {
    /// Admin API call on this cluster's node.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let token = self.node().admin_token.clone();
        self.backend.admin(&token, method, path, body).await
    }

    /// Creates or updates a VS of the dev title region; insists on 200.
    pub async fn put_vs(&self, name: &str, spec: Value) -> anyhow::Result<Value> {
        let a = self
            .admin(
                "PUT",
                &format!("/admin/title_regions/{DEV_TITLE_REGION}/virtual_servers/{name}"),
                Some(spec),
            )
            .await?;
        if a.status != 200 {
            bail!("PUT virtual server {name}: {} {}", a.status, a.body);
        }
        Ok(a.json())
    }

    /// Instances of a VS of the dev title region, as replicated.
    pub fn vs_instances(&self, name: &str) -> Vec<VsInstance> {
        let tr = TitleRegionId::new_unchecked(DEV_TITLE_REGION);
        let name = VsName::parse(name).expect("vs name");
        self.read(|s| s.vs_instances_of(&tr, &name).cloned().collect())
    }

    /// Waits until `n` instances of the VS are RUNNING; returns them.
    pub async fn wait_vs_running(&self, name: &str, n: usize) -> anyhow::Result<Vec<VsInstance>> {
        wait_for(
            &format!("{n} running instances of {name}"),
            Duration::from_secs(60),
            || async {
                let running: Vec<VsInstance> = self
                    .vs_instances(name)
                    .into_iter()
                    .filter(|i| i.status == VsInstanceStatus::Running)
                    .collect();
                (running.len() >= n).then_some(running)
            },
        )
        .await
    }
}
