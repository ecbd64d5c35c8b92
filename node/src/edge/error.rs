//! The one error type of the HTTP edge: a status code and a JSON body
//! `{"error": "<code>", "message": "<what was wrong>"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use respawn_consensus::ConsensusError;
use respawn_state::Rejection;
use respawn_types::agent::ErrorCode;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind: bad_request, unauthorized, forbidden, not_found,
    /// expired (404: the record was removed after its retention window),
    /// conflict, invalid_state, too_many_requests (429), not_leader,
    /// unavailable, internal.
    #[schema(example = "not_found")]
    pub error: String,
    /// What was wrong, for humans.
    #[schema(example = "fleet 'fleet-x' not found")]
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }
    /// 404 with code `expired`: the record existed and was removed after
    /// its retention window.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::Expired, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "internal".into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("respawn_http_errors_total", "status" => self.status.as_u16().to_string()).increment(1);
        let body = ErrorBody {
            error: code_name(self.code),
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match &r {
            Rejection::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, r.to_string())
            }
            Rejection::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, r.to_string())
            }
            Rejection::InvalidState(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidState, r.to_string())
            }
            Rejection::BadRequest(_) => ApiError::bad_request(r.to_string()),
            Rejection::Expired { .. } => ApiError::expired(r.to_string()),
            Rejection::TooMany(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                r.to_string(),
            ),
            Rejection::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, r.to_string())
            }
        }
    }
}

impl From<ConsensusError> for ApiError {
    fn from(e: ConsensusError) -> Self {
        match e {
            ConsensusError::Rejected(r) => r.into(),
            ConsensusError::NotLeader { leader } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NotLeader,
                format!("this node cannot commit writes now (leader: {leader:?}); retry"),
            ),
            other => ApiError::unavailable(format!("consensus unavailable: {other}")),
        }
    }
}
