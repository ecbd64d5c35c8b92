//! How records are encoded in the redb files (log entries, vote, snapshot).
//!
//! JSON, not bincode: the shared domain types use internally tagged enums
//! (`#[serde(tag = "...")]` on `ServerMode` and `ExitReason`), which need a
//! self-describing format to deserialize; bincode 2 answers
//! `AnyNotSupported` for them. Everything stored goes through these two
//! functions, so changing the format is a change here (plus a migration of
//! existing files).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a value for storage.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

/// Decodes a value written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}
