//! An agent wired to its QUIC endpoint and kept connected to the cluster.

use crate::agent::Agent;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::uplink::{self, Uplink};
use respawn_config::Config;
use respawn_net::{Endpoint, Identity};
use respawn_types::{FleetId, HostId};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A running agent: the runtime that launches DS processes and its link.
pub struct AgentNode {
    pub agent: Agent,
    pub uplink: Arc<Uplink>,
    /// The link's endpoint (a clone is in `task`), shut down last.
    endpoint: Endpoint,
    task: JoinHandle<()>,
}

impl AgentNode {
    /// Starts the agent and keeps it connected to `agent.server_addr`, or
    /// to the next of `agent.servers` when a link is lost.
    pub async fn start(cfg: &Config, identity: &Identity) -> Result<AgentNode, AgentError> {
        let mut servers = vec![cfg.agent.server_addr.clone()];
        servers.extend(cfg.agent.servers.iter().cloned());
        let host = match &cfg.agent.host_id {
            Some(h) => h.clone(),
            None => identity.subject()?.name,
        };
        let host_id =
            HostId::parse(host).map_err(|e| AgentError::InvalidConfig(format!("host id: {e}")))?;
        let fleet_id = FleetId::parse(cfg.agent.fleet.clone())
            .map_err(|e| AgentError::InvalidConfig(format!("fleet: {e}")))?;
        let dir: PathBuf = cfg.data_dir.join("agent");
        let mut ac = AgentConfig::new(host_id, fleet_id, cfg.agent.public_ip.clone(), dir);
        ac.local_api_addr = cfg.agent.local_api_addr;
        ac.kill_grace = Duration::from_millis(cfg.agent.kill_grace_ms);
        ac.drain_deadline = Duration::from_secs(cfg.agent.drain_deadline_secs);
        ac.intranet_addr = cfg.agent.intranet_addr;
        ac.docker_intranet_host = cfg.agent.docker_intranet_host.clone();
        ac.logs = (&cfg.agent.logs).into();
        let uplink = Arc::new(Uplink::default());
        let agent = Agent::start(ac, uplink.clone()).await?;
        let endpoint = Endpoint::client(identity)?;
        let task = tokio::spawn(uplink::run(
            endpoint.clone(),
            servers,
            agent.clone(),
            uplink.clone(),
        ));
        Ok(AgentNode {
            agent,
            uplink,
            endpoint,
            task,
        })
    }

    /// Drains the host (see [`Agent::drain`]): returns once no DS process
    /// is left, or past the deadline once the remaining ones are ended.
    /// The link stays up meanwhile; call [`AgentNode::shutdown`] after.
    pub async fn drain(&self) -> crate::DrainOutcome {
        self.agent.drain().await
    }

    /// Stops the link and the DS processes; returns once the link's UDP
    /// socket is closed.
    pub async fn shutdown(self) {
        const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
        // Close the link and any connection attempt at once (the server
        // hears of it), then stop the task that would reconnect.
        self.uplink.cut("agent shutting down");
        self.endpoint.close();
        self.task.abort();
        let _ = self.task.await;
        self.agent.shutdown().await;
        if let Err(e) = self.endpoint.shutdown(RELEASE_TIMEOUT).await {
            tracing::warn!(error = %e, "agent QUIC socket not released");
        }
    }
}
