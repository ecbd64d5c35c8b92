//! Handing leadership over when the leader stops: [`Cluster::handover`]
//! picks the successor before Raft stops, [`Cluster::announce_leaving`]
//! tells the other voters, and the successor runs [`stand_for_election`].

use super::wire::ClusterMsg;
use super::Cluster;
use respawn_consensus::Consensus;
use respawn_types::NodeId;
use std::time::Duration;

impl Cluster {
    /// What this node would hand over if it stopped now: `None` unless it
    /// leads a cluster with other voters. Read it before stopping Raft.
    pub fn handover(&self) -> Option<Handover> {
        let me = self.node_id();
        let metrics = self.consensus.metrics();
        let m = metrics.borrow();
        if m.state != openraft::ServerState::Leader || m.current_leader != Some(me) {
            return None;
        }
        let others: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != me)
            .collect();
        // The voter whose log matches the leader's furthest (the lowest id
        // among equals): the other voters grant it their vote.
        let matched = |v: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(v).copied().flatten())
                .map(|l| l.index)
        };
        let successor = others
            .iter()
            .copied()
            .max_by_key(|v| (matched(v), std::cmp::Reverse(*v)))?;
        Some(Handover { successor, others })
    }

    /// Tells the other voters that this leader has stopped, naming the
    /// successor picked by [`Cluster::handover`]. Call it once Raft has
    /// stopped (no heartbeat will follow) and before the transport closes;
    /// best effort, within 500 ms.
    ///
    /// Why: openraft 0.9 makes a follower wait for its leader lease
    /// (`election_timeout_max` since the last heartbeat, during which it
    /// refuses to vote) **plus** a random election timeout (between
    /// `election_timeout_min` and `_max`) before it stands for election: 3
    /// to 4 s with the defaults. The successor instead stands as soon as the
    /// lease has run out on the others (they heard the last heartbeat
    /// before this message), so a planned stop costs the lease only. A
    /// crashed leader still costs lease plus timeout.
    pub async fn announce_leaving(&self, handover: Handover) {
        let msg = ClusterMsg::LeaderLeaving {
            leader: self.node_id(),
            successor: handover.successor,
        };
        let calls = handover.others.iter().map(|n| {
            let msg = &msg;
            async move {
                match tokio::time::timeout(Duration::from_millis(500), self.ask_node(*n, msg)).await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(node = n, error = %e, "leaving: not told"),
                    Err(_) => tracing::debug!(node = n, "leaving: not told in time"),
                }
            }
        });
        futures::future::join_all(calls).await;
    }
}

/// What a stopping leader hands over (see [`Cluster::announce_leaving`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The voter that should stand for election first.
    pub successor: NodeId,
    /// Every other voter (the successor included), to be told.
    pub others: Vec<NodeId>,
}

/// On the successor named by a stopping leader: waits until the other
/// voters' leader lease has run out (`election_timeout_max` after the last
/// heartbeat, which came before the announcement), then stands for
/// election, unless an election has started or ended meanwhile.
///
/// A voter that handled the last heartbeat late (a busy machine) refuses
/// that first round: this node, still the candidate of its own round,
/// stands again every 100 ms, until a leader is known or until shortly
/// before the voters' own election timers could fire
/// (`election_timeout_min` after the lease), so as never to compete with
/// an election another voter started.
pub async fn stand_for_election(consensus: Consensus, left: NodeId) {
    let me = consensus.node_id();
    let (lease, timeout_min) = {
        let config = consensus.raft().config();
        (
            Duration::from_millis(config.election_timeout_max),
            Duration::from_millis(config.election_timeout_min),
        )
    };
    let start = tokio::time::Instant::now();
    let until = start + lease + timeout_min.saturating_sub(Duration::from_millis(100));
    tokio::time::sleep_until(start + lease + Duration::from_millis(20)).await;
    let mut rounds = 0u32;
    while tokio::time::Instant::now() < until {
        let (state, leader, voted_for) = {
            let metrics = consensus.metrics();
            let m = metrics.borrow();
            (m.state, m.current_leader, m.vote.leader_id().voted_for())
        };
        let stand = match state {
            // Still following the leader that left (or nobody).
            openraft::ServerState::Follower => {
                leader.is_none_or(|l| l == left) && voted_for.is_none_or(|v| v == left || v == me)
            }
            // The candidate of a round of ours that has not won.
            openraft::ServerState::Candidate => rounds > 0 && voted_for == Some(me),
            _ => false,
        };
        if !stand {
            break;
        }
        tracing::info!(
            node = me,
            left,
            round = rounds + 1,
            "the leader stopped: standing for election"
        );
        if let Err(e) = consensus.raft().trigger().elect().await {
            tracing::debug!(error = %e, "cannot stand for election");
            break;
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
