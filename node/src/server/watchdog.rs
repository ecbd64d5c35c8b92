//! The quorum watchdog: a node cut off from the majority lets its agents go.

use crate::agent_links::AgentLinks;
use crate::cluster::Cluster;
use std::sync::Arc;
use std::time::Duration;

/// Closes this node's agent links while it cannot reach a quorum for longer
/// than `cutoff`, so that agents move to a node on the majority side (their
/// reports could not be committed here, and the leader could not reach them).
pub async fn quorum_watchdog(cluster: Cluster, links: Arc<AgentLinks>, cutoff: Duration) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if cluster.in_quorum(Duration::from_secs(1)).await {
            last_ok = tokio::time::Instant::now();
        } else if last_ok.elapsed() > cutoff && !links.connected_hosts().is_empty() {
            tracing::warn!(
                node = cluster.node_id(),
                "cut off from the cluster majority: closing agent links"
            );
            links.close_all();
        }
    }
}
