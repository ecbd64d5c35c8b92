//! Endpoints and links: request/response over QUIC bidirectional streams.
//!
//! A [`Link`] is one mutually authenticated QUIC connection. Either side may
//! send requests: each request opens its own bidirectional stream, writes one
//! frame, finishes its half, and reads one reply frame, so any number of
//! requests (up to [`tls::MAX_CONCURRENT_REQUESTS`](crate::tls::MAX_CONCURRENT_REQUESTS)) are in flight at once
//! without head-of-line blocking.
//!
//! A peer that sends a malformed frame (see [`NetError::is_malformed_frame`](crate::NetError::is_malformed_frame))
//! has its whole connection closed with [`CLOSE_MALFORMED_FRAME`]: the link
//! cannot be trusted to stay in sync after that. A request abandoned by its
//! sender (timeout, cancellation) or a reply abandoned by a handler resets
//! only that stream.

mod conn;
mod endpoint;
mod protocol;
mod socket;

pub use conn::{serve_requests, Link, PeerInfo, Responder};
pub use endpoint::Endpoint;
pub use protocol::{
    CLOSE_GOING_AWAY, CLOSE_GRACE, CLOSE_MALFORMED_FRAME, CLOSE_NORMAL, CLOSE_WRONG_PEER_KIND,
    CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, REQUEST_READ_TIMEOUT, RESET_CANCELLED, RESET_NO_RESPONSE,
};
