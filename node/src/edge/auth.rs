//! Backend authentication: the `TitleId`, `TitleRegionId`, `SecretId` and
//! `ServerTicket` headers of the PGOS backend API.
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

use super::error::ApiError;
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use respawn_types::{TitleRegion, TitleRegionId};
use sha2::Sha256;

pub const H_TITLE_ID: &str = "TitleId";
pub const H_TITLE_REGION_ID: &str = "TitleRegionId";
pub const H_SECRET_ID: &str = "SecretId";
pub const H_SERVER_TICKET: &str = "ServerTicket";

type HmacSha256 = Hmac<Sha256>;

fn mac(
    secret_key: &str,
    title_id: &str,
    title_region_id: &str,
    secret_id: &str,
    ts: i64,
) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match HmacSha256::new_from_slice(secret_key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(format!("v1\n{title_id}\n{title_region_id}\n{secret_id}\n{ts}").as_bytes());
    m
}

/// Computes the ticket a backend sends at unix time `ts`.
pub fn sign_ticket(
    secret_key: &str,
    title_id: &str,
    title_region_id: &str,
    secret_id: &str,
    ts: i64,
) -> String {
    let tag = mac(secret_key, title_id, title_region_id, secret_id, ts)
        .finalize()
        .into_bytes();
    format!("v1.{ts}.{}", hex::encode(tag))
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
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

pub fn presented(headers: &HeaderMap) -> Result<Presented<'_>, TicketError> {
    let get = |name: &'static str| -> Result<&str, TicketError> {
        headers
            .get(name)
            .ok_or(TicketError::Missing(name))?
            .to_str()
            .map_err(|_| TicketError::NotText(name))
    };
    Ok(Presented {
        title_id: get(H_TITLE_ID)?,
        title_region_id: get(H_TITLE_REGION_ID)?,
        secret_id: get(H_SECRET_ID)?,
        ticket: get(H_SERVER_TICKET)?,
    })
}

/// Verifies a presented ticket against the title region it names.
pub fn verify(
    p: &Presented<'_>,
    region: Option<&TitleRegion>,
    now: i64,
    window: i64,
) -> Result<TitleRegionId, TicketError> {
    let region = region.ok_or(TicketError::UnknownRegion)?;
    if region.title_id.as_str() != p.title_id {
        return Err(TicketError::WrongTitle);
    }
    if region.secret_id.as_str() != p.secret_id {
        return Err(TicketError::WrongSecretId);
    }
    let mut parts = p.ticket.splitn(3, '.');
    let (Some("v1"), Some(ts), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TicketError::Malformed);
    };
    let ts: i64 = ts.parse().map_err(|_| TicketError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| TicketError::Malformed)?;
    if tag.len() != 32 {
        return Err(TicketError::Malformed);
    }
    if (now - ts).abs() > window {
        return Err(TicketError::Expired { ts, now, window });
    }
    mac(
        &region.secret_key,
        p.title_id,
        p.title_region_id,
        p.secret_id,
        ts,
    )
    .verify_slice(&tag)
    .map_err(|_| TicketError::BadSignature)?;
    Ok(region.id.clone())
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        ApiError::unauthorized(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use respawn_types::*;

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
            Err(TicketError::BadSignature)
        );
        // A changed timestamp with the old tag.
        let moved = t.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
        assert_eq!(
            verify(&present(&r, &moved), Some(&r), NOW, 300),
            Err(TicketError::BadSignature)
        );
        for junk in ["", "v1", "v2.1.00", "v1.x.00", "v1.1.zz", "v1.1.abcd"] {
            assert_eq!(
                verify(&present(&r, junk), Some(&r), NOW, 300),
                Err(TicketError::Malformed),
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
            Err(TicketError::Expired { .. })
        ));
        let future = sign_ticket(&r.secret_key, "title-1", "tr-a", "sid-tr-a", NOW + 301);
        assert!(matches!(
            verify(&present(&r, &future), Some(&r), NOW, 300),
            Err(TicketError::Expired { .. })
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
            Err(TicketError::BadSignature)
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
            Err(TicketError::WrongSecretId)
        );
        let p = Presented {
            title_id: "title-2",
            title_region_id: "tr-a",
            secret_id: "sid-tr-a",
            ticket: &t,
        };
        assert_eq!(verify(&p, Some(&a), NOW, 300), Err(TicketError::WrongTitle));
        assert_eq!(
            verify(&present(&a, &t), None, NOW, 300),
            Err(TicketError::UnknownRegion)
        );
    }
}
