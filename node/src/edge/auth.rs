//! Backend authentication at the edge: reads the `TitleId`,
//! `TitleRegionId`, `SecretId` and `ServerTicket` headers of a PGOS backend
//! API call. The ticket itself (format, signing, verification) is
//! `respawn_types::ticket::server`.

use super::error::ApiError;
use axum::http::HeaderMap;
use respawn_types::ticket::server::{Presented, ServerTicketError};

pub const H_TITLE_ID: &str = "TitleId";
pub const H_TITLE_REGION_ID: &str = "TitleRegionId";
pub const H_SECRET_ID: &str = "SecretId";
pub const H_SERVER_TICKET: &str = "ServerTicket";

/// The identity headers of a request, or which one is missing or not text.
pub fn presented(headers: &HeaderMap) -> Result<Presented<'_>, ServerTicketError> {
    let get = |name: &'static str| -> Result<&str, ServerTicketError> {
        headers
            .get(name)
            .ok_or(ServerTicketError::Missing(name))?
            .to_str()
            .map_err(|_| ServerTicketError::NotText(name))
    };
    Ok(Presented {
        title_id: get(H_TITLE_ID)?,
        title_region_id: get(H_TITLE_REGION_ID)?,
        secret_id: get(H_SECRET_ID)?,
        ticket: get(H_SERVER_TICKET)?,
    })
}

impl From<ServerTicketError> for ApiError {
    fn from(e: ServerTicketError) -> Self {
        ApiError::unauthorized(e.to_string())
    }
}
