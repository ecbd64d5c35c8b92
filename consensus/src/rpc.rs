//! The Raft RPCs as bytes: what `TransportNetwork` sends over the
//! node transport (`Service::Raft`) and `Consensus::handle_raft`
//! answers.
//!
//! # Encoding
//!
//! The outer frame is bincode 2 (`config::standard()`): a request is
//! `WireRequest`, a reply `WireReply`. The openraft messages inside are
//! JSON, like the log store's records (`codec.rs`): log entries carry our
//! commands, whose internally tagged enums bincode cannot decode, and
//! openraft's own types use serde shapes that only a self-describing
//! format is sure to round-trip. The one bulky field, the snapshot chunk's
//! data, travels as raw bytes beside its JSON header rather than as a JSON
//! array of numbers (which would make it about four times larger).
//!
//! # Sizes
//!
//! Everything sent must fit in a node frame
//! ([`respawn_net::MAX_NODE_FRAME_LEN`], 16 MiB). The sender checks before
//! sending: an AppendEntries above [`APPEND_ENTRIES_BUDGET`] with more than
//! one entry is refused with openraft's `PayloadTooLarge`, which makes the
//! leader retry with fewer entries; a snapshot chunk is bounded by
//! `RaftSettings::snapshot_chunk_bytes`.

use crate::codec;
use crate::types::{SnapshotMeta, TypeConfig, Vote};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use respawn_net::{Blob, MAX_NODE_FRAME_LEN};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An encoded AppendEntries above this many bytes is split (if it has more
/// than one entry). It must be sent, received, decoded and made durable on
/// the follower within one heartbeat interval (openraft's timeout for it),
/// so it is far below the frame limit.
pub const APPEND_ENTRIES_BUDGET: usize = 1024 * 1024;

/// Largest encoded RPC that may be sent at all: the node frame limit less
/// room for the transport's envelope.
pub const MAX_RPC_LEN: usize = MAX_NODE_FRAME_LEN - 64 * 1024;

/// A Raft RPC, as sent between members.
#[derive(Clone, Debug)]
pub enum RaftRpc {
    /// Replicate log entries (or a heartbeat).
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Ask for a vote.
    Vote(VoteRequest<u64>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The request frame.
#[derive(Serialize, Deserialize)]
enum WireRequest {
    /// JSON of `AppendEntriesRequest<TypeConfig>`.
    AppendEntries(Blob),
    /// JSON of `VoteRequest<u64>`.
    Vote(Blob),
    /// A snapshot chunk: JSON of [`ChunkHeader`], and the chunk's bytes.
    InstallSnapshot { header: Blob, data: Blob },
}

/// An `InstallSnapshotRequest` without its data.
#[derive(Serialize, Deserialize)]
struct ChunkHeader {
    vote: Vote,
    meta: SnapshotMeta,
    offset: u64,
    done: bool,
}

/// The reply frame.
#[derive(Serialize, Deserialize)]
pub(crate) enum WireReply {
    /// JSON of the RPC's response.
    Ok(Blob),
    /// JSON of the `RaftError` the receiving member answered.
    RaftError(Blob),
    /// The receiver could not decode or answer the request.
    Refused(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_NODE_FRAME_LEN>()
}

fn json<T: Serialize>(value: &T) -> Result<Blob, String> {
    codec::encode(value)
        .map(Blob)
        .map_err(|e| format!("cannot encode: {e}"))
}

fn from_json<T: DeserializeOwned>(blob: &Blob) -> Result<T, String> {
    codec::decode(&blob.0).map_err(|e| format!("cannot decode: {e}"))
}

fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| format!("cannot encode: {e}"))
}

fn unframe<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| format!("undecodable frame: {e}"))?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

impl RaftRpc {
    /// The bytes sent for this RPC.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let wire = match self {
            RaftRpc::AppendEntries(req) => WireRequest::AppendEntries(json(req)?),
            RaftRpc::Vote(req) => WireRequest::Vote(json(req)?),
            RaftRpc::InstallSnapshot(req) => WireRequest::InstallSnapshot {
                header: json(&ChunkHeader {
                    vote: req.vote,
                    meta: req.meta.clone(),
                    offset: req.offset,
                    done: req.done,
                })?,
                // The chunk is copied once here; chunks are bounded by
                // `snapshot_chunk_bytes`.
                data: Blob(req.data.clone()),
            },
        };
        frame(&wire)
    }

    /// Decodes what [`RaftRpc::encode`] produced. Never panics on bad
    /// input.
    pub fn decode(bytes: &[u8]) -> Result<RaftRpc, String> {
        Ok(match unframe::<WireRequest>(bytes)? {
            WireRequest::AppendEntries(j) => RaftRpc::AppendEntries(from_json(&j)?),
            WireRequest::Vote(j) => RaftRpc::Vote(from_json(&j)?),
            WireRequest::InstallSnapshot { header, data } => {
                let h: ChunkHeader = from_json(&header)?;
                RaftRpc::InstallSnapshot(InstallSnapshotRequest {
                    vote: h.vote,
                    meta: h.meta,
                    offset: h.offset,
                    data: data.0,
                    done: h.done,
                })
            }
        })
    }
}

impl WireReply {
    /// The reply for what a member answered.
    pub(crate) fn of<T: Serialize, E: Serialize>(result: &Result<T, E>) -> WireReply {
        let encoded = match result {
            Ok(v) => json(v).map(WireReply::Ok),
            Err(e) => json(e).map(WireReply::RaftError),
        };
        encoded.unwrap_or_else(WireReply::Refused)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // Encoding a reply can only fail on size; a reply is never near
        // the limit, but answer something decodable anyway.
        frame(self).unwrap_or_else(|e| {
            frame(&WireReply::Refused(format!("reply {e}"))).unwrap_or_default()
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<WireReply, String> {
        unframe(bytes)
    }

    /// The response, the remote error, or why there is neither.
    pub(crate) fn into_result<T: DeserializeOwned, E: DeserializeOwned>(
        self,
    ) -> Result<Result<T, E>, String> {
        match self {
            WireReply::Ok(j) => Ok(Ok(from_json(&j)?)),
            WireReply::RaftError(j) => Ok(Err(from_json(&j)?)),
            WireReply::Refused(why) => Err(format!("refused by the receiver: {why}")),
        }
    }
}
