//! What every edge handler can reach ([`Edge`], the router's state) and the
//! extractor of a backend caller's title region ([`Region`]).

use super::auth;
use super::error::ApiError;
use crate::server::ServerCtx;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use respawn_types::{FleetId, TitleRegionId};
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
    /// Server tickets whose MAC this node checked already (bounded; see
    /// [`super::tickets::VerifiedTickets`]).
    pub tickets: Arc<super::tickets::VerifiedTickets>,
    /// Most issued, unused battle session ids per title region (`[retention]`).
    pub max_issued_ids: u32,
    /// The title regions and fleets this node's configuration names: it is
    /// not ready (`/readyz`) until the leader's bootstrap has committed them
    /// and this node has applied them, so a client sent to it right after
    /// start does not get "unknown title region".
    pub configured: Arc<Configured>,
}

/// Ids from the configuration file that must be in the state.
#[derive(Debug, Default, Clone)]
pub struct Configured {
    pub title_regions: Vec<TitleRegionId>,
    pub fleets: Vec<FleetId>,
}

impl Configured {
    /// The ids `cfg` names.
    pub fn from_config(cfg: &respawn_config::Config) -> Self {
        Configured {
            title_regions: cfg
                .title_regions
                .iter()
                .map(|t| TitleRegionId::new_unchecked(t.id.clone()))
                .collect(),
            fleets: cfg.fleets.iter().map(|f| f.to_fleet().id).collect(),
        }
    }

    /// The first configured id `state` does not hold yet, as a sentence.
    pub fn missing_in(&self, state: &respawn_state::ClusterState) -> Option<String> {
        if let Some(tr) = self
            .title_regions
            .iter()
            .find(|t| !state.title_regions.contains_key(*t))
        {
            return Some(format!("configured title region '{tr}' is not applied yet"));
        }
        self.fleets
            .iter()
            .find(|f| !state.fleets.contains_key(*f))
            .map(|f| format!("configured fleet '{f}' is not applied yet"))
    }
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
            edge.tickets.verify(&p, region, now, edge.ticket_window)
        })?;
        Ok(Region(id))
    }
}
