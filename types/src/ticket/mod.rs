//! The two HMAC-SHA256 tickets of Respawn, in one place:
//!
//! - [`server`]: the `ServerTicket` a game backend sends with the PGOS
//!   backend API (checked by the edge);
//! - [`player`]: the `PlayerTicket` a game backend mints for a game client to
//!   invoke a virtual server as a player (checked by the edge, passed on to
//!   the VS as `Playerid` and `Sessionid`).
//!
//! Both MACs are keyed with the title region's `secret_key` (its UTF-8
//! bytes) over `"v1"` and the ticket's fields, one per line.

pub mod player;
pub mod server;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC-SHA256 under `secret_key` of `"v1\n" + fields.join("\n")`.
fn v1_mac(secret_key: &str, fields: &[&str]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match HmacSha256::new_from_slice(secret_key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(b"v1");
    for field in fields {
        m.update(b"\n");
        m.update(field.as_bytes());
    }
    m
}

/// Lowercase hex of the MAC of [`v1_mac`].
fn v1_tag_hex(secret_key: &str, fields: &[&str]) -> String {
    hex::encode(
        v1_mac(secret_key, fields)
            .finalize()
            .into_bytes()
            .as_slice(),
    )
}

/// Whether `tag` is the MAC of [`v1_mac`], compared in constant time.
fn v1_tag_matches(secret_key: &str, fields: &[&str], tag: &[u8]) -> bool {
    v1_mac(secret_key, fields).verify_slice(tag).is_ok()
}
