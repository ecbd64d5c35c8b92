//! Certificates: a cluster CA, node and agent identities issued by it, and
//! the development PKI kept under a data directory.
//!
//! An identity certificate carries:
//! - subject `CN=<name>`, `OU=node` or `OU=agent`, `O=Respawn`;
//! - SANs `respawn` (the fixed TLS server name, so a client can dial any
//!   IP), `localhost`, `127.0.0.1`, the caller's extra names, and the URI
//!   `respawn://<kind>/<name>`;
//! - both extended key usages (TLS server and TLS client), so one identity
//!   serves both ends of a link.
//!
//! Keys are ECDSA P-256, generated with aws-lc-rs.

use crate::NetError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use respawn_types::text::truncate_utf8;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The TLS server name every identity certificate carries; clients always
/// connect with it, whatever address they dial.
pub const SERVER_NAME: &str = "respawn";

/// Organization of every certificate subject.
const ORGANIZATION: &str = "Respawn";

/// Validity of a CA certificate.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Validity of an identity certificate.
pub const IDENTITY_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// [`ensure_dev_pki`] re-issues an identity that expires sooner than this.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates start being valid this long before their issue time, to
/// tolerate clock skew between hosts.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Name of the node identity created by [`ensure_dev_pki`].
pub const DEV_NODE_NAME: &str = "dev-node";
/// Name of the agent identity created by [`ensure_dev_pki`].
pub const DEV_AGENT_NAME: &str = "dev-agent";

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// What a certificate holder is: a control-plane node or a host agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// A control-plane node (`respawn server`).
    Node,
    /// A host agent (`respawn agent`).
    Agent,
}

impl PeerKind {
    /// The kind as written in certificates (`OU`) and URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Node => "node",
            PeerKind::Agent => "agent",
        }
    }
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PeerKind {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        match s {
            "node" => Ok(PeerKind::Node),
            "agent" => Ok(PeerKind::Agent),
            other => Err(NetError::InvalidCertificate(format!(
                "unknown peer kind {:?}",
                truncate_utf8(other, 32)
            ))),
        }
    }
}

/// Who a certificate names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerSubject {
    /// The subject common name. Always passes
    /// [`respawn_types::validate_id`], so it can be parsed into an id newtype
    /// (for an agent, typically its `HostId`).
    pub name: String,
    /// Node or agent.
    pub kind: PeerKind,
}

/// Entry point for creating a new certificate authority.
pub struct Pki;

impl Pki {
    /// Generates a new self-signed CA with the given subject common name.
    pub fn generate_ca(common_name: &str) -> Result<CaBundle, NetError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, ORGANIZATION);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(CaBundle {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A CA certificate and its private key, able to issue identities.
#[derive(Clone)]
pub struct CaBundle {
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CaBundle {
    /// Wraps an existing CA certificate and key, checking that they parse.
    pub fn from_pem(cert_pem: String, key_pem: String) -> Result<Self, NetError> {
        let bundle = Self { cert_pem, key_pem };
        bundle.issuer()?;
        Ok(bundle)
    }

    /// The CA certificate (PEM). This is what peers trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PKCS#8 PEM).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Reads `ca.pem` and `ca.key` from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, NetError> {
        let cert_pem = read_file(&dir.join(CA_CERT_FILE))?;
        let key_pem = read_file(&dir.join(CA_KEY_FILE))?;
        Self::from_pem(cert_pem, key_pem)
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, creating it.
    pub fn write_dir(&self, dir: &Path) -> Result<(), NetError> {
        create_private_dir(dir)?;
        write_file(&dir.join(CA_CERT_FILE), &self.cert_pem, false)?;
        write_file(&dir.join(CA_KEY_FILE), &self.key_pem, true)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, NetError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, key)?)
    }

    /// Issues an identity certificate for a peer of `kind` called `name`.
    ///
    /// `name` must be a valid identifier (letters, digits, `-`, `_`, `.`; at
    /// most 128 characters). `sans` are extra DNS names or IP addresses;
    /// `respawn`, `localhost` and `127.0.0.1` are always included.
    pub fn issue(&self, kind: PeerKind, name: &str, sans: &[String]) -> Result<Identity, NetError> {
        respawn_types::validate_id("identity name", name).map_err(|e| NetError::InvalidName {
            name: truncate_utf8(name, 64).to_owned(),
            reason: e.to_string(),
        })?;
        let mut names: Vec<String> = vec![
            SERVER_NAME.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        for san in sans {
            if !names.contains(san) {
                names.push(san.clone());
            }
        }
        let mut params = CertificateParams::new(names)?;
        let uri = format!("respawn://{kind}/{name}");
        params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, kind.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, ORGANIZATION);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, IDENTITY_VALIDITY);

        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(Identity {
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }
}

/// A peer's certificate chain and key, and the CA it trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The identity certificate (first) and any intermediates, PEM.
    pub cert_chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The CA certificate that signs every peer this identity accepts.
    pub ca_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .field("ca_pem", &self.ca_pem)
            .finish()
    }
}

impl Identity {
    /// Reads `ca.pem`, `cert.pem` and `key.pem` from `dir` and checks that
    /// they parse and that the certificate names a Respawn peer.
    pub fn load_dir(dir: &Path) -> Result<Self, NetError> {
        let identity = Self {
            ca_pem: read_file(&dir.join(CA_CERT_FILE))?,
            cert_chain_pem: read_file(&dir.join(CERT_FILE))?,
            key_pem: read_file(&dir.join(KEY_FILE))?,
        };
        identity.private_key()?;
        identity.ca_certs()?;
        identity.subject()?;
        Ok(identity)
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` (mode 0600) into `dir`,
    /// creating it.
    pub fn write_dir(&self, dir: &Path) -> Result<(), NetError> {
        create_private_dir(dir)?;
        write_file(&dir.join(CA_CERT_FILE), &self.ca_pem, false)?;
        write_file(&dir.join(CERT_FILE), &self.cert_chain_pem, false)?;
        write_file(&dir.join(KEY_FILE), &self.key_pem, true)
    }

    /// Who this identity's certificate names.
    pub fn subject(&self) -> Result<PeerSubject, NetError> {
        let chain = self.cert_chain()?;
        // `cert_chain` never returns an empty chain.
        let Some(leaf) = chain.first() else {
            return Err(NetError::Pem("no certificate in the chain".into()));
        };
        subject_from_der(leaf)
    }

    /// Seconds since the Unix epoch after which the certificate is expired.
    pub fn not_after_unix(&self) -> Result<i64, NetError> {
        let chain = self.cert_chain()?;
        let Some(leaf) = chain.first() else {
            return Err(NetError::Pem("no certificate in the chain".into()));
        };
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| NetError::InvalidCertificate(e.to_string()))?;
        Ok(cert.validity().not_after.timestamp())
    }

    /// The certificate chain, DER.
    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, NetError> {
        parse_certs(&self.cert_chain_pem, "certificate chain")
    }

    /// The CA certificates, DER.
    pub fn ca_certs(&self) -> Result<Vec<CertificateDer<'static>>, NetError> {
        parse_certs(&self.ca_pem, "CA certificate")
    }

    /// The private key, DER.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, NetError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| NetError::Pem(format!("private key: {e}")))
    }
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Pem(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::Pem(format!("{what}: no certificate found")));
    }
    Ok(certs)
}

/// Reads the Respawn identity (common name and kind) out of a DER
/// certificate. The certificate is untrusted input here: anything unexpected
/// is an error.
pub fn subject_from_der(der: &[u8]) -> Result<PeerSubject, NetError> {
    let invalid = |msg: String| NetError::InvalidCertificate(msg);
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| invalid(e.to_string()))?;
    let subject = cert.subject();
    let name = single_attr(subject.iter_common_name(), "common name")?;
    let kind: PeerKind =
        single_attr(subject.iter_organizational_unit(), "organizational unit")?.parse()?;
    respawn_types::validate_id("peer name", &name)
        .map_err(|e| invalid(format!("common name {:?}: {e}", truncate_utf8(&name, 64))))?;

    // A `respawn://` URI, when present, must agree with the subject.
    let expected_uri = format!("respawn://{kind}/{name}");
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = general {
                if uri.starts_with("respawn://") && *uri != expected_uri {
                    return Err(invalid(format!(
                        "URI {:?} does not match the subject",
                        truncate_utf8(uri, 64)
                    )));
                }
            }
        }
    }
    Ok(PeerSubject { name, kind })
}

/// The value of the one attribute `it` yields; none or several is an error.
fn single_attr<'b, 'c: 'b>(
    mut it: impl Iterator<Item = &'b x509_parser::x509::AttributeTypeAndValue<'c>>,
    what: &str,
) -> Result<String, NetError> {
    match (it.next(), it.next()) {
        (Some(attr), None) => attr
            .as_str()
            .map(str::to_owned)
            .map_err(|e| NetError::InvalidCertificate(format!("{what}: {e}"))),
        (None, _) => Err(NetError::InvalidCertificate(format!(
            "no {what} in the subject"
        ))),
        (Some(_), Some(_)) => Err(NetError::InvalidCertificate(format!(
            "more than one {what} in the subject"
        ))),
    }
}

/// Makes sure the development PKI exists under `data_dir/pki` and returns
/// the node and agent identities.
///
/// Layout:
/// ```text
/// data_dir/pki/ca/ca.pem, ca.key          the local CA
/// data_dir/pki/node/ca.pem, cert.pem, key.pem    identity "dev-node" (kind node)
/// data_dir/pki/agent/ca.pem, cert.pem, key.pem   identity "dev-agent" (kind agent)
/// ```
///
/// The first call generates everything; later calls load it. An identity
/// that is missing, not signed by the CA on disk, of the wrong kind or close
/// to expiry is (re-)issued. A CA directory holding only one of its two
/// files is an error (delete it to start over), because silently replacing
/// a CA would orphan every certificate it signed.
pub fn ensure_dev_pki(data_dir: &Path) -> Result<(Identity, Identity), NetError> {
    let root = data_dir.join("pki");
    let ca_dir = root.join("ca");
    let cert_exists = ca_dir.join(CA_CERT_FILE).exists();
    let key_exists = ca_dir.join(CA_KEY_FILE).exists();
    let ca = match (cert_exists, key_exists) {
        (true, true) => CaBundle::load_dir(&ca_dir)?,
        (false, false) => {
            let ca = Pki::generate_ca("Respawn development CA")?;
            ca.write_dir(&ca_dir)?;
            tracing::info!(dir = %ca_dir.display(), "generated development CA");
            ca
        }
        _ => return Err(NetError::File {
            path: ca_dir,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "incomplete CA (need both ca.pem and ca.key); remove the directory to regenerate",
            ),
        }),
    };
    let node = load_or_issue(&ca, &root.join("node"), PeerKind::Node, DEV_NODE_NAME)?;
    let agent = load_or_issue(&ca, &root.join("agent"), PeerKind::Agent, DEV_AGENT_NAME)?;
    Ok((node, agent))
}

fn load_or_issue(
    ca: &CaBundle,
    dir: &Path,
    kind: PeerKind,
    name: &str,
) -> Result<Identity, NetError> {
    if dir.join(CERT_FILE).exists() {
        match Identity::load_dir(dir) {
            Ok(identity) if identity_is_current(&identity, ca, kind, name) => return Ok(identity),
            Ok(_) => tracing::info!(dir = %dir.display(), "re-issuing stale identity"),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "re-issuing unreadable identity")
            }
        }
    }
    let identity = ca.issue(kind, name, &[])?;
    identity.write_dir(dir)?;
    Ok(identity)
}

fn identity_is_current(identity: &Identity, ca: &CaBundle, kind: PeerKind, name: &str) -> bool {
    let same_ca = identity.ca_pem.trim() == ca.cert_pem.trim();
    let subject_ok = identity
        .subject()
        .is_ok_and(|s| s.kind == kind && s.name == name);
    let renew_at = unix_secs(SystemTime::now() + RENEW_BEFORE);
    let fresh = identity
        .not_after_unix()
        .is_ok_and(|t| t > i64::try_from(renew_at).unwrap_or(i64::MAX));
    same_ca && subject_ok && fresh
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Valid from a little before now until `validity` from now.
fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = unix_secs(SystemTime::now());
    // Both instants are within a few decades of now: far from the limits
    // of the date type (year 9999), so the additions cannot overflow.
    params.not_before = epoch + Duration::from_secs(now.saturating_sub(BACKDATE.as_secs()));
    params.not_after = epoch + Duration::from_secs(now) + validity;
}

fn read_file(path: &Path) -> Result<String, NetError> {
    std::fs::read_to_string(path).map_err(|source| NetError::File {
        path: path.to_owned(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), NetError> {
    let err = |source| NetError::File {
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(err)
}

/// Writes `contents` to `path` through a temporary file and a rename, so a
/// crash never leaves a half-written certificate or key. `secret` files get
/// mode 0600.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), NetError> {
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        path.with_file_name(name)
    };
    let err = |p: &Path| {
        let p = p.to_owned();
        move |source| NetError::File { path: p, source }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(err(&tmp))?;
    #[cfg(unix)]
    if secret {
        // The mode given to `open` applies only when the file is created; a
        // leftover temporary file keeps its old mode unless reset here.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err(&tmp))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    file.write_all(contents.as_bytes()).map_err(err(&tmp))?;
    file.sync_all().map_err(err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err(path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn issued_identity_names_its_subject() {
        let ca = Pki::generate_ca("test CA").unwrap();
        let id = ca
            .issue(
                PeerKind::Agent,
                "host-7",
                &["10.1.2.3".into(), "a.example".into()],
            )
            .unwrap();
        assert_eq!(
            id.subject().unwrap(),
            PeerSubject {
                name: "host-7".into(),
                kind: PeerKind::Agent
            }
        );
        assert_eq!(id.ca_pem, ca.cert_pem());
        assert!(!format!("{id:?}").contains("PRIVATE KEY"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));

        let der = id.cert_chain().unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|g| {
                use x509_parser::extensions::GeneralName;
                match g {
                    GeneralName::DNSName(s) => format!("dns:{s}"),
                    GeneralName::URI(s) => format!("uri:{s}"),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => format!("ip:{}", std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])),
                        _ => format!("ip:{b:?}"),
                    },
                    other => format!("{other}"),
                }
            })
            .collect();
        assert_eq!(
            sans,
            [
                "dns:respawn",
                "dns:localhost",
                "ip:127.0.0.1",
                "ip:10.1.2.3",
                "dns:a.example",
                "uri:respawn://agent/host-7"
            ]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!cert.is_ca());
    }

    #[test]
    fn invalid_names_are_refused() {
        let ca = Pki::generate_ca("test CA").unwrap();
        for bad in ["", "a b", "x/y", &"n".repeat(200)] {
            let err = ca.issue(PeerKind::Node, bad, &[]).unwrap_err();
            assert!(
                matches!(err, NetError::InvalidName { .. }),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn ca_roundtrips_through_disk_and_still_issues() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Pki::generate_ca("disk CA").unwrap();
        ca.write_dir(dir.path()).unwrap();
        let back = CaBundle::load_dir(dir.path()).unwrap();
        assert_eq!(back.cert_pem(), ca.cert_pem());
        let id = back.issue(PeerKind::Node, "n1", &[]).unwrap();
        assert_eq!(id.subject().unwrap().kind, PeerKind::Node);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn identity_roundtrips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Pki::generate_ca("disk CA").unwrap();
        let id = ca.issue(PeerKind::Agent, "host-1", &[]).unwrap();
        id.write_dir(dir.path()).unwrap();
        assert_eq!(Identity::load_dir(dir.path()).unwrap(), id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A corrupted certificate is an error, not a panic.
        std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
        assert!(Identity::load_dir(dir.path()).is_err());
    }

    #[test]
    fn dev_pki_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (node1, agent1) = ensure_dev_pki(dir.path()).unwrap();
        assert_eq!(node1.subject().unwrap().kind, PeerKind::Node);
        assert_eq!(node1.subject().unwrap().name, DEV_NODE_NAME);
        assert_eq!(agent1.subject().unwrap().kind, PeerKind::Agent);
        assert_eq!(node1.ca_pem, agent1.ca_pem);
        let ca_pem = std::fs::read_to_string(dir.path().join("pki/ca/ca.pem")).unwrap();
        assert_eq!(node1.ca_pem, ca_pem);

        let (node2, agent2) = ensure_dev_pki(dir.path()).unwrap();
        assert_eq!(node2, node1, "second call must load, not regenerate");
        assert_eq!(agent2, agent1);

        // An identity removed from disk is re-issued by the same CA.
        std::fs::remove_dir_all(dir.path().join("pki/agent")).unwrap();
        let (node3, agent3) = ensure_dev_pki(dir.path()).unwrap();
        assert_eq!(node3, node1);
        assert_ne!(agent3.cert_chain_pem, agent1.cert_chain_pem);
        assert_eq!(agent3.ca_pem, ca_pem);

        // Half a CA is refused rather than silently replaced.
        std::fs::remove_file(dir.path().join("pki/ca/ca.key")).unwrap();
        assert!(ensure_dev_pki(dir.path()).is_err());
    }

    #[test]
    fn subject_parsing_rejects_foreign_certificates() {
        // A certificate without the OU that names the kind.
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(subject_from_der(cert.der()).is_err());
        assert!(subject_from_der(b"garbage").is_err());
        assert!(subject_from_der(&[]).is_err());
    }
}
