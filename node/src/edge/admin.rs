//! The admin API (`/admin/*`): cluster status and membership changes,
//! authenticated by `Authorization: Bearer <admin token>` (compared in
//! constant time). Any node answers; changes are carried out by the leader,
//! checked first and bounded in time (`crate::cluster::membership`): each
//! call answers 200 (done), 202 (committing; poll `GET /admin/cluster`) or
//! an error naming what was wrong, and changes nothing when refused.

use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use crate::cluster::wire::{ChangeOutcome, MembershipOp};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use respawn_consensus::ConsensusError;
use respawn_consensus::NodeInfo;
use respawn_state::Rejection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// Proof that the caller holds the admin token.
pub struct Admin;

impl FromRequestParts<Edge> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, edge: &Edge) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("missing 'Authorization: Bearer <admin token>'")
            })?;
        if bool::from(presented.as_bytes().ct_eq(edge.admin_token.as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("wrong admin token"))
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    pub node_id: u64,
    /// QUIC address (`host:port`).
    pub quic_addr: String,
    /// HTTP edge address (`host:port`).
    pub http_addr: String,
    /// `voter` or `learner`.
    pub role: String,
    /// Last log index known to be stored on this member; reported by the
    /// leader only (a learner can be promoted once it is close to the
    /// leader's `last_log_index`).
    pub matched_index: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    /// The current leader, if known.
    pub leader: Option<u64>,
    /// The answering node's Raft state: Leader, Follower, Candidate or Learner.
    pub state: String,
    /// Last log index applied by the answering node.
    pub applied_index: Option<u64>,
    /// Last log index stored by the answering node.
    pub last_log_index: Option<u64>,
    /// Whether the cluster can commit now, as this node sees it: a quorum
    /// confirmed the leader within 1 s. False: writes answer 503 until
    /// the voters are back (or the cluster is repaired, docs/operations.md).
    pub can_commit: bool,
    /// A membership change is still being committed (its configuration is
    /// in the log but not committed yet, as far as this node knows).
    pub change_in_progress: bool,
    /// The configuration is joint (old and new voters both count).
    pub joint: bool,
    /// Log index of the entry that set the current configuration.
    pub membership_index: Option<u64>,
    pub members: Vec<MemberView>,
    /// In answers to membership calls: `done`, or `in_progress` (202) for a
    /// change still being committed; poll `GET /admin/cluster` until
    /// `change_in_progress` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// 1 to 2^53 − 1, not a member's id (unless with the same addresses).
    pub node_id: u64,
    /// QUIC address other nodes and agents use (`host:port`); the node must
    /// answer there with its certificate `node-<node_id>`.
    pub quic_addr: String,
    /// HTTP edge address (`host:port`).
    pub http_addr: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeIdRequest {
    pub node_id: u64,
}

fn check_spec(n: &NodeSpec) -> Result<NodeInfo, ApiError> {
    if n.node_id == 0 || n.node_id > respawn_types::limits::MAX_NODE_ID {
        return Err(ApiError::bad_request(format!(
            "node_id must be between 1 and {}, not {}",
            respawn_types::limits::MAX_NODE_ID,
            n.node_id
        )));
    }
    for (field, v) in [("quic_addr", &n.quic_addr), ("http_addr", &n.http_addr)] {
        let ok = v.len() <= 255
            && v.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !ok {
            return Err(ApiError::bad_request(format!(
                "{field} must be host:port, got '{v}'"
            )));
        }
        let unspecified = v
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_unspecified());
        if unspecified {
            return Err(ApiError::bad_request(format!(
                "{field} {v} is not an address other nodes can reach"
            )));
        }
    }
    Ok(NodeInfo {
        raft_addr: n.quic_addr.clone(),
        http_addr: n.http_addr.clone(),
    })
}

/// Cluster status as this node sees it. Answers whatever the membership,
/// within about a second, also when the cluster cannot commit.
#[utoipa::path(get, path = "/admin/cluster", tag = "Admin",
    responses((status = 200, body = ClusterStatus), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn status(State(edge): State<Edge>, _: Admin) -> Json<ClusterStatus> {
    Json(cluster_status(&edge, None).await)
}

async fn cluster_status(edge: &Edge, outcome: Option<ChangeOutcome>) -> ClusterStatus {
    let cluster = &edge.server.cluster;
    let c = &cluster.consensus;
    let m = c.membership();
    let metrics = c.metrics().borrow().clone();
    let mut members: BTreeMap<u64, MemberView> = BTreeMap::new();
    for (id, info) in &m.nodes {
        members.insert(
            *id,
            MemberView {
                node_id: *id,
                quic_addr: info.raft_addr.clone(),
                http_addr: info.http_addr.clone(),
                role: if m.voters.contains(id) {
                    "voter".into()
                } else {
                    "learner".into()
                },
                matched_index: if *id == c.node_id() {
                    metrics.last_log_index
                } else {
                    c.matched_index(*id).flatten()
                },
            },
        );
    }
    let committed = c.membership_committed().await.unwrap_or(false);
    ClusterStatus {
        node_id: c.node_id(),
        leader: metrics.current_leader,
        state: format!("{:?}", metrics.state),
        applied_index: metrics.last_applied.map(|l| l.index),
        last_log_index: metrics.last_log_index,
        can_commit: cluster.in_quorum(Duration::from_secs(1)).await,
        change_in_progress: !committed,
        joint: m.joint,
        membership_index: m.log_index,
        members: members.into_values().collect(),
        outcome: outcome.map(|o| match o {
            ChangeOutcome::Done => "done".into(),
            ChangeOutcome::InProgress => "in_progress".into(),
        }),
    }
}

type Answer = Result<(StatusCode, Json<ClusterStatus>), ApiError>;

async fn answer(edge: &Edge, outcome: ChangeOutcome) -> Answer {
    let status = match outcome {
        ChangeOutcome::Done => StatusCode::OK,
        ChangeOutcome::InProgress => StatusCode::ACCEPTED,
    };
    Ok((status, Json(cluster_status(edge, Some(outcome)).await)))
}

async fn apply(edge: &Edge, op: MembershipOp) -> Answer {
    let outcome = edge.server.cluster.change_membership(op).await?;
    answer(edge, outcome).await
}

/// Add a node as a learner (it receives the log but does not vote). The
/// node must already run and answer at `quic_addr` as `node-<node_id>` of
/// this cluster's CA; otherwise nothing is committed (409). Adding a member
/// again with the same addresses changes nothing (200).
#[utoipa::path(post, path = "/admin/cluster/add_learner", tag = "Admin", request_body = NodeSpec,
    responses((status = 200, body = ClusterStatus), (status = 202, description = "committing; poll GET /admin/cluster", body = ClusterStatus),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "a member's id or address, the node does not answer as itself, or a change in progress", body = ErrorBody),
        (status = 503, description = "no quorum: the cluster cannot commit now", body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn add_learner(
    State(edge): State<Edge>,
    _: Admin,
    ApiJson(n): ApiJson<NodeSpec>,
) -> Answer {
    let info = check_spec(&n)?;
    apply(
        &edge,
        MembershipOp::AddLearner {
            node_id: n.node_id,
            info,
        },
    )
    .await
}

/// Make a learner a voter. Only a learner that answers now and whose log
/// has caught up with the leader's is promoted; otherwise 409 and nothing
/// changes. Promoting a voter changes nothing (200).
#[utoipa::path(post, path = "/admin/cluster/promote", tag = "Admin", request_body = NodeIdRequest,
    responses((status = 200, body = ClusterStatus), (status = 202, description = "committing; poll GET /admin/cluster", body = ClusterStatus),
        (status = 401, body = ErrorBody), (status = 404, description = "not a member", body = ErrorBody),
        (status = 409, description = "not caught up, not answering, or a change in progress", body = ErrorBody),
        (status = 503, description = "no quorum", body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn promote(
    State(edge): State<Edge>,
    _: Admin,
    ApiJson(n): ApiJson<NodeIdRequest>,
) -> Answer {
    apply(&edge, MembershipOp::Promote { node_id: n.node_id }).await
}

/// Remove a node (to replace a dead node: remove it, then add and promote
/// the new one). Removing a node that is not a member changes nothing (200).
#[utoipa::path(post, path = "/admin/cluster/remove", tag = "Admin", request_body = NodeIdRequest,
    responses((status = 200, body = ClusterStatus), (status = 202, description = "committing; poll GET /admin/cluster", body = ClusterStatus),
        (status = 400, description = "the last voter", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "a change in progress", body = ErrorBody),
        (status = 503, description = "no quorum", body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn remove(
    State(edge): State<Edge>,
    _: Admin,
    ApiJson(n): ApiJson<NodeIdRequest>,
) -> Answer {
    apply(&edge, MembershipOp::Remove { node_id: n.node_id }).await
}

/// How long `join` waits for the new learner to catch up before it answers
/// 202 (the joining node calls again).
const JOIN_CATCH_UP: Duration = Duration::from_secs(4);
/// The longest a `join` call takes: past it, 202 (what was started goes on).
const JOIN_LIMIT: Duration = Duration::from_secs(12);

/// Join: add the node as a learner (checked as for `add_learner`), wait a
/// little for it to catch up, then promote it. 202 when it has not caught
/// up in time: call again (a joining node does, until it is a voter).
#[utoipa::path(post, path = "/admin/cluster/join", tag = "Admin", request_body = NodeSpec,
    responses((status = 200, body = ClusterStatus), (status = 202, description = "added, still catching up or committing; call again", body = ClusterStatus),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn join(State(edge): State<Edge>, _: Admin, ApiJson(n): ApiJson<NodeSpec>) -> Answer {
    let info = check_spec(&n)?;
    match tokio::time::timeout(JOIN_LIMIT, join_steps(&edge, n.node_id, info)).await {
        Ok(answer) => answer,
        Err(_) => answer(&edge, ChangeOutcome::InProgress).await,
    }
}

/// Add as a learner, then promote once caught up (see [`join`]).
async fn join_steps(edge: &Edge, node_id: u64, info: NodeInfo) -> Answer {
    let cluster = &edge.server.cluster;
    let added = cluster
        .change_membership(MembershipOp::AddLearner { node_id, info })
        .await?;
    if added == ChangeOutcome::InProgress {
        return answer(edge, added).await;
    }
    let deadline = tokio::time::Instant::now() + JOIN_CATCH_UP;
    loop {
        match cluster
            .change_membership(MembershipOp::Promote { node_id })
            .await
        {
            Ok(outcome) => return answer(edge, outcome).await,
            // Not caught up yet (or the add still settling): a moment more.
            Err(ConsensusError::Rejected(Rejection::InvalidState(why)))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(node = node_id, %why, "join: waiting for the learner");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(ConsensusError::Rejected(Rejection::InvalidState(_))) => {
                return answer(edge, ChangeOutcome::InProgress).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}
