//! Membership changes that cannot hurt the cluster
//! ([`Cluster::change_membership`]).
//!
//! A change is committed through the current configuration, and a joint
//! change needs a quorum of the old *and* of the new voters. Adding a
//! voter that never answers to a cluster of one therefore leaves a joint
//! configuration nobody can commit, and, stored in the log, it survives a
//! restart. So before anything is proposed, the leader checks:
//!
//! - the request makes sense ([`check_new_member`]): an id in
//!   `1..=MAX_NODE_ID`, not already a member with other addresses,
//!   addresses that are not another member's;
//! - no other change is still being committed (openraft would refuse it);
//! - it can commit now (a read-index round to a quorum);
//! - for a new learner and for a promotion: the node answers over QUIC as
//!   `node-<id>` with a certificate of this cluster's CA
//!   ([`Cluster::prove_node`]), and does not belong to another cluster;
//! - for a promotion: the learner has caught up ([`check_caught_up`]).
//!
//! Every call then waits at most [`CHANGE_WAIT`] for the commit and
//! answers [`ChangeOutcome::InProgress`] past that (the change goes on;
//! the cluster status shows when it is done). Removing a node that is not a
//! member does nothing and succeeds. A change that can never complete (its
//! new voters died in the middle of it) cannot be undone online in Raft:
//! `respawn server --force-new-cluster` repairs the survivor offline
//! (`respawn_consensus::repair`).

use super::wire::{decode, encode, ChangeOutcome, ClusterMsg, ClusterReply, MembershipOp};
use super::Cluster;
use respawn_consensus::{ConsensusError, MembershipView, NodeInfo};
use respawn_net::transport::Service;
use respawn_state::Rejection;
use respawn_types::limits::MAX_NODE_ID;
use respawn_types::NodeId;
use std::future::Future;
use std::time::Duration;

/// How long a membership call waits for its change to commit before it
/// answers "in progress".
/// With the probes before it, a call forwarded from another node answers
/// within that node's forwarding timeout (10 s).
pub const CHANGE_WAIT: Duration = Duration::from_secs(4);
/// How long a node has to answer [`ClusterMsg::Identify`].
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the leader takes to confirm it can commit (a read-index round).
const QUORUM_PROBE: Duration = Duration::from_secs(2);
/// A learner is promoted only if its log is at most this many entries
/// behind the leader's (each entry is a batch of up to 512 commands; the
/// rest arrives in the next few heartbeats).
pub const PROMOTE_MAX_LAG: u64 = 64;

/// Checks a node about to be added against the membership. `Ok(false)`:
/// it is a member already, with these addresses (nothing to do).
pub fn check_new_member(
    view: &MembershipView,
    node_id: NodeId,
    info: &NodeInfo,
) -> Result<bool, Rejection> {
    if node_id == 0 || node_id > MAX_NODE_ID {
        return Err(Rejection::bad_request(format!(
            "node_id must be between 1 and {MAX_NODE_ID}, not {node_id}"
        )));
    }
    if let Some(known) = view.nodes.get(&node_id) {
        if known == info {
            return Ok(false);
        }
        return Err(Rejection::Conflict(format!(
            "node {node_id} is already a member ({known}); remove it first to change its addresses"
        )));
    }
    for (id, other) in &view.nodes {
        for (field, addr, theirs) in [
            ("quic_addr", &info.raft_addr, &other.raft_addr),
            ("http_addr", &info.http_addr, &other.http_addr),
        ] {
            if addr == theirs {
                return Err(Rejection::Conflict(format!(
                    "{field} {addr} is the address of node {id}, a member already"
                )));
            }
        }
    }
    Ok(true)
}

/// Whether a learner whose log matches the leader's up to `matched` may
/// become a voter, the leader's log ending at `last`.
pub fn check_caught_up(
    node_id: NodeId,
    matched: Option<u64>,
    last: Option<u64>,
) -> Result<(), Rejection> {
    let last = last.unwrap_or(0);
    match matched {
        Some(m) if m.saturating_add(PROMOTE_MAX_LAG) >= last => Ok(()),
        _ => Err(Rejection::invalid_state(format!(
            "node {node_id} has not caught up with the leader's log (it has {} of {last} entries); \
             promote it once it has (see /admin/cluster: matched_index), or check that it runs",
            matched.map_or_else(|| "none".to_string(), |m| m.to_string())
        ))),
    }
}

/// Whether a node that answered Identify with `voters` may join this
/// cluster, whose members are `view`: it belongs to no cluster yet, or to
/// this one (a member coming back).
pub fn check_not_foreign(
    node_id: NodeId,
    voters: &[NodeId],
    view: &MembershipView,
) -> Result<(), Rejection> {
    if voters.is_empty() || voters.iter().any(|v| view.nodes.contains_key(v)) {
        return Ok(());
    }
    Err(Rejection::Conflict(format!(
        "node {node_id} belongs to another cluster (voters {voters:?}); \
         stop it and empty its data directory before adding it here"
    )))
}

fn unavailable(why: impl Into<String>) -> ConsensusError {
    ConsensusError::Timeout(why.into())
}

impl Cluster {
    /// Carries out a membership change on the leader (forwarded there from
    /// any node), after the checks of the module docs, waiting at most
    /// [`CHANGE_WAIT`] for it to commit.
    ///
    /// Errors: `Rejected` (nothing proposed: 400/404/409 at the edge) or
    /// unavailable (no leader, no quorum: 503).
    pub async fn change_membership(
        &self,
        op: MembershipOp,
    ) -> Result<ChangeOutcome, ConsensusError> {
        if !self.consensus.is_leader() {
            let leader = self
                .consensus
                .leader()
                .map(|(id, _)| id)
                .ok_or(ConsensusError::NotLeader { leader: None })?;
            return match self.ask_node(leader, &ClusterMsg::Membership(op)).await? {
                ClusterReply::Membership(outcome) => Ok(outcome),
                ClusterReply::Err(e) => Err(e.into()),
                other => Err(ConsensusError::Raft(format!("unexpected reply {other:?}"))),
            };
        }
        let view = self.consensus.membership();
        match op {
            MembershipOp::AddLearner { node_id, info } => {
                if !check_new_member(&view, node_id, &info)? {
                    return Ok(ChangeOutcome::Done);
                }
                self.ready_for_change().await?;
                if let Err(e) = self.prove_node(node_id, &info, &view).await {
                    self.transport.forget(node_id);
                    return Err(e);
                }
                let c = self.consensus.clone();
                bounded(async move { c.add_learner_committed(node_id, info).await }).await
            }
            MembershipOp::Promote { node_id } => {
                if view.voters.contains(&node_id) {
                    return Ok(ChangeOutcome::Done);
                }
                let Some(info) = view.nodes.get(&node_id).cloned() else {
                    return Err(Rejection::not_found(
                        "member",
                        format!("{node_id} (add it as a learner first)"),
                    )
                    .into());
                };
                self.ready_for_change().await?;
                check_caught_up(
                    node_id,
                    self.consensus.matched_index(node_id).flatten(),
                    self.consensus.last_log_index(),
                )?;
                self.prove_node(node_id, &info, &view).await?;
                let mut voters = view.voters.clone();
                voters.insert(node_id);
                let c = self.consensus.clone();
                bounded(async move { c.change_membership(voters).await }).await
            }
            MembershipOp::Remove { node_id } => {
                if !view.nodes.contains_key(&node_id) {
                    return Ok(ChangeOutcome::Done);
                }
                let c = self.consensus.clone();
                if !view.voters.contains(&node_id) {
                    self.ready_for_change().await?;
                    return bounded(async move { c.remove_learner(node_id).await }).await;
                }
                let mut voters = view.voters.clone();
                voters.remove(&node_id);
                if voters.is_empty() {
                    return Err(Rejection::bad_request("cannot remove the last voter").into());
                }
                self.ready_for_change().await?;
                bounded(async move { c.change_membership(voters).await }).await
            }
        }
    }

    /// No change in progress, and a quorum confirms this node leads.
    async fn ready_for_change(&self) -> Result<(), ConsensusError> {
        if !self.consensus.membership_committed().await? {
            let view = self.consensus.membership();
            return Err(Rejection::invalid_state(format!(
                "a membership change is still being committed (configuration at log index {}{}); \
                 it completes once its voters answer: poll /admin/cluster. If they are gone for \
                 good, repair offline with `respawn server --force-new-cluster` (docs/operations.md)",
                view.log_index.unwrap_or(0),
                if view.joint { ", joint" } else { "" }
            ))
            .into());
        }
        if !self.in_quorum(QUORUM_PROBE).await {
            return Err(unavailable(
                "no quorum answered: this cluster cannot commit a membership change now",
            ));
        }
        Ok(())
    }

    /// Proves that `node_id` is there and is who it claims: it answers
    /// [`ClusterMsg::Identify`] at `info.raft_addr`, over a link whose
    /// certificate (checked by the transport) is `node-<id>` of this
    /// cluster's CA, and does not belong to another cluster.
    pub async fn prove_node(
        &self,
        node_id: NodeId,
        info: &NodeInfo,
        view: &MembershipView,
    ) -> Result<(), ConsensusError> {
        let refuse = |why: String| {
            ConsensusError::Rejected(Rejection::invalid_state(format!(
                "node {node_id} did not answer at {} as node-{node_id} of this cluster ({why}); \
                 start it first, with a certificate named node-{node_id} signed by this cluster's CA",
                info.raft_addr
            )))
        };
        if node_id == self.node_id() {
            return Err(refuse("that is the node answering this call".into()));
        }
        self.transport.set_address(node_id, &info.raft_addr);
        let call = self.transport.call(
            node_id,
            Service::Cluster,
            encode(&ClusterMsg::Identify),
            PROBE_TIMEOUT,
        );
        let raw = match tokio::time::timeout(PROBE_TIMEOUT, call).await {
            Err(_) => return Err(refuse(format!("no answer within {PROBE_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(refuse(e.to_string())),
            Ok(Ok(raw)) => raw,
        };
        match decode::<ClusterReply>(&raw) {
            Some(ClusterReply::Identity {
                node_id: id,
                voters,
            }) if id == node_id => check_not_foreign(node_id, &voters, view).map_err(Into::into),
            Some(ClusterReply::Identity { node_id: id, .. }) => {
                Err(refuse(format!("it says it is node {id}")))
            }
            _ => Err(refuse("it did not understand the question".into())),
        }
    }
}

/// Runs a membership change in its own task and waits at most
/// [`CHANGE_WAIT`] for it; past that it goes on and this answers
/// [`ChangeOutcome::InProgress`].
async fn bounded<F>(change: F) -> Result<ChangeOutcome, ConsensusError>
where
    F: Future<Output = Result<(), ConsensusError>> + Send + 'static,
{
    let task = tokio::spawn(async move {
        let r = change.await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "membership change failed");
        }
        r
    });
    match tokio::time::timeout(CHANGE_WAIT, task).await {
        Ok(Ok(r)) => r.map(|()| ChangeOutcome::Done),
        Ok(Err(e)) => Err(ConsensusError::Raft(format!("membership task failed: {e}"))),
        Err(_) => Ok(ChangeOutcome::InProgress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn info(n: u16) -> NodeInfo {
        NodeInfo {
            raft_addr: format!("10.0.0.{n}:7600"),
            http_addr: format!("10.0.0.{n}:8080"),
        }
    }

    fn view() -> MembershipView {
        MembershipView {
            voters: BTreeSet::from([1, 2]),
            learners: BTreeSet::from([3]),
            nodes: BTreeMap::from([(1, info(1)), (2, info(2)), (3, info(3))]),
            joint: false,
            log_index: Some(7),
        }
    }

    #[test]
    fn nonsense_members_are_refused() {
        let v = view();
        assert_eq!(check_new_member(&v, 4, &info(4)), Ok(true));
        // Same member, same addresses: nothing to do.
        assert_eq!(check_new_member(&v, 3, &info(3)), Ok(false));
        assert!(matches!(
            check_new_member(&v, 0, &info(4)),
            Err(Rejection::BadRequest(_))
        ));
        assert!(matches!(
            check_new_member(&v, 9_223_372_036_854_775_806, &info(4)),
            Err(Rejection::BadRequest(_))
        ));
        assert_eq!(check_new_member(&v, MAX_NODE_ID, &info(4)), Ok(true));
        // A duplicate id with other addresses.
        assert!(matches!(
            check_new_member(&v, 2, &info(4)),
            Err(Rejection::Conflict(_))
        ));
        // Another member's address, QUIC or HTTP.
        let mut own = info(4);
        own.raft_addr = info(1).raft_addr;
        assert!(
            matches!(check_new_member(&v, 4, &own), Err(Rejection::Conflict(m)) if m.contains("node 1"))
        );
        let mut own = info(4);
        own.http_addr = info(2).http_addr;
        assert!(
            matches!(check_new_member(&v, 4, &own), Err(Rejection::Conflict(m)) if m.contains("node 2"))
        );
    }

    #[test]
    fn only_a_caught_up_learner_is_promoted() {
        assert!(check_caught_up(3, Some(1000), Some(1000)).is_ok());
        assert!(check_caught_up(3, Some(1000 - PROMOTE_MAX_LAG), Some(1000)).is_ok());
        assert!(matches!(
            check_caught_up(3, Some(1000 - PROMOTE_MAX_LAG - 1), Some(1000)),
            Err(Rejection::InvalidState(_))
        ));
        // Nothing replicated yet (never answered): refused.
        assert!(check_caught_up(3, None, Some(3)).is_err());
        assert!(check_caught_up(3, None, None).is_err());
    }

    #[test]
    fn a_node_of_another_cluster_is_refused() {
        let v = view();
        assert!(check_not_foreign(4, &[], &v).is_ok());
        assert!(check_not_foreign(4, &[1, 2], &v).is_ok());
        assert!(matches!(
            check_not_foreign(4, &[7, 8], &v),
            Err(Rejection::Conflict(_))
        ));
    }
}
