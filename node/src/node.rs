//! Assembly of a server node and of an agent from a [`Config`].

use crate::agent_links::{self, AgentLinks};
use crate::bootstrap::{bootstrap_config, random_hex};
use crate::cluster::Cluster;
use crate::edge::{self, Edge};
use crate::error::NodeError;
use crate::server::inbound::NodeHandler;
use crate::server::{leadership, watchdog, ServerCtx};
use crate::vs_hub::{self, LoadBoard, VsHub};
use respawn_config::{Bootstrap, Config};
use respawn_consensus::{Consensus, NodeInfo, RaftSettings, TransportNetwork};
use respawn_net::transport::{QuicTransport, SharedTransport};
use respawn_net::{Endpoint, Identity};
use respawn_types::backoff::capped_exponential;
use respawn_types::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

mod crash;

/// A running server node: Raft member, actors (while it leads), QUIC
/// listener for agents and other nodes, HTTP edge.
pub struct ServerNode {
    pub consensus: Consensus,
    pub cluster: Cluster,
    pub links: Arc<AgentLinks>,
    /// Answers other nodes; a test transport registers it.
    pub handler: Arc<NodeHandler>,
    /// Where the HTTP edge listens (the real port if 0 was asked for).
    pub http_addr: SocketAddr,
    /// Where the QUIC listener listens.
    pub quic_addr: SocketAddr,
    /// Bearer token of the admin API.
    pub admin_token: String,
    endpoint: Endpoint,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Runs the actors while this node leads; stopped first on shutdown.
    leader_loop: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

/// The admin token: configured, or generated once into `<data_dir>/admin-token`.
fn admin_token(cfg: &Config) -> Result<String, NodeError> {
    if let Some(t) = &cfg.server.admin_token {
        return Ok(t.clone());
    }
    let path = cfg.data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if t.trim().len() >= 16 {
            return Ok(t.trim().to_string());
        }
    }
    let t = random_hex(24);
    let io = |e: std::io::Error| NodeError::Invalid(format!("writing {}: {e}", path.display()));
    std::fs::create_dir_all(&cfg.data_dir).map_err(io)?;
    std::fs::write(&path, &t).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(t)
}

impl ServerNode {
    /// Starts a node whose peers are reached over QUIC.
    pub async fn start(cfg: &Config, identity: &Identity) -> Result<ServerNode, NodeError> {
        Self::start_with(cfg, identity, None).await
    }

    /// Starts a node. `transport` replaces QUIC between nodes (tests pass an
    /// in-memory router that can partition, delay and drop).
    pub async fn start_with(
        cfg: &Config,
        identity: &Identity,
        transport: Option<SharedTransport>,
    ) -> Result<ServerNode, NodeError> {
        let node_id = cfg.server.node_id;
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
        let transport: SharedTransport = match transport {
            Some(t) => t,
            None => node_transport(node_id, identity)?,
        };
        let settings = RaftSettings {
            heartbeat_interval_ms: cfg.server.heartbeat_ms,
            election_timeout_min_ms: cfg.server.election_timeout_ms,
            election_timeout_max_ms: cfg.server.election_timeout_max_ms(),
            snapshot_policy: respawn_consensus::SnapshotPolicy::LogsSinceLast(
                cfg.server.snapshot_every,
            ),
            // Keep about one snapshot interval of log for followers that lag a little.
            snapshot_trigger: respawn_consensus::SnapshotTrigger {
                commands: cfg.server.snapshot_every_commands,
                log_bytes: cfg.server.snapshot_every_log_bytes,
                ..Default::default()
            },
            max_in_snapshot_log_to_keep: cfg.server.snapshot_every.min(1_000),
            ..RaftSettings::default()
        };
        let me = NodeInfo {
            raft_addr: cfg
                .server
                .advertise_quic
                .clone()
                .unwrap_or_else(|| quic_addr.to_string()),
            http_addr: cfg
                .server
                .advertise_http
                .clone()
                .unwrap_or_else(|| http_addr.to_string()),
        };
        if cfg.server.force_new_cluster {
            force_new_cluster(&cfg.data_dir.join("raft"), node_id, &me)?;
        }
        let consensus = Consensus::open(
            node_id,
            &cfg.data_dir.join("raft"),
            settings,
            TransportNetwork::new(transport.clone()),
        )
        .await?;
        let links = Arc::new(AgentLinks::default());
        let site = respawn_actors::Site {
            region_type: cfg.server.region_type.clone(),
            backend_api_domain: cfg
                .server
                .backend_api_domain
                .clone()
                .or_else(|| cfg.server.advertise_http.clone())
                .unwrap_or_else(|| http_addr.to_string()),
            cloud_provider: "respawn".into(),
            title_logos: cfg
                .title_regions
                .iter()
                .filter(|t| !t.title_logo.is_empty())
                .map(|t| {
                    (
                        TitleRegionId::new_unchecked(t.id.clone()),
                        t.title_logo.clone(),
                    )
                })
                .collect(),
        };
        let vs = Arc::new(VsHub {
            proxy: respawn_proxy::Proxy::new(),
            access_logs: respawn_proxy::AccessLogStore::open(cfg.data_dir.join("access-logs"))
                .map_err(|e| NodeError::Invalid(format!("access logs: {e}")))?,
            load: Arc::new(LoadBoard::default()),
            site,
        });
        let cluster = Cluster {
            consensus: consensus.clone(),
            transport,
        };
        let ctx = ServerCtx {
            cluster: cluster.clone(),
            links: links.clone(),
            vs,
        };
        let handler = Arc::new(NodeHandler {
            cluster: cluster.clone(),
            links: links.clone(),
            load: ctx.vs.load.clone(),
        });
        let accept = tokio::spawn(agent_links::accept_loop(
            endpoint.clone(),
            cluster.clone(),
            links.clone(),
            handler.clone(),
        ));

        let admin_token = admin_token(cfg)?;
        let mut tasks = vec![accept];
        match cfg.server.bootstrap {
            Bootstrap::Single => {
                let view = consensus.membership_now().await?;
                if view.nodes.is_empty() || (view.voters == [node_id].into() && !view.joint) {
                    consensus.initialize_single_node(me.clone()).await?;
                    consensus.wait_for_leader(Duration::from_secs(30)).await?;
                    bootstrap_config(&cluster, cfg).await?;
                } else {
                    // Other members were added since: whether this node can
                    // commit depends on them. Start anyway (status, repair);
                    // the configuration is applied when it leads.
                    tracing::warn!(
                        voters = ?view.voters,
                        joint = view.joint,
                        "this node is no longer a cluster of one; starting without waiting for a quorum"
                    );
                }
            }
            Bootstrap::Members => {
                let members: BTreeMap<NodeId, NodeInfo> = cfg
                    .server
                    .members
                    .iter()
                    .map(|m| {
                        (
                            m.node_id,
                            NodeInfo {
                                raft_addr: m.quic.clone(),
                                http_addr: m.http.clone(),
                            },
                        )
                    })
                    .collect();
                // The lowest id initialises; the others wait to be contacted.
                if members.keys().next() == Some(&node_id) {
                    consensus.initialize(members).await?;
                }
            }
            Bootstrap::Join => {
                let url = cfg.server.join_url.clone().unwrap_or_default();
                tasks.push(tokio::spawn(join_cluster(
                    consensus.clone(),
                    url,
                    admin_token.clone(),
                    node_id,
                    me.clone(),
                )));
            }
        }

        // Probes fail during every election: the cutoff must be well past one.
        let cutoff = Duration::from_millis((cfg.server.election_timeout_ms * 10).max(5_000));
        tasks.insert(
            0,
            tokio::spawn(watchdog::quorum_watchdog(
                cluster.clone(),
                links.clone(),
                cutoff,
            )),
        );
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let leader_loop = tokio::spawn(leadership::run_leader_actors(
            ctx.clone(),
            Arc::new(cfg.clone()),
            shutdown_rx.clone(),
        ));
        tasks.push(tokio::spawn(crate::server::retention::prune_loop(
            cluster.clone(),
            cfg.retention.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(vs_hub::report_load(
            cluster.clone(),
            ctx.vs.load.clone(),
            edge::prometheus(),
            shutdown_rx,
        )));
        let edge = Edge {
            server: ctx,
            admin_token: Arc::new(admin_token.clone()),
            ticket_window: cfg.server.ticket_window_secs as i64,
            tickets: Arc::default(),
            configured: Arc::new(edge::Configured::from_config(cfg)),
            max_issued_ids: cfg.retention.max_issued_ids_per_title_region,
        };
        let app = edge::router(edge, cfg.server.max_body_bytes);
        tasks.push(tokio::spawn(edge::serve::serve(
            listener,
            app,
            cfg.server.edge.clone(),
        )));
        tracing::info!(%http_addr, %quic_addr, node_id, "server node started");
        Ok(ServerNode {
            consensus,
            cluster,
            links,
            handler,
            http_addr,
            quic_addr,
            admin_token,
            endpoint,
            shutdown,
            leader_loop,
            tasks,
        })
    }

    /// The title regions and their keys.
    pub fn title_regions(&self) -> Vec<TitleRegion> {
        self.consensus
            .read(|s| s.title_regions.values().cloned().collect())
    }

    /// Stops serving and closes the stores: the actors first (so nothing
    /// acts on behalf of a node that is going away), then the QUIC
    /// endpoint (every agent and peer link closed at once, so agents move
    /// on and peers stop forwarding here), every task and the links they
    /// hold, Raft, and the node transport. A leader then names a successor
    /// to the other voters ([`Cluster::announce_leaving`]), which shortens
    /// the election.
    ///
    /// Returns once the QUIC (UDP) sockets are closed and the HTTP
    /// listener dropped, so a new node can bind the same ports at once
    /// (about 200 ms: closed connections get that long to drain).
    pub async fn shutdown(self) {
        const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
        let node = self.consensus.node_id();
        let t0 = std::time::Instant::now();
        let ms = || t0.elapsed().as_millis() as u64;
        // Read while Raft still runs: whom to hand over to, if this node leads.
        let handover = self.cluster.handover();
        let _ = self.shutdown.send(true);
        let mut leader_loop = self.leader_loop;
        if tokio::time::timeout(Duration::from_secs(5), &mut leader_loop)
            .await
            .is_err()
        {
            leader_loop.abort();
            let _ = leader_loop.await;
        }
        tracing::debug!(node, ms = ms(), "shutdown: actors stopped");
        // Stop listening and close every connection of the endpoint: its
        // accept loop then ends, and the tasks serving links see them close.
        self.endpoint.close();
        for t in &self.tasks {
            t.abort();
        }
        // Wait for the aborted tasks to drop what they hold: the HTTP
        // listener, the endpoint clone of the accept loop and the tasks
        // serving each link (owned by the accept loop, aborted with it).
        // Each step is bounded: a stuck step is logged and skipped, so a
        // shutdown always returns.
        for t in self.tasks {
            if tokio::time::timeout(RELEASE_TIMEOUT, t).await.is_err() {
                tracing::warn!(node, "shutdown: an aborted task did not end in time");
            }
        }
        // The links registered for the actors' gateway.
        self.links.close_all();
        match tokio::time::timeout(RELEASE_TIMEOUT, self.consensus.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(node, error = %e, "consensus shutdown"),
            Err(_) => tracing::warn!(node, "shutdown: raft did not stop in time"),
        }
        tracing::debug!(node, ms = ms(), "shutdown: raft stopped");
        // No heartbeat follows: let the successor stand for election as
        // soon as the others will vote, rather than on its election timer.
        if let Some(handover) = handover {
            let told = self.cluster.announce_leaving(handover);
            if tokio::time::timeout(RELEASE_TIMEOUT, told).await.is_err() {
                tracing::warn!(node, "shutdown: successor not told in time");
            }
            tracing::debug!(node, ms = ms(), "shutdown: successor told");
        }
        // The transport's cached connections to the other nodes and its
        // socket, and the listener's socket (each closes its connections,
        // lets them drain briefly, then closes its socket).
        let (_, released) = tokio::join!(
            self.cluster.transport.close(RELEASE_TIMEOUT),
            self.endpoint.shutdown(RELEASE_TIMEOUT)
        );
        if let Err(e) = released {
            tracing::warn!(node, addr = %self.quic_addr, error = %e, "QUIC socket not released");
        }
        tracing::debug!(node, ms = ms(), "shutdown: QUIC socket released");
    }
}

/// `--force-new-cluster`: rewrites the stored membership so that this node
/// is its only member (`respawn_consensus::repair`), before Raft opens.
fn force_new_cluster(
    dir: &std::path::Path,
    node_id: NodeId,
    me: &NodeInfo,
) -> Result<(), NodeError> {
    match respawn_consensus::force_new_cluster(dir, node_id, me.clone())? {
        Some(f) => tracing::warn!(
            node_id,
            index = f.index,
            term = f.term,
            "force-new-cluster: this node is now the only member of its cluster; \
             wipe the other nodes' data directories before adding them again"
        ),
        None => tracing::info!("force-new-cluster: no log yet, nothing to repair"),
    }
    Ok(())
}

/// The node↔node transport of a production node: QUIC with this node's
/// identity. Nodes of one cluster are a LAN apart: a peer that does not
/// answer a handshake within 1 s is treated as down (a stale leader hint
/// then costs 1 s, not 5). Tests that wrap the transport (to cut links)
/// start from this one, so they run with the same settings.
pub fn node_transport(node_id: NodeId, identity: &Identity) -> Result<SharedTransport, NodeError> {
    Ok(QuicTransport::with_connect_timeout(
        node_id,
        Endpoint::client(identity)?,
        Duration::from_secs(1),
    ))
}

/// Asks a member's admin API to add this node, until it is a member.
async fn join_cluster(
    consensus: Consensus,
    url: String,
    token: String,
    node_id: NodeId,
    me: NodeInfo,
) {
    let client = reqwest::Client::new();
    let body = serde_json::json!({"node_id": node_id, "quic_addr": me.raft_addr, "http_addr": me.http_addr});
    let mut attempt = 0u32;
    while !consensus.membership().voters.contains(&node_id) {
        let res = client
            .post(format!("{}/admin/cluster/join", url.trim_end_matches('/')))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        match res {
            Ok(r) if r.status() == reqwest::StatusCode::OK => {
                tracing::info!(%url, "joined the cluster");
                return;
            }
            // Added, still catching up or committing: ask again.
            Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                tracing::info!(%url, "joining: in progress");
            }
            Ok(r) => tracing::warn!(%url, status = %r.status(), "join refused; retrying"),
            Err(e) => tracing::warn!(%url, error = %e, "join failed; retrying"),
        }
        attempt += 1;
        tokio::time::sleep(capped_exponential(
            Duration::from_millis(200),
            Duration::from_secs(5),
            attempt,
        ))
        .await;
    }
}
