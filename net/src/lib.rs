//! QUIC networking for Respawn: mutual TLS over quinn, certificates issued
//! with rcgen, and request/response exchanges carried as length-prefixed
//! bincode frames, one bidirectional stream per request.
//!
//! - [`pki`]: a certificate authority, node and agent identities, the
//!   development PKI laid out under a data directory.
//! - [`tls`]: quinn server and client configurations that require and present
//!   certificates signed by the cluster CA, and the peer identity read back
//!   from a certificate.
//! - [`frame`]: the frame format (4-byte big-endian length + bincode 2).
//! - [`link`]: endpoints, links (one QUIC connection each) and the
//!   request/response helpers built on them.
//! - [`transport`]: the node↔node seam ([`Transport`], [`Handler`]) and its
//!   two implementations, [`QuicTransport`] and the in-memory
//!   [`MemRouter`] with fault injection for tests.
//!
//! Everything received from a peer is untrusted: malformed input gives an
//! error (and closes the link), never a panic.

#![warn(missing_docs)]

pub mod frame;
pub mod link;
mod mem;
mod node_link;
pub mod pki;
pub mod tls;
pub mod transport;

pub use frame::{read_frame, write_frame, Blob, MAX_NODE_FRAME_LEN};
pub use link::{serve_requests, Endpoint, Link, PeerInfo, Responder};
pub use pki::{ensure_dev_pki, CaBundle, Identity, PeerKind, PeerSubject, Pki};
pub use transport::{
    node_name, parse_node_name, serve_node_link, Handler, MemRouter, MemStats, QuicTransport,
    Service, SharedTransport, Transport, TransportError,
};

use std::path::PathBuf;
use std::time::Duration;

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A file of the PKI could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file or directory concerned.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Generating or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    CertGen(#[from] rcgen::Error),
    /// A PEM file or string does not hold what it should.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A certificate does not carry a valid Respawn identity.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// A name given to [`pki::CaBundle::issue`] is not a valid identity name.
    #[error("invalid identity name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Building a TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Building the client-certificate verifier failed.
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration lacks a cipher suite QUIC can start with.
    #[error("TLS configuration unusable for QUIC: {0}")]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// Binding or using the UDP socket failed.
    #[error("socket: {0}")]
    Socket(std::io::Error),
    /// A connection could not be started.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The peer's certificate is missing or does not name a Respawn peer.
    #[error("peer identity: {0}")]
    PeerIdentity(String),
    /// The peer is not of the kind this side expects.
    #[error("expected a {expected} peer, got a {got} peer")]
    UnexpectedPeerKind {
        /// The kind required.
        expected: PeerKind,
        /// The kind presented.
        got: PeerKind,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// A frame announces (or would need) more bytes than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced or encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("frame truncated: stream ended inside the {part}")]
    Truncated {
        /// `"length prefix"` or `"payload"`.
        part: &'static str,
    },
    /// The frame's payload does not decode as the expected message.
    #[error("undecodable frame payload: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The payload decoded but left bytes unread.
    #[error("frame payload has {extra} trailing bytes")]
    TrailingBytes {
        /// Unread bytes after the message.
        extra: usize,
    },
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The peer reset the stream instead of answering (its handler was
    /// dropped or cancelled).
    #[error("peer reset the stream with code {code}")]
    StreamReset {
        /// The application error code.
        code: u64,
    },
    /// Reading or writing a stream failed.
    #[error("stream I/O: {0}")]
    Io(std::io::Error),
}

impl NetError {
    /// True when the error means the peer sent bytes that are not a valid
    /// frame (as opposed to a transport failure or a local problem). Such a
    /// peer has its link closed.
    pub fn is_malformed_frame(&self) -> bool {
        matches!(
            self,
            NetError::FrameTooLarge { .. }
                | NetError::Truncated { .. }
                | NetError::Decode(_)
                | NetError::TrailingBytes { .. }
        )
    }
}

/// Result with [`NetError`].
pub type Result<T, E = NetError> = std::result::Result<T, E>;
