//! A node that crashes: for tests that must see what survivors and agents
//! see when a node dies without warning (no handover, no goodbye).

use super::ServerNode;
use std::time::Duration;

/// Bound of each release step (a stuck one is logged and skipped).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl ServerNode {
    /// Crashes the node, as far as anyone outside this process can tell:
    /// its QUIC sockets (agents' and peers' links, and its own links to the
    /// peers) go silent at once — no close frame, no "going away", so the
    /// others find out by their timeouts — and no successor is named if it
    /// led. Only then is what it holds released (actors, tasks, Raft and
    /// its files, sockets), which nobody can observe any more; a restart
    /// in this process can then reopen its data directory and ports, as a
    /// restarted process could after a crash.
    ///
    /// The HTTP edge stops listening; in-process, connections it already
    /// accepted live on (answering from a stopped node) until their client
    /// drops them. [`ServerNode::shutdown`] is the orderly stop.
    pub async fn crash(self) {
        let node = self.consensus.node_id();
        self.endpoint.silence();
        self.cluster.transport.silence();
        for t in &self.tasks {
            t.abort();
        }
        // The actors can no longer be heard: stop them so they do not
        // outlive the node in this process.
        let _ = self.shutdown.send(true);
        let mut leader_loop = self.leader_loop;
        if tokio::time::timeout(RELEASE_TIMEOUT, &mut leader_loop)
            .await
            .is_err()
        {
            leader_loop.abort();
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, t).await;
        }
        self.links.close_all();
        match tokio::time::timeout(RELEASE_TIMEOUT, self.consensus.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(node, error = %e, "crash: raft files not released"),
            Err(_) => tracing::warn!(node, "crash: raft did not stop in time"),
        }
        let (_, released) = tokio::join!(
            self.cluster.transport.close(RELEASE_TIMEOUT),
            self.endpoint.shutdown(RELEASE_TIMEOUT)
        );
        if let Err(e) = released {
            tracing::warn!(node, error = %e, "crash: QUIC socket not released");
        }
        tracing::info!(node, "crashed");
    }
}
