//! A history of what outside observers saw during a (fault) test, and a
//! pure, deterministic checker of the design's invariants over it.
//!
//! Tests [`History::record`] an [`Observation`] each time a backend, a
//! (simulated) DS process or an event subscriber sees something, read a
//! [`FinalState`] from the cluster once it has converged, and assert that
//! [`check`] finds no [`Violation`]:
//!
//! ```ignore
//! let h = History::new();
//! // … from many tasks: h.record(Observation::PlacementAccepted { .. }); …
//! let fin = cluster.read(|s| FinalState::from_state(s, true));
//! let v = check(&h.snapshot(), &fin);
//! assert!(v.is_empty(), "{}", summary(&v));
//! ```
//!
//! Invariants checked (DESIGN.md "Invariants" 1 and 3, and what they imply):
//!
//! 1. every accepted placement ends in exactly one terminal state, and no
//!    observer sees it change terminal state or go back to PENDING; a
//!    placement retention removed (absent from the final state, covered by
//!    [`FinalState::pruned`]) counts as ended, and once a Describe answered
//!    `expired` ([`Observation::PlacementExpiredSeen`]) it is never seen again;
//! 2. a DS process never holds more sessions than its mode allows;
//! 3. no battle session is activated on two processes;
//! 4. a FULFILLED placement's battle session was activated by a DS
//!    (only when [`FinalState::agents_observed`]);
//! 5. placement-finished events arrive at least once and their ids
//!    de-duplicate (one id, one placement and status).

mod check;
mod final_state;
mod record;
mod violation;

pub use check::check;
pub use final_state::FinalState;
pub use record::{Entry, History, Observation};
pub use violation::{status_name, summary, Seen, Sighting, Violation};

#[cfg(test)]
mod tests;
