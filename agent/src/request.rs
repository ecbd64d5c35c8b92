//! What every handler of the local SDK API shares: the error answer and its
//! status, authentication by process token, body parsing and the checks of
//! ids and log paths.

use crate::state::{Proc, Shared};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use respawn_types::agent::ErrorCode;
use respawn_types::sdk::{SdkError, SdkOk};
use respawn_types::{validate_id, BattleSessionId, PlayerBattleSessionId, ProcessId};
use serde::de::DeserializeOwned;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Most log paths one ProcessReady may name, and longest path.
const MAX_LOG_PATHS: usize = 64;
const MAX_LOG_PATH_LEN: usize = 4096;

/// HTTP status for an error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::Expired => StatusCode::NOT_FOUND,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Conflict | ErrorCode::InvalidState => StatusCode::CONFLICT,
        ErrorCode::NotLeader | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer: a status and an [`SdkError`] body.
#[derive(Debug)]
pub struct SdkApiError {
    status: StatusCode,
    body: SdkError,
}

impl SdkApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_status(status_for(code), code, message)
    }

    pub(crate) fn with_status(
        status: StatusCode,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            body: SdkError {
                error: code,
                message: message.into(),
            },
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
}

impl IntoResponse for SdkApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

pub(crate) type SdkApiResult = Result<Json<SdkOk>, SdkApiError>;

pub(crate) fn ok() -> SdkApiResult {
    Ok(Json(SdkOk { ok: true }))
}

/// The process a request comes from, by its bearer token.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<ProcessId, SdkApiError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| {
        SdkApiError::unauthorized(
            "missing Authorization header; send `Authorization: Bearer <RESPAWN_PROCESS_TOKEN>`",
        )
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| {
            SdkApiError::unauthorized(
                "the Authorization header must be `Bearer <RESPAWN_PROCESS_TOKEN>`",
            )
        })?;
    shared.reg().tokens.get(token).cloned().ok_or_else(|| {
        SdkApiError::unauthorized("unknown process token (has this process exited?)")
    })
}

/// Runs `f` on the process under the registry lock.
pub(crate) fn with_proc<R>(
    shared: &Shared,
    id: &ProcessId,
    f: impl FnOnce(&Shared, &mut Proc) -> Result<R, SdkApiError>,
) -> Result<R, SdkApiError> {
    let mut reg = shared.reg();
    let p = reg.procs.get_mut(id).ok_or_else(|| {
        SdkApiError::unauthorized("unknown process token (has this process exited?)")
    })?;
    f(shared, p)
}

/// Parses a JSON body, with a 400 naming the problem.
pub(crate) fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, SdkApiError> {
    let bytes = read(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| SdkApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub(crate) fn read(body: Result<Bytes, BytesRejection>) -> Result<Bytes, SdkApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            SdkApiError::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BadRequest,
                format!("request body is larger than {MAX_BODY} bytes"),
            )
        } else {
            SdkApiError::bad_request(format!("cannot read the request body: {}", r.body_text()))
        }
    })
}

pub(crate) fn check_id(field: &str, kind: &'static str, id: &str) -> Result<(), SdkApiError> {
    validate_id(kind, id).map_err(|e| SdkApiError::bad_request(format!("{field}: {e}")))
}

pub(crate) fn check_bs(id: &BattleSessionId) -> Result<(), SdkApiError> {
    check_id("battle_session_id", BattleSessionId::KIND, id.as_str())
}

pub(crate) fn check_pbs(id: &PlayerBattleSessionId) -> Result<(), SdkApiError> {
    check_id(
        "player_battle_session_id",
        PlayerBattleSessionId::KIND,
        id.as_str(),
    )
}

/// The `log_paths` of a ProcessReady within their bounds.
pub(crate) fn check_log_paths(paths: &[String]) -> Result<(), SdkApiError> {
    if paths.len() > MAX_LOG_PATHS {
        return Err(SdkApiError::bad_request(format!(
            "at most {MAX_LOG_PATHS} log_paths are allowed"
        )));
    }
    if let Some(bad) = paths
        .iter()
        .find(|p| p.is_empty() || p.len() > MAX_LOG_PATH_LEN || p.contains('\0'))
    {
        return Err(SdkApiError::bad_request(format!(
            "log path {:?} is empty, longer than {MAX_LOG_PATH_LEN} bytes or contains NUL",
            bad.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}
