//! [`Shared`]: a record of the state held behind an `Arc`, copied on
//! write.
//!
//! The large maps of [`crate::ClusterState`] (processes, battle sessions,
//! placements, player battle sessions) hold their records as `Shared<T>`.
//! Cloning the state — which a snapshot does while apply waits for it —
//! then copies the maps' keys and one pointer per record instead of every
//! record: a fraction of the time and memory, and apply keeps going
//! sooner. A record is copied only when apply changes it while a snapshot
//! still holds the old one (`Arc::make_mut` behind [`DerefMut`]).
//!
//! It serializes as the record itself: snapshots are the same bytes as
//! with plain records.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A record shared between the state and its copies, copied on write.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }

    /// Whether `a` and `b` are the same allocation (not merely equal).
    pub fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Shared<T> {
        Shared::new(value)
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Writing through a `Shared` copies the record first if a copy of the
/// state still holds it, so the copy keeps what it had.
impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (*self.0).serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Shared::new)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_write_copies_only_a_record_still_shared() {
        let mut a = Shared::new(vec![1, 2]);
        let b = a.clone();
        assert!(Shared::ptr_eq(&a, &b));
        a.push(3);
        // The clone kept what it had; `a` was copied once.
        assert_eq!((&*a, &*b), (&vec![1, 2, 3], &vec![1, 2]));
        assert!(!Shared::ptr_eq(&a, &b));
        // Now `a` is alone: written in place.
        let before = Arc::as_ptr(&a.0);
        a.push(4);
        assert_eq!(Arc::as_ptr(&a.0), before);
    }

    #[test]
    fn serializes_as_the_record() {
        let a = Shared::new(vec!["x".to_string()]);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, serde_json::to_string(&vec!["x"]).unwrap());
        let back: Shared<Vec<String>> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }

    /// A copy of the state (what a snapshot takes) keeps every record as
    /// it was while apply goes on changing the original: equal to a deep
    /// copy taken at the same moment, and sharing the records apply did
    /// not touch.
    #[test]
    fn a_copy_of_the_state_keeps_what_it_had_while_apply_goes_on() {
        use crate::test_fixture::*;
        use respawn_types::*;
        let mut h = H::new(ServerMode::Simple);
        for n in 1..=3 {
            h.ready_process(n);
        }
        h.active_session(1, 1);
        h.start(2, vec![(pbs(20), player(20))]);
        let copy = h.s.clone();
        let deep = serde_json::to_string(&h.s).unwrap();
        // Apply goes on: a placement assigned and activated, a process gone.
        h.ok(crate::Command::AssignPlacement {
            placement_id: pl(2),
            process_id: pid(2),
        });
        h.ok(crate::Command::ActivateBattleSession {
            process_id: pid(2),
            battle_session_id: bs(2),
        });
        h.ok(crate::Command::ProcessExited {
            process_id: pid(3),
            reason: ExitReason::Killed,
        });
        assert_ne!(h.s, copy);
        assert_eq!(serde_json::to_string(&copy).unwrap(), deep);
        // Untouched records are still shared; changed ones were copied.
        assert!(Shared::ptr_eq(
            &h.s.processes[&pid(1)],
            &copy.processes[&pid(1)]
        ));
        assert!(Shared::ptr_eq(
            &h.s.placements[&pl(1)],
            &copy.placements[&pl(1)]
        ));
        assert!(!Shared::ptr_eq(
            &h.s.processes[&pid(2)],
            &copy.processes[&pid(2)]
        ));
        assert!(!Shared::ptr_eq(
            &h.s.placements[&pl(2)],
            &copy.placements[&pl(2)]
        ));
        assert_eq!(copy.processes[&pid(3)].status, ProcessStatus::Ready);
        assert_eq!(h.s.processes[&pid(3)].status, ProcessStatus::Exited);
    }
}
