//! Newtype identifiers. They are strings on the wire (JSON and bincode) so a
//! client in any language can hold them, and distinct types in Rust so a
//! fleet id is never passed where a process id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Longest identifier accepted from outside (HTTP, agents, DS processes).
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {MAX_ID_LEN} characters")]
    TooLong { kind: &'static str },
    #[error("{kind} may contain only letters, digits, '-', '_' and '.'")]
    BadChar { kind: &'static str },
    #[error("virtual server name may contain only letters, digits and '-'")]
    BadCharVs,
}

/// Checks an identifier coming from outside the process.
pub fn validate_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(IdError::BadChar { kind });
    }
    Ok(())
}

/// The timestamp of a UUID v7 written as 32 hex digits, if it is one.
fn uuid_v7_millis(hex: &str) -> Option<u64> {
    if hex.len() != 32 {
        return None;
    }
    let u = uuid::Uuid::try_parse(hex).ok()?;
    if u.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = u.get_timestamp()?.to_unix();
    Some(secs * 1_000 + u64::from(nanos) / 1_000_000)
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$m])*
        ///
        /// Held as an `Arc<str>`: a record, its map key and the records
        /// that refer to it share one allocation (the replicated state
        /// holds each id several times).
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(|s| Self(Arc::from(s)))
            }
        }

        impl $name {
            /// Human name of this kind of id, used in error messages.
            pub const KIND: &'static str = $kind;

            /// Wraps a string that is already known to be valid (generated
            /// here, or read back from replicated state).
            pub fn new_unchecked(s: impl Into<String>) -> Self {
                Self(Arc::from(s.into()))
            }

            /// Validates a string that came from outside.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate_id($kind, &s)?;
                Ok(Self(Arc::from(s)))
            }

            /// A new random id with this kind's prefix (UUID v7: time ordered).
            pub fn generate() -> Self {
                Self(Arc::from(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple())))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The creation time (unix milliseconds) of an id made by
            /// [`Self::generate`]: this kind's prefix and a UUID v7 in simple
            /// form. `None` for any other id (one a caller chose, say).
            pub fn generated_at(&self) -> Option<u64> {
                uuid_v7_millis(self.0.strip_prefix($prefix)?)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(/// A game title.
    TitleId, "title id", "title-");
string_id!(/// A title region: the unit of tenancy; credentials belong to one.
    TitleRegionId, "title region id", "tr-");
string_id!(/// A fleet of hosts running one DS build.
    FleetId, "fleet id", "fleet-");
string_id!(/// A host running an agent.
    HostId, "host id", "host-");
string_id!(/// One DS process launched by an agent. Never reused.
    ProcessId, "process id", "proc-");
string_id!(/// A battle session (a game running on a DS process).
    BattleSessionId, "battle session id", "bs-");
string_id!(/// A placement request for one battle session.
    PlacementId, "placement id", "pl-");
string_id!(/// A player, as identified by the game.
    PlayerId, "player id", "player-");
string_id!(/// A player's reservation in one battle session.
    PlayerBattleSessionId, "player battle session id", "pbs-");
string_id!(/// The public half of a title region's server key.
    SecretId, "secret id", "sid-");
string_id!(/// One instance of a virtual server. Never reused.
    VsInstanceId, "virtual server instance id", "vsi-");

/// A Raft member.
pub type NodeId = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate_and_roundtrip() {
        assert!(FleetId::parse("fleet-1.a_b").is_ok());
        assert_eq!(FleetId::parse(""), Err(IdError::Empty { kind: "fleet id" }));
        assert!(matches!(
            FleetId::parse("a b"),
            Err(IdError::BadChar { .. })
        ));
        assert!(matches!(
            FleetId::parse("x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
        let id = ProcessId::generate();
        assert!(id.as_str().starts_with("proc-"));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_ne!(ProcessId::generate(), ProcessId::generate());
    }

    #[test]
    fn generated_ids_tell_their_time() {
        let before = crate::now_millis();
        let id = PlacementId::generate();
        let after = crate::now_millis();
        let t = id.generated_at().unwrap();
        assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
        assert_eq!(PlacementId::new_unchecked("pl-mine").generated_at(), None);
        // Another kind's prefix, or a v4 UUID, has no time.
        let other = PlacementId::new_unchecked(id.as_str().replace("pl-", "bs-"));
        assert_eq!(other.generated_at(), None);
        let v4 = PlacementId::new_unchecked(format!("pl-{}", uuid::Uuid::new_v4().simple()));
        assert_eq!(v4.generated_at(), None);
    }
}
