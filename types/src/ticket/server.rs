//! `ServerTicket`: what a game backend sends, with the `TitleId`,
//! `TitleRegionId` and `SecretId` headers, to call the PGOS backend API.
//!
//! A title region has a server key: a public `secret_id` and a private
//! `secret_key`. A ticket is
//!
//! ```text
//! ServerTicket = "v1." + <unix seconds> + "." + hex(HMAC-SHA256(secret_key, message))
//! message      = "v1\n" + TitleId + "\n" + TitleRegionId + "\n" + SecretId + "\n" + <unix seconds>
//! ```
//!
//! valid while its timestamp is within the configured window (default
//! ±300 s) of the server's clock. The MAC is compared in constant time.
//! `docs/http-api.md` has a worked example.

use super::{v1_tag_hex, v1_tag_matches};
use crate::ids::TitleRegionId;
use crate::model::TitleRegion;

/// Computes the ticket a backend sends at unix time `ts`.
pub fn sign_ticket(
    secret_key: &str,
    title_id: &str,
    title_region_id: &str,
    secret_id: &str,
    ts: i64,
) -> String {
    let tag = v1_tag_hex(
        secret_key,
        &[title_id, title_region_id, secret_id, &ts.to_string()],
    );
    format!("v1.{ts}.{tag}")
}

/// Why a server ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerTicketError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("header {0} is not valid text")]
    NotText(&'static str),
    #[error("unknown title region")]
    UnknownRegion,
    #[error("TitleId does not match the title region")]
    WrongTitle,
    #[error("SecretId does not match the title region's key")]
    WrongSecretId,
    #[error("ServerTicket is malformed: expected v1.<unix seconds>.<64 hex digits>")]
    Malformed,
    #[error("ServerTicket has expired or is not yet valid (timestamp {ts}, server time {now}, window ±{window}s)")]
    Expired { ts: i64, now: i64, window: i64 },
    #[error("ServerTicket signature does not match")]
    BadSignature,
}

/// The identity headers of a request, as given.
pub struct Presented<'a> {
    pub title_id: &'a str,
    pub title_region_id: &'a str,
    pub secret_id: &'a str,
    pub ticket: &'a str,
}

/// Verifies a presented ticket against the title region it names, at unix
/// time `now`, accepting time stamps at most `window` seconds away.
pub fn verify(
    p: &Presented<'_>,
    region: Option<&TitleRegion>,
    now: i64,
    window: i64,
) -> Result<TitleRegionId, ServerTicketError> {
    let region = region.ok_or(ServerTicketError::UnknownRegion)?;
    if region.title_id.as_str() != p.title_id {
        return Err(ServerTicketError::WrongTitle);
    }
    if region.secret_id.as_str() != p.secret_id {
        return Err(ServerTicketError::WrongSecretId);
    }
    let mut parts = p.ticket.splitn(3, '.');
    let (Some("v1"), Some(ts), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ServerTicketError::Malformed);
    };
    let ts: i64 = ts.parse().map_err(|_| ServerTicketError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| ServerTicketError::Malformed)?;
    if tag.len() != 32 {
        return Err(ServerTicketError::Malformed);
    }
    // `abs_diff` cannot overflow, whatever the two time stamps; a negative
    // window accepts nothing.
    let in_window = u64::try_from(window).is_ok_and(|w| now.abs_diff(ts) <= w);
    if !in_window {
        return Err(ServerTicketError::Expired { ts, now, window });
    }
    // The MAC covers the time stamp as `sign_ticket` spells it.
    let ts_text = ts.to_string();
    let fields = [p.title_id, p.title_region_id, p.secret_id, &ts_text];
    if !v1_tag_matches(&region.secret_key, &fields, &tag) {
        return Err(ServerTicketError::BadSignature);
    }
    Ok(region.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn region(id: &str, key: &str) -> TitleRegion {
        TitleRegion {
            id: TitleRegionId::new_unchecked(id),
            title_id: TitleId::new_unchecked("title-1"),
            name: "r".into(),
            title_name: "t".into(),
            secret_id: SecretId::new_unchecked(format!("sid-{id}")),
            secret_key: key.into(),
        }
    }

    fn present<'a>(r: &'a TitleRegion, ticket: &'a str) -> Presented<'a> {
        Presented {
            title_id: r.title_id.as_str(),
            title_region_id: r.id.as_str(),
            secret_id: r.secret_id.as_str(),
            ticket,
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn good_ticket_verifies() {
        let r = region("tr-a", "key-a-0123456789abcdef");
        let t = sign_ticket(&r.secret_key, "title-1", "tr-a", "sid-tr-a", NOW - 10);
        assert_eq!(
            verify(&present(&r, &t), Some(&r), NOW, 300),
            Ok(r.id.clone())
        );
    }

    #[test]
    fn worked_example_is_stable() {
        // The example in docs/http-api.md.
        let t = sign_ticket(
            "0123456789abcdef0123456789abcdef",
            "title-dev",
            "tr-dev",
            "sid-example",
            1_700_000_000,
        );
        // Computed independently with Python's hmac module.
        assert_eq!(
            t,
            "v1.1700000000.0fd93f01f9b6dfbee73f9feac2619bc21d24530a08cf9b57be7dd2051861ab6d"
        );
    }

    /// The worked example of docs/http-api.md, checked against the document
    /// itself: the message length it states and the ticket it shows.
    #[test]
    fn worked_example_matches_the_http_api_doc() {
        let doc = include_str!("../../../docs/http-api.md");
        let message = "v1\ntitle-dev\ntr-dev\nsid-example\n1700000000";
        assert!(
            doc.contains(&format!("the message is the {} bytes", message.len())),
            "docs/http-api.md must state the message length, {} bytes",
            message.len()
        );
        assert_eq!(message.len(), 42);
        let t = sign_ticket(
            "0123456789abcdef0123456789abcdef",
            "title-dev",
            "tr-dev",
            "sid-example",
            1_700_000_000,
        );
        assert!(doc.contains(&t), "docs/http-api.md must show {t}");
    }

    #[test]
    fn tampered_ticket_is_refused() {
        let r = region("tr-a", "key-a-0123456789abcdef");
        let t = sign_ticket(&r.secret_key, "title-1", "tr-a", "sid-tr-a", NOW);
        // Flip one hex digit of the tag.
        let mut bytes = t.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            verify(&present(&r, &tampered), Some(&r), NOW, 300),
            Err(ServerTicketError::BadSignature)
        );
        // A changed timestamp with the old tag.
        let moved = t.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
        assert_eq!(
            verify(&present(&r, &moved), Some(&r), NOW, 300),
            Err(ServerTicketError::BadSignature)
        );
        for junk in ["", "v1", "v2.1.00", "v1.x.00", "v1.1.zz", "v1.1.abcd"] {
            assert_eq!(
                verify(&present(&r, junk), Some(&r), NOW, 300),
                Err(ServerTicketError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn expired_ticket_is_refused() {
        let r = region("tr-a", "key-a-0123456789abcdef");
        let old = sign_ticket(&r.secret_key, "title-1", "tr-a", "sid-tr-a", NOW - 301);
        assert!(matches!(
            verify(&present(&r, &old), Some(&r), NOW, 300),
            Err(ServerTicketError::Expired { .. })
        ));
        let future = sign_ticket(&r.secret_key, "title-1", "tr-a", "sid-tr-a", NOW + 301);
        assert!(matches!(
            verify(&present(&r, &future), Some(&r), NOW, 300),
            Err(ServerTicketError::Expired { .. })
        ));
    }

    #[test]
    fn extreme_time_stamps_are_refused_without_overflow() {
        let r = region("tr-a", "key-a-0123456789abcdef");
        for ts in [i64::MIN, i64::MAX] {
            let t = sign_ticket(&r.secret_key, "title-1", "tr-a", "sid-tr-a", ts);
            for now in [NOW, i64::MIN, i64::MAX, 0] {
                if now == ts {
                    continue;
                }
                assert!(
                    matches!(
                        verify(&present(&r, &t), Some(&r), now, 300),
                        Err(ServerTicketError::Expired { .. })
                    ),
                    "ts {ts} now {now}"
                );
            }
        }
        // A window of i64::MAX still refuses a distance of u64::MAX.
        let t = sign_ticket(&r.secret_key, "title-1", "tr-a", "sid-tr-a", i64::MIN);
        assert!(matches!(
            verify(&present(&r, &t), Some(&r), i64::MAX, i64::MAX),
            Err(ServerTicketError::Expired { .. })
        ));
    }

    #[test]
    fn key_of_one_region_never_works_for_another() {
        let a = region("tr-a", "key-a-0123456789abcdef");
        let b = region("tr-b", "key-b-0123456789abcdef");
        // Signed with a's key but presented as region b (with b's secret id).
        let t = sign_ticket(&a.secret_key, "title-1", "tr-b", "sid-tr-b", NOW);
        assert_eq!(
            verify(&present(&b, &t), Some(&b), NOW, 300),
            Err(ServerTicketError::BadSignature)
        );
        // a's full credentials against region b.
        let t = sign_ticket(&a.secret_key, "title-1", "tr-a", "sid-tr-a", NOW);
        let p = Presented {
            title_id: "title-1",
            title_region_id: "tr-b",
            secret_id: "sid-tr-a",
            ticket: &t,
        };
        assert_eq!(
            verify(&p, Some(&b), NOW, 300),
            Err(ServerTicketError::WrongSecretId)
        );
        let p = Presented {
            title_id: "title-2",
            title_region_id: "tr-a",
            secret_id: "sid-tr-a",
            ticket: &t,
        };
        assert_eq!(
            verify(&p, Some(&a), NOW, 300),
            Err(ServerTicketError::WrongTitle)
        );
        assert_eq!(
            verify(&present(&a, &t), None, NOW, 300),
            Err(ServerTicketError::UnknownRegion)
        );
    }
}
