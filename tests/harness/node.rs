//! One server node and one agent in this process running the real sample
//! DS, a game client of that DS, and the Python sample virtual server.

use crate::backend::{Answer, Backend};
use crate::support::{init_logs, respawn_bin, wait_for};
use anyhow::{bail, Context};
use respawn::{AgentNode, ServerNode};
use respawn_config::{Config, DEV_FLEET, DEV_TITLE_REGION};
use respawn_state::ClusterState;
use respawn_types::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// The node's `[retention]` section.
    pub retention: respawn_config::RetentionSection,
    /// Edits the dev fleet after the fields above are set (another DS, mode…).
    pub fleet: Option<fn(&mut respawn_config::FleetSpec)>,
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
            retention: Default::default(),
            fleet: None,
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
        cfg.retention = o.retention.clone();
        let spec = &mut cfg.fleets[0];
        let f = &mut spec.definition;
        f.processes_per_host = o.processes;
        f.health_check_interval_secs = o.health_interval_secs;
        f.activation_timeout_secs = o.activation_timeout_secs;
        f.placement_timeout_secs = o.placement_timeout_secs;
        f.process_ending_grace_secs = o.ending_grace_secs;
        if let Some(edit) = o.fleet {
            edit(spec);
        }
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
                .map(|r| &**r)
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
        self.read(|s| s.processes.get(id).map(|r| (**r).clone()))
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

/// The Python sample forking DS (`examples/python-ds/forking_ds.py`).
pub fn python_forking_ds_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-ds/forking_ds.py")
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
