//! The actors run on the leader only ([`run_leader_actors`]): a node that
//! becomes leader rebuilds them from the committed state, and stops them
//! when it loses leadership. Their proposals go through the leader
//! ([`ClusterCommandSink`]).

use super::vs_ports::ClusterVsPorts;
use super::ServerCtx;
use crate::bootstrap::bootstrap_config;
use crate::cluster::Cluster;
use futures::future::BoxFuture;
use respawn_actors::{CommandSink, Deps, ProposeError};
use respawn_consensus::ConsensusError;
use respawn_state::{Applied, ClusterState, Command};
use std::sync::Arc;
use std::time::Duration;

/// The actors' [`CommandSink`]: proposals go through the leader.
pub struct ClusterCommandSink(pub Cluster);

impl CommandSink for ClusterCommandSink {
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

/// Keeps the actors running on this node exactly while it is the leader:
/// on gaining leadership it applies everything committed (read index),
/// applies the configured title regions and fleets, rebuilds the actors
/// from the committed state and feeds them every later event; on losing it
/// (or on shutdown) it stops them.
pub async fn run_leader_actors(
    ctx: ServerCtx,
    cfg: Arc<respawn_config::Config>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let ServerCtx { cluster, links, vs } = ctx.clone();
    let mut metrics = cluster.consensus.metrics();
    // Failed confirmations in a row (a leader without a quorum retries,
    // backing off to 5 s, and logs each failure once per try).
    let mut failures = 0u32;
    loop {
        // Wait to become leader.
        while !cluster.consensus.is_leader() {
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
        if let Err(e) = cluster.consensus.read_index().await {
            failures = failures.saturating_add(1);
            tracing::warn!(error = %e, failures, "new leader could not confirm its state; retrying");
            let pause = respawn_types::backoff::capped_exponential(
                Duration::from_millis(100),
                Duration::from_secs(5),
                failures,
            );
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        failures = 0;
        if let Err(e) = bootstrap_config(&cluster, &cfg).await {
            tracing::warn!(error = %e, "could not apply the configured title regions and fleets");
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = cluster.consensus.go_live(tx);
        let state = cluster.consensus.state();
        let deps = Deps {
            state: Arc::new(move |f: &mut dyn FnMut(&ClusterState)| state.read(|s| f(s))),
            commands: Arc::new(ClusterCommandSink(cluster.clone())),
            gateway: Arc::new(ctx.gateway()),
            vs: Arc::new(ClusterVsPorts {
                consensus: cluster.consensus.clone(),
                hub: vs.clone(),
            }),
        };
        let runtime = match respawn_actors::start_runtime(deps, rx).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the actors");
                cluster.consensus.state().go_dark();
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        links.set_node(runtime.node.clone());
        tracing::info!(node = cluster.node_id(), "leader: actors running");
        let mut stop = false;
        while cluster.consensus.is_leader() {
            tokio::select! {
                r = metrics.changed() => if r.is_err() { stop = true; break },
                _ = shutdown.changed() => { stop = true; break },
            }
        }
        runtime.stop();
        cluster.consensus.state().go_dark();
        links.clear_node();
        tracing::info!(node = cluster.node_id(), "actors stopped");
        if stop {
            return;
        }
    }
}
