//! The seam between the agent runtime and its connection to the cluster.

use futures::future::BoxFuture;
use respawn_types::agent::{AgentToServer, ServerReply};

/// The link is down, or the call timed out: the request may or may not have
/// reached the cluster.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("link to the cluster is down: {0}")]
pub struct LinkDown(pub String);

/// How the agent reaches the cluster. The QUIC connection manager implements
/// it; tests use an in-memory fake.
///
/// `call` should fail fast with [`LinkDown`] while no registered connection
/// exists (before the Hello of a reconnection has been answered), so that
/// queued reports are retried on the new connection rather than racing it.
pub trait ServerLink: Send + Sync + 'static {
    /// Send one request to the cluster and wait for its reply. Err = link down / timeout.
    fn call(&self, msg: AgentToServer) -> BoxFuture<'_, Result<ServerReply, LinkDown>>;
}
