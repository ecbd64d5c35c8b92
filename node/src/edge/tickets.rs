//! [`VerifiedTickets`]: server tickets whose MAC was already checked, so that
//! a game backend sending the same `ServerTicket` on every call of a
//! keep-alive connection costs one HMAC, not one per call.
//!
//! A hit still checks everything but the MAC: the title region must still
//! exist with the same title, secret id **and secret key** as when the MAC
//! was checked (a rotated key refuses the old tickets at once), and the
//! ticket's time stamp must still be in the window at the current time. A
//! miss, or any difference, goes through [`respawn_types::ticket::server::verify`] as usual,
//! which also gives the exact error.
//!
//! Bound: at most [`VerifiedTickets::CAPACITY`] tickets; when full, the
//! whole cache is dropped and refilled (backends re-sign tickets every few
//! minutes, so a cache that keeps the current ones is enough).

use respawn_types::ticket::server::{verify, Presented, ServerTicketError};
use respawn_types::{TitleRegion, TitleRegionId};
use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// What a ticket was verified against.
struct Verified {
    title_id: String,
    title_region_id: String,
    secret_id: String,
    secret_key: String,
    ts: i64,
}

/// Tickets verified recently (see the module documentation).
pub struct VerifiedTickets {
    by_ticket: RwLock<HashMap<String, Verified>>,
    capacity: usize,
}

impl Default for VerifiedTickets {
    fn default() -> Self {
        VerifiedTickets::with_capacity(VerifiedTickets::CAPACITY)
    }
}

impl std::fmt::Debug for VerifiedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTickets").finish_non_exhaustive()
    }
}

impl VerifiedTickets {
    /// Most tickets kept by default.
    pub const CAPACITY: usize = 4096;

    /// A cache keeping at most `capacity` tickets.
    pub fn with_capacity(capacity: usize) -> Self {
        VerifiedTickets {
            by_ticket: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// [`verify`], answering from the cache when this exact ticket was
    /// verified against the same region and key and is still in the window.
    pub fn verify(
        &self,
        p: &Presented<'_>,
        region: Option<&TitleRegion>,
        now: i64,
        window: i64,
    ) -> Result<TitleRegionId, ServerTicketError> {
        if let Some(r) = region {
            let hit = self
                .by_ticket
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(p.ticket)
                .is_some_and(|v| {
                    v.title_id == p.title_id
                        && v.title_region_id == p.title_region_id
                        && v.secret_id == p.secret_id
                        && r.id.as_str() == p.title_region_id
                        && r.title_id.as_str() == p.title_id
                        && r.secret_id.as_str() == p.secret_id
                        && v.secret_key == r.secret_key
                        && u64::try_from(window).is_ok_and(|w| now.abs_diff(v.ts) <= w)
                });
            if hit {
                return Ok(r.id.clone());
            }
        }
        let id = verify(p, region, now, window)?;
        if let Some(r) = region {
            // `verify` accepted it, so the ticket parses: v1.<ts>.<tag>.
            if let Some(ts) = p
                .ticket
                .split('.')
                .nth(1)
                .and_then(|t| t.parse::<i64>().ok())
            {
                let mut m = self
                    .by_ticket
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if m.len() >= self.capacity {
                    m.clear();
                }
                m.insert(
                    p.ticket.to_owned(),
                    Verified {
                        title_id: p.title_id.to_owned(),
                        title_region_id: p.title_region_id.to_owned(),
                        secret_id: p.secret_id.to_owned(),
                        secret_key: r.secret_key.clone(),
                        ts,
                    },
                );
            }
        }
        Ok(id)
    }

    /// Tickets held now.
    pub fn len(&self) -> usize {
        self.by_ticket
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use respawn_types::ticket::server::sign_ticket;
    use respawn_types::*;

    fn region(key: &str) -> TitleRegion {
        TitleRegion {
            id: TitleRegionId::new_unchecked("tr-a"),
            title_id: TitleId::new_unchecked("title-1"),
            name: "r".into(),
            title_name: "t".into(),
            secret_id: SecretId::new_unchecked("sid-a"),
            secret_key: key.into(),
        }
    }

    fn present(t: &str) -> Presented<'_> {
        Presented {
            title_id: "title-1",
            title_region_id: "tr-a",
            secret_id: "sid-a",
            ticket: t,
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_cached_ticket_is_still_checked_for_window_key_and_fields() {
        let c = VerifiedTickets::default();
        let r = region("key-1");
        let t = sign_ticket("key-1", "title-1", "tr-a", "sid-a", NOW);
        assert_eq!(c.verify(&present(&t), Some(&r), NOW, 300), Ok(r.id.clone()));
        assert_eq!(c.len(), 1);
        // A hit.
        assert_eq!(
            c.verify(&present(&t), Some(&r), NOW + 1, 300),
            Ok(r.id.clone())
        );
        // Past the window: refused, with the verifier's own error.
        assert_eq!(
            c.verify(&present(&t), Some(&r), NOW + 301, 300),
            Err(ServerTicketError::Expired {
                ts: NOW,
                now: NOW + 301,
                window: 300
            })
        );
        // The key rotated: the old ticket no longer verifies.
        let rotated = region("key-2");
        assert_eq!(
            c.verify(&present(&t), Some(&rotated), NOW, 300),
            Err(ServerTicketError::BadSignature)
        );
        // Another secret id presented with the same ticket.
        let other = Presented {
            secret_id: "sid-b",
            ..present(&t)
        };
        assert_eq!(
            c.verify(&other, Some(&r), NOW, 300),
            Err(ServerTicketError::WrongSecretId)
        );
        // The region is gone.
        assert_eq!(
            c.verify(&present(&t), None, NOW, 300),
            Err(ServerTicketError::UnknownRegion)
        );
        // A bad ticket is never cached.
        let last = if t.ends_with('0') { '1' } else { '0' };
        let bad = format!("{}{last}", &t[..t.len() - 1]);
        assert!(c.verify(&present(&bad), Some(&r), NOW, 300).is_err());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = VerifiedTickets::with_capacity(10);
        let r = region("key-1");
        for i in 0..25 {
            let t = sign_ticket("key-1", "title-1", "tr-a", "sid-a", NOW - i);
            assert_eq!(c.verify(&present(&t), Some(&r), NOW, 300), Ok(r.id.clone()));
            assert!(c.len() <= 10, "{}", c.len());
        }
    }
}
