//! A JSON body extractor whose rejections are [`ApiError`]s: malformed JSON,
//! wrong types, a wrong content type or an oversized body each get their
//! status (400, 422→400, 415, 413) and a message naming the problem. The
//! body must be a JSON object.

use super::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use respawn_types::agent::ErrorCode;
use serde::de::DeserializeOwned;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Parsed as a JSON value first: serde would also take a struct from
        // an array (`[]` for `{}`), which the API does not accept.
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(rej) => return Err(json_rejection(rej)),
        };
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "invalid request body: expected a JSON object ({...})",
            ));
        }
        // Through serde_path_to_error, so the message names the field.
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| {
                let path = e.path().to_string();
                if path == "." {
                    ApiError::bad_request(format!("invalid request body: {}", e.inner()))
                } else {
                    ApiError::bad_request(format!("invalid request body: {path}: {}", e.inner()))
                }
            })
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    let status = rej.status();
    let detail = rej.body_text();
    match rej {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "expected a JSON body with 'Content-Type: application/json'",
        ),
        JsonRejection::JsonDataError(_) => {
            ApiError::bad_request(format!("invalid request body: {detail}"))
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request(format!("malformed JSON: {detail}"))
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, ErrorCode::BadRequest, "request body is too large")
        }
        _ => ApiError::new(status, ErrorCode::BadRequest, detail),
    }
}
