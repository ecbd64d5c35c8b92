//! Console sessions: a stateless cookie signed with HMAC-SHA256, so that any
//! node can check a session another node issued, and nothing is stored on
//! the server. The signing key is derived from the admin token, which every
//! node of a cluster shares (its admin API needs the same token on every
//! node); changing the token signs everybody out.
//!
//! ```text
//! cookie value = base64url(json(Session)) + "." + hex(HMAC-SHA256(key, "session\n" + payload))
//! csrf token   = hex(HMAC-SHA256(key, "csrf\n" + session nonce))
//! key          = HMAC-SHA256(admin token, "respawn-console-session-key-v1")
//! ```
//!
//! A title-region session also carries a tag of that region's secret key,
//! so rotating the key ends its sessions.

use crate::ConsoleError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "respawn_console";
/// How long a session lasts (seconds): 8 hours.
pub const SESSION_SECS: u64 = 8 * 3600;

type HmacSha256 = Hmac<Sha256>;

/// What a session may see and touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Signed in with the admin token: everything.
    Admin,
    /// Signed in with a title region's SecretId and SecretKey: that region only.
    Region {
        title_region_id: String,
        /// [`key_tag`] of the region's secret key when the session began.
        key_tag: String,
    },
}

/// A signed-in session, as carried in the cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub scope: Scope,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Random, per session: the CSRF token is derived from it.
    pub nonce: String,
}

/// Signs and checks sessions and CSRF tokens with a key every node derives
/// alike.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut m = match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            m.update(b"\n");
        }
        m.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(m.finalize().into_bytes().as_slice());
    out
}

/// A short tag of a title region's secret key (not reversible).
pub fn key_tag(secret_key: &str) -> String {
    hex::encode(&mac(secret_key.as_bytes(), &[b"respawn-console-key-tag"])[..8])
}

/// Compares two strings in constant time (for equal lengths).
pub fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Signer {
    /// The signer of a cluster whose admin token is `admin_token`.
    pub fn from_admin_token(admin_token: &str) -> Signer {
        Signer {
            key: mac(admin_token.as_bytes(), &[b"respawn-console-session-key-v1"]),
        }
    }

    /// A new session of `scope` starting at `now` (Unix seconds).
    pub fn issue(&self, scope: Scope, now: u64) -> Session {
        Session {
            scope,
            exp: now + SESSION_SECS,
            nonce: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    /// The cookie value of a session.
    pub fn encode(&self, s: &Session) -> String {
        // A struct of strings and integers always serializes.
        let json = serde_json::to_vec(s).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = hex::encode(mac(&self.key, &[b"session", payload.as_bytes()]));
        format!("{payload}.{tag}")
    }

    /// The session in a cookie value, if it is signed by this cluster and
    /// not expired at `now`.
    pub fn decode(&self, value: &str, now: u64) -> Result<Session, ConsoleError> {
        let (payload, tag) = value
            .split_once('.')
            .ok_or(ConsoleError::Session("malformed cookie"))?;
        let want = hex::encode(mac(&self.key, &[b"session", payload.as_bytes()]));
        if !same(&want, tag) {
            return Err(ConsoleError::Session("bad signature"));
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ConsoleError::Session("malformed cookie"))?;
        let s: Session =
            serde_json::from_slice(&json).map_err(|_| ConsoleError::Session("malformed cookie"))?;
        if s.exp <= now {
            return Err(ConsoleError::Session("expired"));
        }
        Ok(s)
    }

    /// The CSRF token of a session: every form that changes something
    /// carries it, and the handler checks it with [`Signer::check_csrf`].
    pub fn csrf(&self, s: &Session) -> String {
        hex::encode(mac(&self.key, &[b"csrf", s.nonce.as_bytes()]))
    }

    /// Whether `token` is the CSRF token of `s`.
    pub fn check_csrf(&self, s: &Session, token: &str) -> bool {
        same(&self.csrf(s), token)
    }

    /// A token that lets a browser reach virtual server `vs` of title
    /// region `tr` through the console until `exp` (Unix seconds), and
    /// nothing else: `{exp}-{hex HMAC}`. It goes in the path of the
    /// proxied pages, so a VS's own links keep working without the
    /// session cookie (which its sandboxed pages never get).
    pub fn browse_token(&self, tr: &str, vs: &str, exp: u64) -> String {
        let e = exp.to_string();
        let m = mac(
            &self.key,
            &[b"browse", tr.as_bytes(), vs.as_bytes(), e.as_bytes()],
        );
        format!("{e}-{}", hex::encode(&m[..16]))
    }

    /// Whether `token` is a [`Signer::browse_token`] of `tr`/`vs` not
    /// expired at `now`.
    pub fn check_browse(&self, tr: &str, vs: &str, token: &str, now: u64) -> bool {
        let Some(exp) = token
            .split_once('-')
            .and_then(|(e, _)| e.parse::<u64>().ok())
        else {
            return false;
        };
        exp > now && same(&self.browse_token(tr, vs, exp), token)
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` header that stores a session.
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` header that removes the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_session_round_trips_and_any_node_with_the_same_token_accepts_it() {
        let a = Signer::from_admin_token("tok");
        let b = Signer::from_admin_token("tok");
        let s = a.issue(Scope::Admin, 1000);
        let v = a.encode(&s);
        assert_eq!(b.decode(&v, 1001).unwrap(), s);
        assert!(b.check_csrf(&s, &a.csrf(&s)));
    }

    #[test]
    fn forged_tampered_expired_and_foreign_cookies_are_refused() {
        let a = Signer::from_admin_token("tok");
        let s = a.issue(
            Scope::Region {
                title_region_id: "tr-1".into(),
                key_tag: key_tag("k"),
            },
            1000,
        );
        let v = a.encode(&s);
        // Another cluster's token.
        assert!(Signer::from_admin_token("other").decode(&v, 1001).is_err());
        // A payload changed to admin scope, old signature kept.
        let admin = a.issue(Scope::Admin, 1000);
        let forged = format!(
            "{}.{}",
            a.encode(&admin).split_once('.').unwrap().0,
            v.split_once('.').unwrap().1
        );
        assert!(a.decode(&forged, 1001).is_err());
        assert!(a.decode("garbage", 1001).is_err());
        assert!(a.decode(&v, 1000 + SESSION_SECS).is_err());
        assert!(!a.check_csrf(&s, ""));
        assert!(!a.check_csrf(&s, &a.csrf(&admin)));
    }

    #[test]
    fn browse_tokens_open_one_vs_until_they_expire() {
        let a = Signer::from_admin_token("tok");
        let t = a.browse_token("tr-1", "api", 2000);
        assert!(Signer::from_admin_token("tok").check_browse("tr-1", "api", &t, 1999));
        assert!(!a.check_browse("tr-1", "api", &t, 2000));
        assert!(!a.check_browse("tr-1", "other", &t, 1000));
        assert!(!a.check_browse("tr-2", "api", &t, 1000));
        assert!(!Signer::from_admin_token("x").check_browse("tr-1", "api", &t, 1000));
        let later = t.replacen("2000", "9000", 1);
        assert!(!a.check_browse("tr-1", "api", &later, 1000));
        assert!(!a.check_browse("tr-1", "api", "garbage", 1000));
    }

    #[test]
    fn cookies_are_found_in_a_header() {
        assert_eq!(
            cookie_value("a=1; respawn_console=x.y; b=2", COOKIE),
            Some("x.y")
        );
        assert_eq!(cookie_value("a=1", COOKIE), None);
        assert!(set_cookie("v", false).contains("HttpOnly; SameSite=Strict"));
    }
}
