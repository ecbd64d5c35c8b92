//! The crate's error type.

use serde::{Deserialize, Serialize};

/// Errors returned by `VsRuntime` calls. Problems *of an instance* (a crash,
/// a bad image, ...) are not errors: they arrive as [`InstanceState::Abnormal`](crate::spec::InstanceState::Abnormal)
/// events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum RuntimeError {
    /// The spec or query is malformed.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// An instance with this id is already managed.
    #[error("instance `{0}` already exists")]
    AlreadyExists(String),
    /// No instance with this id is managed.
    #[error("instance `{0}` not found")]
    NotFound(String),
    /// A file-system operation failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// The Docker engine refused or failed a request.
    #[error("docker: {0}")]
    Docker(String),
    /// An internal lock was poisoned by a panic.
    #[error("internal state poisoned")]
    Poisoned,
}

impl From<std::io::Error> for RuntimeError {
    fn from(e: std::io::Error) -> Self {
        RuntimeError::Io(e.to_string())
    }
}
