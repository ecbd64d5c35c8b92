//! What the actors need from the rest of the node, as traits: the node
//! wires consensus and the agent links in; tests can wire anything.

use futures::future::BoxFuture;
use respawn_consensus::{Applied, Command, PlacementState, Rejection};
use respawn_types::agent::{AgentReply, ServerToAgent};
use respawn_types::HostId;
use std::sync::Arc;

/// The applied placement state, shared with the Raft state machine.
pub type SharedState = respawn_consensus::StateHandle;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// `apply` refused the command; nothing changed.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// Consensus could not commit it (no leader, shutting down, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Commits commands through Raft; resolves once applied locally.
pub trait Proposer: Send + Sync + 'static {
    fn propose(&self, command: Command) -> BoxFuture<'static, Result<Applied, ProposeError>>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("host {0} is not connected")]
    NotConnected(HostId),
    #[error("link to host {0} failed: {1}")]
    Link(HostId, String),
}

/// Sends commands to agents over their links.
pub trait AgentGateway: Send + Sync + 'static {
    fn send(
        &self,
        host: &HostId,
        command: ServerToAgent,
    ) -> BoxFuture<'static, Result<AgentReply, GatewayError>>;
    /// Whether the host's agent currently holds a link to the cluster.
    fn is_connected(&self, host: &HostId) -> bool;
}

/// Everything an actor is given at spawn time.
#[derive(Clone)]
pub struct Deps {
    pub state: SharedState,
    pub proposer: Arc<dyn Proposer>,
    pub gateway: Arc<dyn AgentGateway>,
}

impl Deps {
    /// Runs `f` on the current state; the lock is held only for `f`.
    pub fn read<T>(&self, f: impl FnOnce(&PlacementState) -> T) -> T {
        self.state.read(f)
    }
}
