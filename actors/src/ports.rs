//! What the actors need from the rest of the node, as traits: the node
//! wires consensus and the agent links in; tests can wire anything.

use futures::future::BoxFuture;
use respawn_state::{Applied, ClusterState, Command, Rejection};
use respawn_types::agent::{AgentReply, ServerToAgent};
use respawn_types::{HostId, TitleRegionId, VsName};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Read access to the applied state, which the node shares with the Raft
/// state machine. Any `Fn(&mut dyn FnMut(&ClusterState))` is one.
pub trait StateReader: Send + Sync + 'static {
    /// Runs `reader` exactly once on the current state; a lock, if any, is
    /// held only while it runs.
    fn read_state(&self, reader: &mut dyn FnMut(&ClusterState));
}

impl<F> StateReader for F
where
    F: Fn(&mut dyn FnMut(&ClusterState)) + Send + Sync + 'static,
{
    fn read_state(&self, reader: &mut dyn FnMut(&ClusterState)) {
        self(reader)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// `apply` refused the command; nothing changed.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// Consensus could not commit it (no leader, shutting down, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Where the actors send the commands they decide on: it commits them
/// through Raft and resolves once they are applied locally.
pub trait CommandSink: Send + Sync + 'static {
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

/// What one delivery attempt to a virtual server gave.
#[derive(Debug)]
pub struct Delivery {
    pub status: Option<u16>,
    pub response: String,
    pub latency_ms: u64,
}

/// Facts about this deployment that VS instances see as system variables.
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// dev, test or release.
    pub region_type: String,
    /// Where the VS reaches the backend HTTP API (host[:port]).
    pub backend_api_domain: String,
    pub cloud_provider: String,
    /// `PGOS_Title_Logo` per title region (its configured `title_logo`).
    pub title_logos: std::collections::BTreeMap<TitleRegionId, String>,
}

/// What the virtual-server actors need from the node's edge.
pub trait VsPorts: Send + Sync + 'static {
    /// Peak in-flight requests per virtual server over the last few
    /// seconds, summed over the cluster's edges.
    fn load(&self) -> HashMap<(TitleRegionId, VsName), u32>;
    /// POSTs a JSON `body` to `path` of a VS with the given `Invoker`
    /// (event or task delivery), within `timeout`.
    fn deliver(
        &self,
        tr: &TitleRegionId,
        vs: &VsName,
        path: &'static str,
        invoker: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Delivery>;
    /// This deployment's facts for the system environment variables.
    fn site(&self) -> Site;
}

/// Everything an actor is given at spawn time.
#[derive(Clone)]
pub struct Deps {
    pub state: Arc<dyn StateReader>,
    pub commands: Arc<dyn CommandSink>,
    pub gateway: Arc<dyn AgentGateway>,
    pub vs: Arc<dyn VsPorts>,
}

/// A read of the state that holds it longer than this is logged: apply
/// waits for it.
const SLOW_READ: Duration = Duration::from_millis(50);

impl Deps {
    /// Runs `f` on the current state; the lock is held only for `f`.
    ///
    /// `f` must not call the other ports (the gateway's `is_connected`
    /// reads the state too): a read inside a read deadlocks as soon as
    /// apply waits for the lock between the two. Ask them before or after
    /// (e.g. [`Deps::connected_hosts`]).
    #[track_caller]
    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        let caller = std::panic::Location::caller();
        let mut f = Some(f);
        let mut out = None;
        self.state.read_state(&mut |s| {
            if let Some(f) = f.take() {
                let started = std::time::Instant::now();
                out = Some(f(s));
                let took = started.elapsed();
                if took >= SLOW_READ {
                    tracing::info!(ms = took.as_millis() as u64, "slow state read by {caller}");
                }
            }
        });
        // `read_state` runs its reader exactly once: that is its contract.
        #[allow(clippy::expect_used)]
        out.expect("StateReader::read_state ran the reader")
    }

    /// The hosts of the state whose agent holds a link now
    /// ([`AgentGateway::is_connected`]), asked outside any state read.
    pub fn connected_hosts(&self) -> HashSet<HostId> {
        let hosts: Vec<HostId> = self.read(|s| s.hosts.keys().cloned().collect());
        hosts
            .into_iter()
            .filter(|h| self.gateway.is_connected(h))
            .collect()
    }
}
