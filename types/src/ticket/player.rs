//! `PlayerTicket`: what a game client presents to invoke a virtual server as a
//! player. The game backend mints it with the title region's secret key and
//! gives it to the client; the edge verifies it and passes the identity to the
//! VS as the `Playerid` and `Sessionid` headers.
//!
//! # Format
//!
//! ```text
//! v1.<player_id>.<session_id>.<expires_at_unix>.<mac>
//!
//! mac = lowercase hex of HMAC-SHA256(
//!         key  = secret_key (its UTF-8 bytes),
//!         data = "v1\n" + title_id + "\n" + title_region_id + "\n"
//!                + player_id + "\n" + session_id + "\n" + expires_at_unix)
//! ```
//!
//! - `player_id` and `session_id` match `[A-Za-z0-9_-]{1,128}` (so they never
//!   contain the `.` separator);
//! - `expires_at_unix` is the expiry in Unix seconds, in decimal without
//!   leading zeros; the ticket is valid while `now <= expires_at_unix`, and a
//!   ticket expiring more than 24 hours from now is rejected;
//! - the MAC is 64 hex digits (uppercase is accepted too); it binds the ticket
//!   to one title and one title region.
//!
//! # Example (a test vector of this module)
//!
//! secret key `sk_test_0123456789abcdef`, title `title-1`, title region `tr-1`,
//! player `player_42`, session `sess-7f3a`, expiry `1790000000`:
//!
//! ```text
//! v1.player_42.sess-7f3a.1790000000.8fa5f3dda68b56864819c7d056ec8699b095d92e47f9447bfe5a1c21779ed797
//! ```
//!
//! Python:
//!
//! ```python
//! import hmac, hashlib
//! def mint(secret_key, title_id, title_region_id, player_id, session_id, expires_at):
//!     msg = "\n".join(["v1", title_id, title_region_id, player_id, session_id, str(expires_at)])
//!     mac = hmac.new(secret_key.encode(), msg.encode(), hashlib.sha256).hexdigest()
//!     return f"v1.{player_id}.{session_id}.{expires_at}.{mac}"
//! ```
//!
//! C#:
//!
//! ```csharp
//! var msg = $"v1\n{titleId}\n{titleRegionId}\n{playerId}\n{sessionId}\n{expiresAt}";
//! using var h = new HMACSHA256(Encoding.UTF8.GetBytes(secretKey));
//! var mac = Convert.ToHexString(h.ComputeHash(Encoding.UTF8.GetBytes(msg))).ToLowerInvariant();
//! var ticket = $"v1.{playerId}.{sessionId}.{expiresAt}.{mac}";
//! ```

use super::{v1_tag_hex, v1_tag_matches};

/// The player behind a game-client call, from a verified `PlayerTicket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerIdentity {
    pub player_id: String,
    pub session_id: String,
}

/// Why a player ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayerTicketError {
    /// The ticket is not `v1.<player_id>.<session_id>.<expires_at>.<mac>`.
    #[error("malformed player ticket: {0}")]
    Malformed(&'static str),
    /// The MAC does not match: wrong key, wrong title / title region, or tampered.
    #[error("player ticket signature does not match")]
    BadSignature,
    /// The ticket's expiry has passed.
    #[error("player ticket expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    /// The ticket claims to be valid for more than 24 hours from now.
    #[error("player ticket expiry {expires_at} is more than 24 h after now ({now})")]
    ExpiryTooFar { expires_at: u64, now: u64 },
}

/// How far in the future a ticket's expiry may be.
pub const MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// Longest ticket `verify` looks at: "v1." + 2 ids of 128 + 20 digits + 64 hex + dots.
const MAX_TICKET_LEN: usize = 3 + 128 + 1 + 128 + 1 + 20 + 1 + 64;

/// Whether `id` is a valid player or session id: `[A-Za-z0-9_-]{1,128}`.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Mints a ticket (see the module doc for the format). `player_id` and
/// `session_id` must match `[A-Za-z0-9_-]{1,128}`, or [`verify`] will reject
/// the ticket.
pub fn mint(
    secret_key: &str,
    title_id: &str,
    title_region_id: &str,
    player_id: &str,
    session_id: &str,
    expires_at_unix: u64,
) -> String {
    let exp = expires_at_unix.to_string();
    let tag = v1_tag_hex(
        secret_key,
        &[title_id, title_region_id, player_id, session_id, &exp],
    );
    format!("v1.{player_id}.{session_id}.{exp}.{tag}")
}

/// Verifies a ticket for `title_id`/`title_region_id` at time `now_unix`: the
/// format, then the MAC (in constant time), then the expiry. Errors:
/// [`PlayerTicketError::Malformed`], [`PlayerTicketError::BadSignature`],
/// [`PlayerTicketError::Expired`], [`PlayerTicketError::ExpiryTooFar`].
pub fn verify(
    secret_key: &str,
    title_id: &str,
    title_region_id: &str,
    ticket: &str,
    now_unix: u64,
) -> Result<PlayerIdentity, PlayerTicketError> {
    if ticket.len() > MAX_TICKET_LEN {
        return Err(PlayerTicketError::Malformed("too long"));
    }
    let rest = ticket
        .strip_prefix("v1.")
        .ok_or(PlayerTicketError::Malformed("does not start with \"v1.\""))?;
    let mut parts = rest.split('.');
    let (Some(player_id), Some(session_id), Some(exp), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(PlayerTicketError::Malformed(
            "expected v1.<player_id>.<session_id>.<expires_at>.<mac>",
        ));
    };
    if !valid_id(player_id) {
        return Err(PlayerTicketError::Malformed(
            "player id must match [A-Za-z0-9_-]{1,128}",
        ));
    }
    if !valid_id(session_id) {
        return Err(PlayerTicketError::Malformed(
            "session id must match [A-Za-z0-9_-]{1,128}",
        ));
    }
    let expires_at = parse_canonical_u64(exp).ok_or(PlayerTicketError::Malformed(
        "expiry must be Unix seconds in decimal",
    ))?;
    if tag.len() != 64 {
        return Err(PlayerTicketError::Malformed("mac must be 64 hex digits"));
    }
    let tag =
        hex::decode(tag).map_err(|_| PlayerTicketError::Malformed("mac must be 64 hex digits"))?;
    let fields = [title_id, title_region_id, player_id, session_id, exp];
    if !v1_tag_matches(secret_key, &fields, &tag) {
        return Err(PlayerTicketError::BadSignature);
    }
    if now_unix > expires_at {
        return Err(PlayerTicketError::Expired {
            expires_at,
            now: now_unix,
        });
    }
    if expires_at > now_unix.saturating_add(MAX_LIFETIME_SECS) {
        return Err(PlayerTicketError::ExpiryTooFar {
            expires_at,
            now: now_unix,
        });
    }
    Ok(PlayerIdentity {
        player_id: player_id.to_owned(),
        session_id: session_id.to_owned(),
    })
}

/// A u64 in decimal, without sign or leading zeros (so that one expiry has one
/// spelling, the one `mint` writes).
fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk_test_0123456789abcdef";
    /// Computed with Python's hmac module (see the module doc).
    const VECTOR: &str = "v1.player_42.sess-7f3a.1790000000.8fa5f3dda68b56864819c7d056ec8699b095d92e47f9447bfe5a1c21779ed797";
    const EXP: u64 = 1_790_000_000;

    #[test]
    fn mint_matches_the_python_vector() {
        assert_eq!(
            mint(KEY, "title-1", "tr-1", "player_42", "sess-7f3a", EXP),
            VECTOR
        );
    }

    #[test]
    fn verify_accepts_the_vector_until_expiry() {
        let id = verify(KEY, "title-1", "tr-1", VECTOR, EXP - 3600).unwrap();
        assert_eq!(
            id,
            PlayerIdentity {
                player_id: "player_42".into(),
                session_id: "sess-7f3a".into()
            }
        );
        assert!(verify(KEY, "title-1", "tr-1", VECTOR, EXP).is_ok());
        assert!(matches!(
            verify(KEY, "title-1", "tr-1", VECTOR, EXP + 1),
            Err(PlayerTicketError::Expired {
                expires_at: EXP,
                ..
            })
        ));
        // Uppercase hex is accepted.
        let upper = format!("{}{}", &VECTOR[..36], VECTOR[36..].to_ascii_uppercase());
        assert!(verify(KEY, "title-1", "tr-1", &upper, EXP).is_ok());
    }

    #[test]
    fn verify_rejects_far_expiries() {
        assert!(verify(KEY, "title-1", "tr-1", VECTOR, EXP - MAX_LIFETIME_SECS).is_ok());
        assert!(matches!(
            verify(KEY, "title-1", "tr-1", VECTOR, EXP - MAX_LIFETIME_SECS - 1),
            Err(PlayerTicketError::ExpiryTooFar { .. })
        ));
    }

    #[test]
    fn verify_rejects_bad_signatures() {
        let now = EXP - 10;
        for (key, title, tr, ticket) in [
            ("other-key", "title-1", "tr-1", VECTOR.to_owned()),
            (KEY, "title-2", "tr-1", VECTOR.to_owned()),
            (KEY, "title-1", "tr-2", VECTOR.to_owned()),
            (
                KEY,
                "title-1",
                "tr-1",
                VECTOR.replace("player_42", "player_43"),
            ),
            (
                KEY,
                "title-1",
                "tr-1",
                VECTOR.replace("sess-7f3a", "sess-7f3b"),
            ),
            (
                KEY,
                "title-1",
                "tr-1",
                VECTOR.replace("1790000000", "1790000001"),
            ),
            (KEY, "title-1", "tr-1", VECTOR.replace("797", "798")),
        ] {
            assert!(
                matches!(
                    verify(key, title, tr, &ticket, now),
                    Err(PlayerTicketError::BadSignature)
                ),
                "{key} {title} {tr} {ticket}"
            );
        }
    }

    #[test]
    fn verify_rejects_malformed_tickets() {
        let now = EXP - 10;
        let mac = &VECTOR[VECTOR.len() - 64..];
        let long = "a".repeat(129);
        for ticket in [
            String::new(),
            "v2.player_42.sess-7f3a.1790000000.00".into(),
            "v1.player_42.sess-7f3a.1790000000".into(),
            format!("v1.player_42.sess-7f3a.1790000000.{mac}.x"),
            format!("v1..sess-7f3a.1790000000.{mac}"),
            format!("v1.pl ayer.sess-7f3a.1790000000.{mac}"),
            format!("v1.{long}.sess-7f3a.1790000000.{mac}"),
            format!("v1.player_42.sess/7f3a.1790000000.{mac}"),
            format!("v1.player_42.sess-7f3a.01790000000.{mac}"),
            format!("v1.player_42.sess-7f3a.+1790000000.{mac}"),
            format!("v1.player_42.sess-7f3a.99999999999999999999999.{mac}"),
            format!("v1.player_42.sess-7f3a.1790000000.{}", &mac[..63]),
            format!("v1.player_42.sess-7f3a.1790000000.{}zz", &mac[..62]),
        ] {
            assert!(
                matches!(
                    verify(KEY, "title-1", "tr-1", &ticket, now),
                    Err(PlayerTicketError::Malformed(_))
                ),
                "{ticket}"
            );
        }
    }

    #[test]
    fn round_trip_with_max_length_ids() {
        let pid = "P".repeat(128);
        let sid = "s_-9".repeat(32);
        let t = mint("k", "t", "r", &pid, &sid, 100);
        let id = verify("k", "t", "r", &t, 100).unwrap();
        assert_eq!((id.player_id, id.session_id), (pid, sid));
        let t = mint("k", "t", "r", "p", "s", 0);
        assert!(verify("k", "t", "r", &t, 0).is_ok());
    }
}
