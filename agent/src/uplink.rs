//! The agent's side of its link to the cluster: connect over QUIC (mutual
//! TLS), say Hello with the live processes, apply the fleet it is given,
//! serve the cluster's commands, and on any loss reconnect with backoff and
//! register again.

use crate::agent::Agent;
use crate::link::{LinkDown, ServerLink};
use futures::future::BoxFuture;
use respawn_net::{Endpoint, Link};
use respawn_types::agent::*;
use respawn_types::backoff::capped_exponential;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an agent request may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The current registered connection, if any. `call` fails fast without one.
#[derive(Default)]
pub struct Uplink {
    current: Mutex<Option<Link>>,
}

impl Uplink {
    fn get(&self) -> Option<Link> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    fn set(&self, link: Option<Link>) {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = link;
    }
    /// Whether a registered connection exists now.
    pub fn is_up(&self) -> bool {
        self.get().is_some()
    }
    /// Closes the current connection (tests use it to cut the link).
    pub fn cut(&self, reason: &str) {
        if let Some(l) = self.get() {
            l.close(reason);
        }
    }
}

impl ServerLink for Uplink {
    fn call(&self, msg: AgentToServer) -> BoxFuture<'_, Result<ServerReply, LinkDown>> {
        Box::pin(async move {
            let link = self.get().ok_or_else(|| LinkDown("not connected".into()))?;
            link.request::<AgentToServer, ServerReply>(&msg, CALL_TIMEOUT)
                .await
                .map_err(|e| LinkDown(e.to_string()))
        })
    }
}

/// First reconnect delay.
const RECONNECT_BASE: Duration = Duration::from_millis(200);
/// Longest reconnect delay.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Reconnect delay after `failures` consecutive failures: 200 ms doubling
/// to 5 s.
pub fn reconnect_delay(failures: u32) -> Duration {
    capped_exponential(RECONNECT_BASE, RECONNECT_MAX, failures)
}

/// How long one connection attempt to a server may take. Servers are a LAN
/// away: a handshake not done by then is from a node that is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What to do before the next connection attempt, given how many attempts
/// in a row have failed since the last registered link (`failures`) and
/// how many servers there are: try the next server at once until each has
/// been tried once in this round, then back off ([`reconnect_delay`]).
pub fn pause_before_attempt(failures: u32, servers: usize) -> Duration {
    let servers = u32::try_from(servers.max(1)).unwrap_or(u32::MAX);
    if !failures.is_multiple_of(servers) {
        Duration::ZERO
    } else {
        reconnect_delay(failures / servers)
    }
}

/// Keeps the agent connected to one of `servers` (`host:port`, tried in
/// turn; DNS names are resolved at each attempt) until the task is aborted.
///
/// When the link is lost (the node crashed: the link's idle timeout, 1.5 s;
/// or it stopped: at once), the agent tries the next server in the list at
/// once, and the others after it without pause; only once every server has
/// failed in a row does it back off, 200 ms doubling to 5 s.
pub async fn run(endpoint: Endpoint, servers: Vec<String>, agent: Agent, uplink: Arc<Uplink>) {
    // Attempts failed in a row since the last registered link.
    let mut failures = 0u32;
    let mut next = 0usize;
    loop {
        let Some(server) = servers.get(next % servers.len().max(1)).cloned() else {
            tracing::error!("no server address configured");
            return;
        };
        next += 1;
        let resolved = tokio::net::lookup_host(server.as_str())
            .await
            .map(|mut a| a.next());
        let addr = match resolved {
            Ok(Some(a)) => a,
            Ok(None) | Err(_) => {
                failures += 1;
                tracing::warn!(%server, "cannot resolve server address");
                tokio::time::sleep(pause_before_attempt(failures, servers.len())).await;
                continue;
            }
        };
        match connect(&endpoint, addr, &agent).await {
            Ok(link) => {
                failures = 0;
                tracing::info!(server = %addr, "connected to the cluster");
                uplink.set(Some(link.clone()));
                agent.link_up();
                let a = agent.clone();
                let served =
                    respawn_net::serve_requests(link.clone(), move |cmd: ServerToAgent| {
                        let a = a.clone();
                        async move { a.handle_command(cmd).await }
                    })
                    .await;
                uplink.set(None);
                match served {
                    Ok(()) => {
                        tracing::warn!(server = %addr, "link to the cluster closed; trying the next server")
                    }
                    Err(e) => {
                        tracing::warn!(server = %addr, error = %e, "link to the cluster lost; trying the next server")
                    }
                }
                // The next server, at once.
                continue;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(server = %addr, error = %e, attempt = failures, "cannot reach the cluster");
            }
        }
        tokio::time::sleep(pause_before_attempt(failures, servers.len())).await;
    }
}

async fn connect(endpoint: &Endpoint, addr: SocketAddr, agent: &Agent) -> Result<Link, String> {
    let link = endpoint
        .connect_with_timeout(addr, CONNECT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let reply = link
        .request::<AgentToServer, ServerReply>(&AgentToServer::Hello(agent.hello()), CALL_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match reply {
        ServerReply::Welcome { fleet } => {
            agent.apply_fleet(fleet).map_err(|e| e.to_string())?;
            Ok(link)
        }
        ServerReply::Err(e) => {
            link.close("registration refused");
            Err(format!("registration refused: {e}"))
        }
        ServerReply::Ok | ServerReply::VsEndpoints { .. } | ServerReply::BattleSession { .. } => {
            link.close("unexpected reply");
            Err("unexpected reply to Hello".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_grows_and_is_capped() {
        assert_eq!(reconnect_delay(0), Duration::from_millis(200));
        assert_eq!(reconnect_delay(2), Duration::from_millis(800));
        assert_eq!(reconnect_delay(40), Duration::from_secs(5));
    }

    #[test]
    fn every_server_is_tried_at_once_before_backing_off() {
        // Three servers: after the first and second failure in a row, the
        // next server at once; after the third (a full round), back off.
        assert_eq!(pause_before_attempt(1, 3), Duration::ZERO);
        assert_eq!(pause_before_attempt(2, 3), Duration::ZERO);
        assert_eq!(pause_before_attempt(3, 3), reconnect_delay(1));
        assert_eq!(pause_before_attempt(4, 3), Duration::ZERO);
        assert_eq!(pause_before_attempt(6, 3), reconnect_delay(2));
        // One server: back off after every failure.
        assert_eq!(pause_before_attempt(1, 1), reconnect_delay(1));
        assert_eq!(pause_before_attempt(2, 1), reconnect_delay(2));
        // No servers configured is treated as one.
        assert_eq!(pause_before_attempt(1, 0), reconnect_delay(1));
    }
}
