//! The node↔node transport seam.
//!
//! Server nodes talk to each other (Raft RPCs, snapshot chunks, forwarded
//! proposals and reads, commands for agents connected elsewhere) only
//! through [`Transport`]: one request, one reply, as bytes, addressed by
//! node id and tagged with the [`Service`] that must handle it. Two
//! implementations exist: [`QuicTransport`] (production: QUIC with mutual
//! TLS, node certificates named `node-<id>`) and [`MemRouter`] (tests: in
//! memory, able to partition any set of nodes, isolate one, delay or drop
//! messages, and take a node away and bring it back).

pub use crate::mem::{MemRouter, MemStats};
pub use crate::node_link::{
    node_name, parse_node_name, serve_node_link, NodeEnvelope, QuicTransport,
    DEFAULT_NODE_CONNECT_TIMEOUT,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use respawn_types::NodeId;
use std::sync::Arc;
use std::time::Duration;

/// Which part of the receiving node handles a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Service {
    /// openraft RPCs (append entries, vote, install snapshot).
    Raft,
    /// Everything else between nodes (forwarded proposals and reads, agent commands, joins).
    Cluster,
}

/// Why a call failed. The request may or may not have been handled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The node could not be reached (down, partitioned away, refused the
    /// connection, or the link broke), with why.
    #[error("node {0} is unreachable: {1}")]
    Unreachable(NodeId, String),
    /// No reply within the call's timeout (the request or the reply may
    /// have been lost, or the node is slow).
    #[error("no answer from node {0} within {1:?}")]
    Timeout(NodeId, Duration),
    /// The transport has no address for the node (see
    /// [`Transport::set_address`]).
    #[error("node {0} is unknown to this transport")]
    UnknownNode(NodeId),
}

/// Sends requests to other nodes.
pub trait Transport: Send + Sync + 'static {
    /// Sends `payload` to node `to` for `service` and waits for the reply.
    fn call(
        &self,
        to: NodeId,
        service: Service,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>>;

    /// Tells the transport where node `node` listens (`host:port`), as
    /// learned from the Raft membership. In-memory transports ignore it.
    fn set_address(&self, _node: NodeId, _addr: &str) {}

    /// Forgets what [`Transport::set_address`] recorded for `node` (and
    /// closes its link): a node that was probed and refused leaves nothing
    /// behind. In-memory transports ignore it.
    fn forget(&self, _node: NodeId) {}

    /// Closes the transport for good (its node is shutting down): drops
    /// its connections and releases its sockets; later calls fail with
    /// `Unreachable`. Resolves once the resources are released, or after
    /// `within`. In-memory transports hold nothing and ignore it.
    fn close(&self, _within: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    /// Silences the transport at once, as a crash of its node would:
    /// nothing more it sends reaches a peer (no close, no goodbye) and
    /// later calls fail. [`close`](Self::close) still releases what it
    /// holds. In-memory transports ignore it (the test router takes the
    /// node away instead).
    fn silence(&self) {}
}

/// Handles requests arriving at a node. `from` is the sender's node id
/// (authenticated by its certificate over QUIC).
pub trait Handler: Send + Sync + 'static {
    /// Handles one request and returns the reply. It cannot fail at this
    /// level: services encode their own errors in the reply bytes.
    fn handle(&self, from: NodeId, service: Service, payload: Bytes) -> BoxFuture<'static, Bytes>;
}

/// Shared handle to a transport.
pub type SharedTransport = Arc<dyn Transport>;
