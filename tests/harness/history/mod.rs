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
//! 0. no valid placement request is refused ([`Observation::PlacementRefused`]:
//!    a 4xx or a 500; "unavailable" answers are indeterminate, not refusals);
//! 1. every accepted placement ends in exactly one terminal state, and no
//!    observer (Describe, event) sees it change terminal state or go back
//!    to PENDING; a placement retention removed (absent from the final
//!    state, covered by [`FinalState::pruned`]) counts as ended, and once a
//!    Describe answered `expired` ([`Observation::PlacementExpiredSeen`]) it
//!    is never seen again;
//! 2. a DS process never holds more sessions than its mode allows: one per
//!    lifetime in simple mode; in parallel mode at most N delivered
//!    (ACTIVATING) or activated sessions not yet ended;
//! 3. no battle session is activated on two processes;
//! 4. a FULFILLED placement's battle session was activated by a DS
//!    (only when [`FinalState::agents_observed`]);
//! 5. placement-finished events carry a terminal status and their ids
//!    de-duplicate (one id, one placement and status); with
//!    [`FinalState::with_events`], every placement that ended FULFILLED,
//!    TIMED_OUT or FAILED had its event delivered at least once;
//! 6. (design invariant 2, with [`FinalState::with_no_busy_stops`]) no
//!    process holding a delivered or activated session is asked to
//!    terminate ([`Observation::TerminateRequested`]): scale-in, rollouts
//!    and drains stop only idle processes.
//!
//! The checker's own tests (`tests.rs`) feed it random valid runs (no
//! violation may be reported) and the same runs with each kind of
//! violation injected (each must be reported).

mod check;
mod final_state;
mod record;
mod violation;

pub use check::{check, EVENTED};
pub use final_state::FinalState;
pub use record::{Entry, History, Observation};
pub use violation::{status_name, summary, Seen, Sighting, Violation};

#[cfg(test)]
mod tests;
