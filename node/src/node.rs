//! Assembly of a server node and of an agent from a [`Config`].

use crate::agent::{Agent, AgentConfig, AgentError};
use crate::edge::{self, Edge};
use crate::links::{self, AgentLinks};
use crate::uplink::{self, Uplink};
use futures::future::BoxFuture;
use rand::RngCore;
use respawn_actors::{Deps, ProposeError, Proposer, Runtime};
use respawn_config::Config;
use respawn_consensus::{
    Applied, Command, Consensus, ConsensusError, NodeInfo, RaftSettings, SingleNodeNetwork,
};
use respawn_net::{Endpoint, Identity};
use respawn_types::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why a node or agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("consensus: {0}")]
    Consensus(#[from] ConsensusError),
    #[error("network: {0}")]
    Net(#[from] respawn_net::NetError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    #[error("actors: {0}")]
    Actors(#[from] respawn_actors::ActorsError),
    #[error("{0}")]
    Invalid(String),
}

/// Adapts [`Consensus`] to the actors' [`Proposer`] port.
struct ConsensusProposer(Consensus);

impl Proposer for ConsensusProposer {
    fn propose(&self, command: Command) -> BoxFuture<'static, Result<Applied, ProposeError>> {
        let c = self.0.clone();
        Box::pin(async move {
            c.propose(command).await.map_err(|e| match e {
                ConsensusError::Rejected(r) => ProposeError::Rejected(r),
                other => ProposeError::Unavailable(other.to_string()),
            })
        })
    }
}

/// A running server node: Raft member, actors, QUIC listener, HTTP edge.
pub struct ServerNode {
    pub consensus: Consensus,
    pub links: Arc<AgentLinks>,
    /// Where the HTTP edge listens (the real port if 0 was asked for).
    pub http_addr: SocketAddr,
    /// Where the QUIC listener listens.
    pub quic_addr: SocketAddr,
    runtime: Runtime,
    endpoint: Endpoint,
    tasks: Vec<JoinHandle<()>>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

impl ServerNode {
    /// Opens (or creates) the node's state under `cfg.data_dir`, applies the
    /// configured title regions and fleets, rebuilds the actors from the
    /// committed state and starts serving.
    pub async fn start(cfg: &Config, identity: &Identity) -> Result<ServerNode, NodeError> {
        let raft_dir = cfg.data_dir.join("raft");
        let settings = RaftSettings {
            heartbeat_interval_ms: cfg.server.heartbeat_ms,
            election_timeout_min_ms: cfg.server.election_timeout_ms,
            election_timeout_max_ms: cfg.server.election_timeout_ms * 2,
            snapshot_policy: respawn_consensus::SnapshotPolicy::LogsSinceLast(
                cfg.server.snapshot_every,
            ),
            ..RaftSettings::default()
        };
        let consensus =
            Consensus::open(cfg.server.node_id, &raft_dir, settings, SingleNodeNetwork).await?;

        let endpoint = Endpoint::server(cfg.server.quic_addr, identity)?;
        let quic_addr = endpoint.local_addr()?;
        let listener = tokio::net::TcpListener::bind(cfg.server.http_addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: cfg.server.http_addr,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: cfg.server.http_addr,
            source,
        })?;

        consensus
            .initialize_single_node(NodeInfo {
                raft_addr: quic_addr.to_string(),
                http_addr: http_addr.to_string(),
            })
            .await?;
        consensus.wait_for_leader(Duration::from_secs(30)).await?;
        bootstrap(&consensus, cfg).await?;

        // Rebuild the actors from committed state, then feed them every
        // later event: go_live is atomic with apply, so none is lost.
        let links = Arc::new(AgentLinks::default());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = consensus.go_live(tx);
        let deps = Deps {
            state: consensus.state(),
            proposer: Arc::new(ConsensusProposer(consensus.clone())),
            gateway: links.clone(),
        };
        let runtime = respawn_actors::start_runtime(deps, rx).await?;
        links.set_node(runtime.node.clone());

        let ready = Arc::new(AtomicBool::new(false));
        let edge = Edge {
            consensus: consensus.clone(),
            ticket_window: cfg.server.ticket_window_secs as i64,
            ready: ready.clone(),
        };
        let app = edge::router(edge, cfg.server.max_body_bytes);
        let http = tokio::spawn(async move {
            if let Err(e) = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            {
                tracing::error!(error = %e, "HTTP edge stopped");
            }
        });
        let accept = tokio::spawn(links::accept_loop(
            endpoint.clone(),
            consensus.clone(),
            links.clone(),
        ));
        ready.store(true, Ordering::Release);
        tracing::info!(%http_addr, %quic_addr, node_id = cfg.server.node_id, "server node ready");
        Ok(ServerNode {
            consensus,
            links,
            http_addr,
            quic_addr,
            runtime,
            endpoint,
            tasks: vec![http, accept],
        })
    }

    /// The title regions and their keys.
    pub fn title_regions(&self) -> Vec<TitleRegion> {
        self.consensus
            .read(|s| s.title_regions.values().cloned().collect())
    }

    /// Stops serving and closes the stores.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.links.close_all();
        self.endpoint.close();
        self.runtime.stop();
        if let Err(e) = self.consensus.shutdown().await {
            tracing::warn!(error = %e, "consensus shutdown");
        }
    }
}

/// Creates the configured title regions (generating keys once) and creates
/// or updates the configured fleets.
async fn bootstrap(consensus: &Consensus, cfg: &Config) -> Result<(), NodeError> {
    for spec in &cfg.title_regions {
        let id = TitleRegionId::new_unchecked(spec.id.clone());
        let existing = consensus.read(|s| s.title_regions.get(&id).cloned());
        let region = TitleRegion {
            id: id.clone(),
            title_id: TitleId::new_unchecked(spec.title_id.clone()),
            name: if spec.name.is_empty() {
                spec.id.clone()
            } else {
                spec.name.clone()
            },
            title_name: spec.title_name.clone(),
            secret_id: match (&spec.secret_id, &existing) {
                (Some(s), _) => SecretId::new_unchecked(s.clone()),
                (None, Some(e)) => e.secret_id.clone(),
                (None, None) => SecretId::generate(),
            },
            secret_key: match (&spec.secret_key, &existing) {
                (Some(k), _) => k.clone(),
                (None, Some(e)) => e.secret_key.clone(),
                (None, None) => random_hex(32),
            },
        };
        if existing.as_ref() != Some(&region) {
            consensus.propose(Command::PutTitleRegion(region)).await?;
        }
    }
    for spec in &cfg.fleets {
        let fleet = spec.to_fleet();
        if consensus.read(|s| s.fleets.get(&fleet.id) != Some(&fleet)) {
            consensus.propose(Command::PutFleet(fleet)).await?;
        }
    }
    Ok(())
}

/// A running agent: the runtime that launches DS processes and its link.
pub struct AgentNode {
    pub agent: Agent,
    pub uplink: Arc<Uplink>,
    task: JoinHandle<()>,
}

impl AgentNode {
    /// Starts the agent and keeps it connected to `servers`.
    pub async fn start(
        cfg: &Config,
        identity: &Identity,
        servers: Vec<SocketAddr>,
    ) -> Result<AgentNode, NodeError> {
        let host = match &cfg.agent.host_id {
            Some(h) => h.clone(),
            None => identity.subject()?.name,
        };
        let host_id =
            HostId::parse(host).map_err(|e| NodeError::Invalid(format!("host id: {e}")))?;
        let fleet_id = FleetId::parse(cfg.agent.fleet.clone())
            .map_err(|e| NodeError::Invalid(format!("fleet: {e}")))?;
        let dir: PathBuf = cfg.data_dir.join("agent");
        let mut ac = AgentConfig::new(host_id, fleet_id, cfg.agent.public_ip.clone(), dir);
        ac.local_api_addr = cfg.agent.local_api_addr;
        ac.kill_grace = Duration::from_millis(cfg.agent.kill_grace_ms);
        let uplink = Arc::new(Uplink::default());
        let agent = Agent::start(ac, uplink.clone()).await?;
        let endpoint = Endpoint::client(identity)?;
        let task = tokio::spawn(uplink::run(
            endpoint,
            servers,
            agent.clone(),
            uplink.clone(),
        ));
        Ok(AgentNode {
            agent,
            uplink,
            task,
        })
    }

    /// Stops the link and the DS processes.
    pub async fn shutdown(self) {
        self.task.abort();
        self.uplink.cut("agent shutting down");
        self.agent.shutdown().await;
    }
}
