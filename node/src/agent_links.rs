//! The server side of agent links: the QUIC accept loop, the Hello that
//! registers a host, the translation of agent requests into Raft commands,
//! and the links ([`AgentLinks`]) the actors' gateway
//! (`server::gateway::ClusterGateway`) uses to reach agents.
//!
//! Agents are untrusted. An agent's host id is the common name of its
//! certificate (so one host cannot speak for another), every id it sends is
//! validated, and a request about a process is refused unless that process
//! runs on the agent's own host.

use crate::cluster::Cluster;
use crate::vs_hub::record_usage;
use crate::vs_routing::resolve_for_agent;
use respawn_actors::{GatewayError, NodeMsg};
use respawn_consensus::ConsensusError;
use respawn_net::transport::Handler;
use respawn_net::{Endpoint, Link, PeerKind};
use respawn_state::{Command, PlayerAction, Rejection};
use respawn_types::agent::*;
use respawn_types::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the server waits for an agent to answer a command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection has to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Live agent links of this node, by host.
#[derive(Default)]
pub struct AgentLinks {
    links: Mutex<HashMap<HostId, Link>>,
    node: Mutex<Option<ractor::ActorRef<NodeMsg>>>,
}

impl AgentLinks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<HostId, Link>> {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets the links wake the fleets' placement policy when an agent
    /// arrives (while this node runs the actors, i.e. leads).
    pub fn set_node(&self, node: ractor::ActorRef<NodeMsg>) {
        *self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(node);
    }

    /// Whether this node's actors are running (it leads and has rebuilt
    /// them from the state).
    pub fn actors_running(&self) -> bool {
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// The actors stopped (leadership lost).
    pub fn clear_node(&self) {
        *self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Sends a command to a host's agent over this node's link.
    pub async fn send(
        &self,
        host: &HostId,
        command: ServerToAgent,
    ) -> Result<AgentReply, GatewayError> {
        let link = self.map().get(host).cloned();
        let link = link.ok_or_else(|| GatewayError::NotConnected(host.clone()))?;
        link.request::<ServerToAgent, AgentReply>(&command, COMMAND_TIMEOUT)
            .await
            .map_err(|e| GatewayError::Link(host.clone(), e.to_string()))
    }

    /// Hosts with a live link.
    pub fn connected_hosts(&self) -> Vec<HostId> {
        self.map().keys().cloned().collect()
    }

    fn insert(&self, host: HostId, link: Link) {
        if let Some(old) = self.map().insert(host.clone(), link) {
            old.close("replaced by a newer connection from the same host");
        }
        metrics::gauge!("respawn_agent_links").set(self.map().len() as f64);
        let node = self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(node) = node {
            let _ = node.cast(NodeMsg::KickFleets);
        }
    }

    fn remove(&self, host: &HostId, link: &Link) {
        let mut map = self.map();
        if map.get(host).is_some_and(|l| l.id() == link.id()) {
            map.remove(host);
        }
        metrics::gauge!("respawn_agent_links").set(map.len() as f64);
    }

    /// Whether this node holds a link to the host's agent.
    pub fn is_connected(&self, host: &HostId) -> bool {
        self.map().contains_key(host)
    }

    /// Closes every link (shutdown, or this node lost the majority); the
    /// agents reconnect to another node.
    pub fn close_all(&self) {
        for (_, l) in self.map().drain() {
            l.close("this server node is leaving or cut off; connect to another");
        }
    }
}

/// Accepts QUIC connections until the endpoint closes: agents are served
/// here, other server nodes by `nodes` (the node transport's handler).
///
/// Every link's task belongs to this loop: when it ends (the endpoint
/// closed) it stops them and waits for them, and when it is cancelled
/// (aborted on shutdown) they are aborted with it. So no task outlives it
/// holding a link (a live link keeps the endpoint's UDP socket bound).
pub async fn accept_loop(
    endpoint: Endpoint,
    cluster: Cluster,
    links: Arc<AgentLinks>,
    nodes: Arc<dyn Handler>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            // Reap the tasks of links that ended.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Some(incoming) = incoming else { break };
        match incoming {
            Ok(link) if link.peer().kind == PeerKind::Node => {
                let nodes = nodes.clone();
                conns.spawn(async move {
                    let peer = link.peer().name.clone();
                    if let Err(e) = respawn_net::transport::serve_node_link(link, nodes).await {
                        tracing::debug!(%peer, error = %e, "node link ended");
                    }
                });
            }
            Ok(link) => {
                conns.spawn(serve_link(link, cluster.clone(), links.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "refused a QUIC connection"),
        }
    }
    drop(endpoint);
    conns.shutdown().await;
}

/// What a DS may know of one of its battle sessions: 404 for an unknown
/// one, 403 for another process's.
fn describe_session(
    s: &respawn_state::ClusterState,
    process_id: &ProcessId,
    bs: &BattleSessionId,
) -> Result<ServerReply, WireError> {
    use respawn_types::sdk::{BattleSessionDescription, PlayerDescription};
    let b = s.battle_sessions.get(bs).ok_or_else(|| {
        WireError::new(
            ErrorCode::NotFound,
            format!("battle session {bs} not found"),
        )
    })?;
    if b.process_id.as_ref() != Some(process_id) {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!("battle session {bs} is not held by process {process_id}"),
        ));
    }
    let placement = s.placements.get(&b.placement_id);
    let players = placement
        .map(|p| p.player_battle_sessions.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|id| s.player_battle_sessions.get(id).map(|r| &**r))
        .map(|p| PlayerDescription {
            player_id: p.player_id.clone(),
            player_battle_session_id: p.id.clone(),
            player_data: p.player_data.clone(),
            team: p.team.clone(),
            status: p.status,
        })
        .collect();
    let description = BattleSessionDescription {
        battle_session_id: b.id.clone(),
        placement_id: b.placement_id.clone(),
        title_region_id: b.title_region_id.clone(),
        fleet_id: b.fleet_id.clone(),
        status: b.status,
        max_players: b.max_players,
        properties: b.properties.clone(),
        players,
        ip: b.ip.clone(),
        port: b.port,
        termination_reason: b.termination_reason.clone(),
    };
    serde_json::to_string(&description)
        .map(|description_json| ServerReply::BattleSession { description_json })
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))
}

/// A rejection in the agent protocol's terms.
pub fn rejection(r: Rejection) -> WireError {
    let code = match r {
        Rejection::NotFound { .. } => ErrorCode::NotFound,
        Rejection::Conflict(_) => ErrorCode::Conflict,
        Rejection::InvalidState(_) => ErrorCode::InvalidState,
        Rejection::BadRequest(_) => ErrorCode::BadRequest,
        Rejection::Expired { .. } => ErrorCode::Expired,
        Rejection::TooMany(_) => ErrorCode::TooManyRequests,
        Rejection::Forbidden(_) => ErrorCode::Forbidden,
    };
    WireError::new(code, r.to_string())
}

/// A cluster error in the agent protocol's terms.
pub fn wire_error(e: ConsensusError) -> WireError {
    match e {
        ConsensusError::Rejected(r) => rejection(r),
        ConsensusError::NotLeader { .. } => WireError::new(ErrorCode::NotLeader, e.to_string()),
        other => WireError::new(ErrorCode::Unavailable, other.to_string()),
    }
}

fn bad(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, msg)
}

fn check_id(kind: &'static str, s: &str) -> Result<(), WireError> {
    validate_id(kind, s).map_err(|e| bad(e.to_string()))
}

async fn serve_link(link: Link, cluster: Cluster, links: Arc<AgentLinks>) {
    let peer = link.peer().clone();
    let host = match hello(&link, &cluster).await {
        Ok(h) => h,
        Err(reason) => {
            tracing::warn!(peer = %peer.name, addr = %peer.addr, %reason, "agent hello failed");
            link.close(&reason);
            return;
        }
    };
    tracing::info!(host = %host, addr = %peer.addr, "agent registered");
    links.insert(host.clone(), link.clone());
    let handler_host = host.clone();
    let handler_cluster = cluster.clone();
    let result = respawn_net::serve_requests(link.clone(), move |req: AgentToServer| {
        let cluster = handler_cluster.clone();
        let host = handler_host.clone();
        async move {
            match handle(&cluster, &host, req).await {
                Ok(reply) => reply,
                Err(e) => ServerReply::Err(e),
            }
        }
    })
    .await;
    links.remove(&host, &link);
    match result {
        Ok(()) => tracing::info!(host = %host, "agent link closed"),
        Err(e) => tracing::warn!(host = %host, error = %e, "agent link failed"),
    }
}

/// Reads and answers the Hello; returns the registered host.
async fn hello(link: &Link, cluster: &Cluster) -> Result<HostId, String> {
    let (req, responder) =
        tokio::time::timeout(HELLO_TIMEOUT, link.accept_request::<AgentToServer>())
            .await
            .map_err(|_| "no Hello within 10 s".to_string())?
            .map_err(|e| e.to_string())?;
    match register(link, cluster, req).await {
        Ok((host, fleet)) => {
            responder
                .respond(&ServerReply::Welcome { fleet })
                .await
                .map_err(|e| e.to_string())?;
            Ok(host)
        }
        Err(e) => {
            let msg = e.message.clone();
            let _ = responder.respond(&ServerReply::Err(e)).await;
            Err(msg)
        }
    }
}

async fn register(
    link: &Link,
    cluster: &Cluster,
    req: AgentToServer,
) -> Result<(HostId, Fleet), WireError> {
    let AgentToServer::Hello(h) = req else {
        return Err(bad("the first message on a link must be Hello"));
    };
    if h.protocol_version != PROTOCOL_VERSION {
        return Err(bad(format!(
            "protocol version {} is not supported (this server speaks {PROTOCOL_VERSION})",
            h.protocol_version
        )));
    }
    check_id("host id", h.host_id.as_str())?;
    check_id("fleet id", h.fleet_id.as_str())?;
    if h.host_id.as_str() != link.peer().name {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "host id {} does not match the certificate's name {}",
                h.host_id,
                link.peer().name
            ),
        ));
    }
    if h.ip.is_empty() || h.ip.len() > 253 {
        return Err(bad("ip must be a non-empty address or host name"));
    }
    if h.live_processes.len() > 4096 {
        return Err(bad("too many live processes"));
    }
    for lp in &h.live_processes {
        check_id("process id", lp.process_id.as_str())?;
    }
    if h.live_vs.len() > 4096 {
        return Err(bad("too many live virtual server instances"));
    }
    for id in &h.live_vs {
        check_id("instance id", id.as_str())?;
    }
    let host = Host {
        id: h.host_id.clone(),
        fleet_id: h.fleet_id.clone(),
        ip: h.ip,
        registered_at: 0,
    };
    cluster
        .propose(Command::RegisterHost {
            host,
            live: h.live_processes,
            live_vs: h.live_vs,
        })
        .await
        .map_err(wire_error)?;
    cluster
        .propose(Command::HostLinked {
            host_id: h.host_id.clone(),
            node_id: cluster.node_id(),
        })
        .await
        .map_err(wire_error)?;
    let fleet = cluster
        .consensus
        .read(|s| s.fleet_for_host(&h.fleet_id, &h.host_id))
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::NotFound,
                format!("fleet {} not found", h.fleet_id),
            )
        })?;
    Ok((h.host_id, fleet))
}

/// Turns one agent request into a command, after checking that it is about
/// a process of the agent's own host.
async fn handle(
    cluster: &Cluster,
    host: &HostId,
    req: AgentToServer,
) -> Result<ServerReply, WireError> {
    // Proposals through `cluster` are applied locally before they return,
    // so this node's state includes everything this agent reported before.
    let consensus = &cluster.consensus;
    let own = |process: &ProcessId| -> Result<(), WireError> {
        check_id("process id", process.as_str())?;
        let owner = consensus.read(|s| s.processes.get(process).map(|p| p.host_id.clone()));
        match owner {
            Some(h) if &h == host => Ok(()),
            Some(_) => Err(WireError::new(
                ErrorCode::Forbidden,
                format!("process {process} runs on another host"),
            )),
            None => Err(WireError::new(
                ErrorCode::NotFound,
                format!("process {process} not found"),
            )),
        }
    };
    let player = |process_id: ProcessId,
                  battle_session_id: BattleSessionId,
                  player_battle_session_id: PlayerBattleSessionId,
                  action: PlayerAction|
     -> Result<Command, WireError> {
        own(&process_id)?;
        check_id("battle session id", battle_session_id.as_str())?;
        check_id(
            "player battle session id",
            player_battle_session_id.as_str(),
        )?;
        Ok(Command::PlayerUpdate {
            process_id,
            battle_session_id,
            player_battle_session_id,
            action,
        })
    };
    let command = match req {
        AgentToServer::Hello(_) => return Err(bad("Hello was already received on this link")),
        AgentToServer::VsInstanceReport {
            instance_id,
            report,
        } => {
            check_id("instance id", instance_id.as_str())?;
            if let VsInstanceReport::Abnormal { reason, detail } = &report {
                if reason.len() > 256 || detail.len() > 4096 {
                    return Err(bad("reason/detail too long"));
                }
            }
            if let VsInstanceReport::Running { limits, .. } = &report {
                if limits.len() > 64 {
                    return Err(bad("limits too long"));
                }
            }
            // The state checks that the instance runs on this host.
            Command::ReportVsInstance {
                instance_id,
                host_id: host.clone(),
                report,
            }
        }
        AgentToServer::VsUsage { samples } => {
            record_usage(&cluster.consensus, host, &samples);
            return Ok(ServerReply::Ok);
        }
        AgentToServer::ResolveVs {
            title_region_id,
            vs,
        } => {
            check_id("title region id", title_region_id.as_str())?;
            return Ok(resolve_for_agent(&cluster.consensus, &title_region_id, &vs));
        }
        AgentToServer::DescribeBattleSession {
            process_id,
            battle_session_id,
        } => {
            own(&process_id)?;
            check_id("battle session id", battle_session_id.as_str())?;
            return consensus.read(|s| describe_session(s, &process_id, &battle_session_id));
        }
        AgentToServer::SetDraining { draining } => Command::SetHostDraining {
            host_id: host.clone(),
            draining,
        },
        AgentToServer::ProcessStarted {
            process_id,
            pid,
            fleet_version,
        } => {
            check_id("process id", process_id.as_str())?;
            if consensus.read(|s| s.processes.contains_key(&process_id)) {
                own(&process_id)?;
            }
            Command::ProcessStarted {
                process_id,
                host_id: host.clone(),
                pid,
                fleet_version,
            }
        }
        AgentToServer::ProcessReady {
            process_id,
            port,
            log_paths,
        } => {
            own(&process_id)?;
            if log_paths.len() > 64 || log_paths.iter().any(|p| p.len() > 4096) {
                return Err(bad("log_paths: at most 64 paths of at most 4096 bytes"));
            }
            Command::ProcessReady {
                process_id,
                port,
                log_paths,
            }
        }
        AgentToServer::ProcessForked {
            process_id,
            parent_id,
            pid,
        } => {
            check_id("process id", process_id.as_str())?;
            own(&parent_id)?;
            if consensus.read(|s| s.processes.contains_key(&process_id)) {
                own(&process_id)?;
            }
            Command::ProcessForked {
                process_id,
                host_id: host.clone(),
                parent_id,
                pid,
            }
        }
        AgentToServer::ForkingParentReady {
            process_id,
            log_paths,
        } => {
            own(&process_id)?;
            if log_paths.len() > 64 || log_paths.iter().any(|p| p.len() > 4096) {
                return Err(bad("log_paths: at most 64 paths of at most 4096 bytes"));
            }
            Command::ForkingParentReady {
                process_id,
                log_paths,
            }
        }
        AgentToServer::ProcessExited { process_id, reason } => {
            own(&process_id)?;
            Command::ProcessExited { process_id, reason }
        }
        AgentToServer::ProcessEnding { process_id } => {
            own(&process_id)?;
            Command::ProcessEnding { process_id }
        }
        AgentToServer::ActivateBattleSession {
            process_id,
            battle_session_id,
        } => {
            own(&process_id)?;
            check_id("battle session id", battle_session_id.as_str())?;
            Command::ActivateBattleSession {
                process_id,
                battle_session_id,
            }
        }
        AgentToServer::AcceptPlayerBattleSession {
            process_id: p,
            battle_session_id: b,
            player_battle_session_id: pbs,
        } => player(p, b, pbs, PlayerAction::Accept)?,
        AgentToServer::DisconnectPlayerBattleSession {
            process_id: p,
            battle_session_id: b,
            player_battle_session_id: pbs,
        } => player(p, b, pbs, PlayerAction::Disconnect)?,
        AgentToServer::RemovePlayerBattleSession {
            process_id: p,
            battle_session_id: b,
            player_battle_session_id: pbs,
        } => player(p, b, pbs, PlayerAction::Remove)?,
        AgentToServer::TerminateBattleSession {
            process_id,
            battle_session_id,
        } => {
            own(&process_id)?;
            check_id("battle session id", battle_session_id.as_str())?;
            Command::TerminateBattleSession {
                process_id,
                battle_session_id,
            }
        }
    };
    cluster
        .propose(command)
        .await
        .map(|_| ServerReply::Ok)
        .map_err(wire_error)
}
