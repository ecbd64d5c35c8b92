//! quinn configurations with mutual TLS against the cluster CA.
//!
//! Both sides present a certificate issued by the CA in their [`Identity`]
//! and trust that CA only. The server requires a client certificate
//! (rustls `WebPkiClientVerifier`); the client checks the server's
//! certificate for the fixed name [`SERVER_NAME`], so it can dial any
//! address. The crypto provider is aws-lc-rs, passed explicitly (no
//! process-wide default is needed or installed). TLS 1.3 only, as QUIC
//! requires; ALPN [`ALPN`].

pub use crate::pki::SERVER_NAME;
use crate::pki::{subject_from_der, Identity, PeerSubject};
use crate::NetError;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;

/// The ALPN protocol of Respawn links. Bumped with incompatible framing.
pub const ALPN: &[u8] = b"respawn/1";
/// A keep-alive is sent after this much silence.
///
/// Links are within one LAN (agents and nodes of one cluster), so they are
/// sized for fast detection of a dead peer: five keep-alives fit in one
/// idle timeout, so a link survives four lost in a row.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(300);
/// A connection with no traffic (keep-alives included) for this long is
/// dead: its requests in flight fail, and an agent moves to another node.
/// This is how a peer that crashed or was cut off (no close frame) is
/// noticed; a peer that stops cleanly closes its links at once.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Requests that may be in flight at once on one link, in each direction
/// (each request is one bidirectional stream).
pub const MAX_CONCURRENT_REQUESTS: u32 = 1024;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The transport settings of every Respawn connection.
pub fn transport_config() -> TransportConfig {
    let mut config = TransportConfig::default();
    config
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
            IDLE_TIMEOUT.as_millis() as u32,
        ))))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_REQUESTS))
        // Respawn uses bidirectional streams only.
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    config
}

fn roots(identity: &Identity) -> Result<Arc<RootCertStore>, NetError> {
    let mut roots = RootCertStore::empty();
    for cert in identity.ca_certs()? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// A server configuration that presents `identity` and accepts only
/// clients with a certificate signed by its CA.
pub fn server_config(identity: &Identity) -> Result<quinn::ServerConfig, NetError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(identity)?, provider.clone()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain()?, identity.private_key()?)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// A client configuration that presents `identity` and trusts only its CA.
pub fn client_config(identity: &Identity) -> Result<quinn::ClientConfig, NetError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(identity.cert_chain()?, identity.private_key()?)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// The identity the peer of an established connection proved during the
/// handshake (the subject of its verified certificate).
pub fn peer_subject(conn: &quinn::Connection) -> Result<PeerSubject, NetError> {
    let any = conn
        .peer_identity()
        .ok_or_else(|| NetError::PeerIdentity("the peer presented no certificate".into()))?;
    let chain = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| NetError::PeerIdentity("unexpected peer identity type".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| NetError::PeerIdentity("empty certificate chain".into()))?;
    subject_from_der(leaf).map_err(|e| NetError::PeerIdentity(e.to_string()))
}
