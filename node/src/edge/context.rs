//! What every edge handler can reach ([`Edge`], the router's state) and the
//! extractor of a backend caller's title region ([`Region`]).

use super::auth;
use super::error::ApiError;
use crate::server::ServerCtx;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use respawn_types::TitleRegionId;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct Edge {
    /// The server node's parts: writes go to the leader through its
    /// cluster handle; reads that must not be stale use its read index.
    pub server: ServerCtx,
    /// Bearer token of the admin API.
    pub admin_token: Arc<String>,
    /// ServerTicket validity window, seconds either side.
    pub ticket_window: i64,
    /// Most issued, unused battle session ids per title region (`[retention]`).
    pub max_issued_ids: u32,
}

/// The caller's title region, proven by its server ticket.
pub struct Region(pub TitleRegionId);

impl FromRequestParts<Edge> for Region {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, edge: &Edge) -> Result<Self, ApiError> {
        let p = auth::presented(&parts.headers)?;
        let now = respawn_types::now_millis() as i64 / 1000;
        // Keys change rarely; this node's applied state is enough to check one.
        let id = edge.server.cluster.consensus.read(|s| {
            let region = TitleRegionId::parse(p.title_region_id)
                .ok()
                .and_then(|id| s.title_regions.get(&id));
            respawn_types::ticket::server::verify(&p, region, now, edge.ticket_window)
        })?;
        Ok(Region(id))
    }
}
