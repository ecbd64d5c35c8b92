//! The admin API (`/admin/*`): cluster status and membership changes,
//! authenticated by `Authorization: Bearer <admin token>` (compared in
//! constant time). Any node answers; changes are carried out by the leader.

use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use crate::cluster::wire::MembershipOp;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use respawn_consensus::NodeInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    pub members: Vec<MemberView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub node_id: u64,
    /// QUIC address other nodes and agents use (`host:port`).
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
    if n.node_id == 0 {
        return Err(ApiError::bad_request("node_id must not be 0"));
    }
    for (field, v) in [("quic_addr", &n.quic_addr), ("http_addr", &n.http_addr)] {
        let ok = v
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !ok {
            return Err(ApiError::bad_request(format!(
                "{field} must be host:port, got '{v}'"
            )));
        }
    }
    Ok(NodeInfo {
        raft_addr: n.quic_addr.clone(),
        http_addr: n.http_addr.clone(),
    })
}

/// Cluster status as this node sees it.
#[utoipa::path(get, path = "/admin/cluster", tag = "Admin",
    responses((status = 200, body = ClusterStatus), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn status(State(edge): State<Edge>, _: Admin) -> Json<ClusterStatus> {
    let c = &edge.server.cluster.consensus;
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
            },
        );
    }
    Json(ClusterStatus {
        node_id: c.node_id(),
        leader: metrics.current_leader,
        state: format!("{:?}", metrics.state),
        applied_index: metrics.last_applied.map(|l| l.index),
        members: members.into_values().collect(),
    })
}

async fn apply(edge: &Edge, op: MembershipOp) -> Result<Json<ClusterStatus>, ApiError> {
    edge.server.cluster.change_membership(op).await?;
    Ok(status(State(edge.clone()), Admin).await)
}

/// Add a node as a learner (it receives the log but does not vote).
#[utoipa::path(post, path = "/admin/cluster/add_learner", tag = "Admin", request_body = NodeSpec,
    responses((status = 200, body = ClusterStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn add_learner(
    State(edge): State<Edge>,
    _: Admin,
    ApiJson(n): ApiJson<NodeSpec>,
) -> Result<Json<ClusterStatus>, ApiError> {
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

/// Make a learner a voter.
#[utoipa::path(post, path = "/admin/cluster/promote", tag = "Admin", request_body = NodeIdRequest,
    responses((status = 200, body = ClusterStatus), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn promote(
    State(edge): State<Edge>,
    _: Admin,
    ApiJson(n): ApiJson<NodeIdRequest>,
) -> Result<Json<ClusterStatus>, ApiError> {
    if !edge
        .server
        .cluster
        .consensus
        .membership()
        .nodes
        .contains_key(&n.node_id)
    {
        return Err(ApiError::not_found(format!(
            "node {} is not a member; add it as a learner first",
            n.node_id
        )));
    }
    apply(&edge, MembershipOp::Promote { node_id: n.node_id }).await
}

/// Remove a node from the voters (to replace a dead node: remove it, then
/// add and promote the new one).
#[utoipa::path(post, path = "/admin/cluster/remove", tag = "Admin", request_body = NodeIdRequest,
    responses((status = 200, body = ClusterStatus), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn remove(
    State(edge): State<Edge>,
    _: Admin,
    ApiJson(n): ApiJson<NodeIdRequest>,
) -> Result<Json<ClusterStatus>, ApiError> {
    apply(&edge, MembershipOp::Remove { node_id: n.node_id }).await
}

/// Join: add the node as a learner, wait for it to catch up, then promote it.
#[utoipa::path(post, path = "/admin/cluster/join", tag = "Admin", request_body = NodeSpec,
    responses((status = 200, body = ClusterStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn join(
    State(edge): State<Edge>,
    _: Admin,
    ApiJson(n): ApiJson<NodeSpec>,
) -> Result<Json<ClusterStatus>, ApiError> {
    let info = check_spec(&n)?;
    edge.server
        .cluster
        .change_membership(MembershipOp::AddLearner {
            node_id: n.node_id,
            info,
        })
        .await?;
    apply(&edge, MembershipOp::Promote { node_id: n.node_id }).await
}
